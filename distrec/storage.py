"""Where data lives: local paths or s3:// URLs, listed and written through fsspec.

Credentials come only from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...), so
they never appear in configs or logs; the endpoint (e.g. a local S3 server) may come from config.
"""

from __future__ import annotations

import contextlib
import functools
import glob as globlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import fsspec
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from distrec.errors import DataError

# Object stores publish an object only when its upload completes, so a direct write is atomic.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "az"}

# Fail fast on an unreachable endpoint instead of botocore's default ~60 s connect + 5 retries.
_S3_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 2, "mode": "standard"}}


def s3_endpoint(s3_endpoint_url: str | None = None) -> str | None:
    return s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def is_s3(path: str) -> bool:
    return path.startswith(("s3://", "s3a://"))


def filesystem(path: str, s3_endpoint_url: str | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``path`` and the path inside it."""
    if is_s3(path):
        kwargs: dict = {"config_kwargs": _S3_CONFIG}
        endpoint = s3_endpoint(s3_endpoint_url)
        if endpoint:
            kwargs["client_kwargs"] = {"endpoint_url": endpoint}
        return fsspec.core.url_to_fs(path, **kwargs)
    return fsspec.core.url_to_fs(path)


def full_url(fs: fsspec.AbstractFileSystem, fs_path: str) -> str:
    """A path inside ``fs`` as a URL ``filesystem()`` maps back to it (plain path when local)."""
    if isinstance(fs, LocalFileSystem):
        return fs_path
    return fs.unstrip_protocol(fs_path)


def list_parquet_files(path: str, s3_endpoint_url: str | None = None) -> list[str]:
    """Parquet files at ``path``: one file, every ``*.parquet`` under a directory, or a glob."""
    fs, fs_path = filesystem(path, s3_endpoint_url)
    try:
        fs.invalidate_cache()  # another process (or pyarrow) may have written since the last listing
        if globlib.has_magic(fs_path):
            found = [p for p in fs.glob(fs_path) if fs.isfile(p)]
        elif fs.isdir(fs_path):
            found = [p for p in fs.find(fs_path) if p.endswith(".parquet")]
        elif fs.isfile(fs_path):
            found = [fs_path]
        else:
            found = []
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any transport failure becomes one actionable error
        raise storage_error(path, exc, s3_endpoint_url) from None
    if not found:
        raise DataError(f"no Parquet files found at {path}")
    return [full_url(fs, p) for p in sorted(found)]


def storage_error(path: str, exc: BaseException, s3_endpoint_url: str | None = None,
                  action: str = "read") -> DataError:
    if is_s3(path):
        endpoint = s3_endpoint(s3_endpoint_url) or "the default AWS endpoint"
        return DataError(
            f"cannot {action} {path} {'from' if action == 'read' else 'on'} S3 endpoint {endpoint}: "
            f"{type(exc).__name__}: {exc} "
            "(check the endpoint and that AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set)"
        )
    return DataError(f"cannot {action} {path}: {type(exc).__name__}: {exc}")


def use_s3_endpoint(s3_endpoint_url: str | None) -> None:
    """Make ``s3_endpoint_url`` this process's S3 endpoint (AWS_ENDPOINT_URL), for the clients
    that take no endpoint argument (checkpoints, logs, Ray Train's): a training worker calls it
    with ``data.s3_endpoint_url``, so every path of a run uses the configured endpoint."""
    if s3_endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = s3_endpoint_url


# --- pyarrow's own filesystems: faster reads than fsspec (S3: ~3x) -------------------------------


@functools.lru_cache(maxsize=16)
def _arrow_s3(endpoint: str | None, region: str | None, pid: int) -> pafs.S3FileSystem:
    # keyed by pid: a DataLoader worker forked from this process must not reuse its S3 client
    kwargs: dict = {
        "connect_timeout": 5,
        "request_timeout": 60,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    return pafs.resolve_s3_region(bucket)


def arrow_filesystem(url: str, s3_endpoint_url: str | None = None) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for ``url`` (as returned by list_parquet_files) and the path in it."""
    if is_s3(url):
        endpoint = s3_endpoint(s3_endpoint_url)
        path = url.split("://", 1)[1]
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not endpoint and not region:
            region = _bucket_region(path.split("/", 1)[0])
        return _arrow_s3(endpoint, region or "us-east-1", os.getpid()), path
    fs, fs_path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        return pafs.LocalFileSystem(), fs_path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), fs_path


# --- atomic writes -------------------------------------------------------------------------------


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return bool(_OBJECT_STORES.intersection(protocols))


@contextlib.contextmanager
def atomic_open(path: str, fs: fsspec.AbstractFileSystem, mode: str = "wb") -> Iterator:
    """Open ``path`` for writing so that it appears whole or not at all."""
    path = fs._strip_protocol(path)
    if _is_object_store(fs):
        fh = fs.open(path, mode)
        try:
            yield fh
        except BaseException:
            with contextlib.suppress(Exception):
                fh.discard()
            fh.closed = True  # never publish the partial object
            raise
        fh.close()
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    if _is_local(fs):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with fs.open(tmp, mode) as fh:
            yield fh
        if _is_local(fs):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


@contextlib.contextmanager
def atomic_parquet_writer(
    path: str, arrow_schema: pa.Schema, fs: fsspec.AbstractFileSystem, **writer_kwargs
) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter whose file appears at ``path`` only once the block exits without error."""
    with atomic_open(path, fs, "wb") as fh:
        writer = pq.ParquetWriter(fh, arrow_schema, **writer_kwargs)
        try:
            yield writer
        finally:
            writer.close()  # writes the footer; on error the file is discarded anyway


def write_text_atomic(path: str, text: str, fs: fsspec.AbstractFileSystem) -> None:
    with atomic_open(path, fs, "wb") as fh:
        fh.write(text.encode())
