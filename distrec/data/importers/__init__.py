"""Importers: public recommendation data sets -> distrec Parquet + feature schema.

Each ``import_X(src, out, **options) -> FeatureSchema`` writes ``out/<split>/part-*.parquet``
(atomically, part by part) and ``out/schema.yaml`` last; a failed import removes what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable

from distrec.data.importers.aliccp import import_aliccp
from distrec.data.importers.aliccp_raw import import_aliccp_raw
from distrec.data.importers.conure_recbole import import_conure_recbole
from distrec.data.importers.conure_ttl import import_conure_ttl
from distrec.data.importers.criteo import import_criteo
from distrec.data.importers.recbole import import_recbole
from distrec.data.importers.sessions import import_sessions
from distrec.data.schema import FeatureSchema

IMPORTERS: dict[str, Callable[..., FeatureSchema]] = {
    "recbole": import_recbole,
    "aliccp": import_aliccp,
    "aliccp_raw": import_aliccp_raw,
    "criteo": import_criteo,
    "conure_recbole": import_conure_recbole,
    "conure_ml100k": import_conure_recbole,  # its earlier name
    "conure_ttl": import_conure_ttl,
    "sessions": import_sessions,
}

__all__ = ["IMPORTERS", "import_aliccp", "import_aliccp_raw", "import_criteo", "import_recbole"]
