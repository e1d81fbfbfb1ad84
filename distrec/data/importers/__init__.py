"""Importers: public recommendation data sets -> distrec Parquet + feature schema.

These are the engine's general formats; methods add their own (``distrec.methods.importers()``
lists them all).

Each ``import_X(src, out, **options) -> FeatureSchema`` writes ``out/<split>/part-*.parquet``
(atomically, part by part) and ``out/schema.yaml`` last; a failed import removes what it wrote.
"""

from __future__ import annotations

from collections.abc import Callable

from distrec.data.importers.aliccp import import_aliccp
from distrec.data.importers.aliccp_raw import import_aliccp_raw
from distrec.data.importers.criteo import import_criteo
from distrec.data.importers.interactions import import_interactions
from distrec.data.importers.recbole import import_recbole
from distrec.data.importers.sessions import import_sessions
from distrec.data.importers.table import import_table
from distrec.data.schema import FeatureSchema

IMPORTERS: dict[str, Callable[..., FeatureSchema]] = {
    "recbole": import_recbole,
    "aliccp": import_aliccp,
    "aliccp_raw": import_aliccp_raw,
    "criteo": import_criteo,
    "sessions": import_sessions,
    "interactions": import_interactions,
    "table": import_table,
}

__all__ = ["IMPORTERS", "import_aliccp", "import_aliccp_raw", "import_criteo", "import_interactions",
           "import_recbole", "import_sessions", "import_table"]
