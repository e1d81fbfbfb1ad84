"""One writer per run directory: a run holds ``<run_dir>/run.lock`` while it writes there.

A second run on the same directory is refused with the holder's host, pid and start time; a
stale lock is taken over with a warning.

- Local disk: the lock file appears whole with its record (written aside, then hard-linked into
  place, which fails when the file exists: O_EXCL semantics that NFS keeps too). It is stale when
  its pid no longer runs on this host; a lock held from another host cannot be checked here and
  is refused. Takeovers on one host are serialised by flock on the run directory.
- S3: the lock object is created by a conditional put (If-None-Match: *) and renewed by the
  holder every ``lease_s / 3``; it is stale once the store has not seen it renewed for its
  ``lease_s``, and is taken over by a put conditional on the stale object's ETag, so of two
  runs taking over the same lock one wins.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from fsspec.implementations.local import LocalFileSystem

from distrec.errors import RunLockError
from distrec.storage import filesystem, storage_error

log = logging.getLogger("distrec")
LOCK_FILE = "run.lock"
LEASE_S = 120.0  # an S3 lock not renewed for this long belongs to a run that is gone
_ATTEMPTS = 3  # a lock that changes hands under us this often is reported as held


@contextlib.contextmanager
def hold_run_lock(run_dir: str, s3_endpoint_url: str | None = None, lease_s: float = LEASE_S) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the block; RunLockError when another live run holds it."""
    url = posixpath.join(run_dir, LOCK_FILE)
    fs, path = filesystem(url, s3_endpoint_url)
    kind = _FileLock if isinstance(fs, LocalFileSystem) else _ObjectLock
    lock = kind(fs, path, url, lease_s)
    try:
        lock.acquire()
    except (RunLockError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - an unreachable store becomes one actionable error
        raise storage_error(url, exc, s3_endpoint_url, action="write") from None
    try:
        yield
    finally:
        lock.release()


def _new_record(lease_s: float) -> dict:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": now, "renewed": now,
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)), "lease_s": lease_s}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started_utc', '?')}")


def _in_use(url: str, holder: dict, why: str) -> RunLockError:
    return RunLockError(
        f"run directory {posixpath.dirname(url)} is in use by another run: {_describe(holder)} "
        f"(lock {url}; {why}). Wait for that run to end, choose another run.name, or delete the "
        "lock if that run is gone"
    )


def _is_mine(holder: dict | None, mine: dict) -> bool:
    return bool(holder) and all(holder.get(k) == mine[k] for k in ("host", "pid", "started"))


class _FileLock:
    def __init__(self, fs, path: str, url: str, lease_s: float):
        self.path, self.url = path, url
        self.record = _new_record(lease_s)

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(_ATTEMPTS):
            if self._create():
                return
            with _flocked(os.path.dirname(self.path)):
                holder = _read_json(self.path)
                if holder is None:
                    continue  # released meanwhile: create it again
                if not holder:
                    raise _in_use(self.url, holder, "its record is unreadable")
                if holder.get("host") != socket.gethostname():
                    raise _in_use(self.url, holder, "held from another host, so it cannot be checked from here")
                if _process_running(holder.get("pid")):
                    raise _in_use(self.url, holder, "that process is running")
                log.warning("taking over the stale run lock %s: %s is no longer running", self.url, _describe(holder))
                self._write(os.replace)
                return
        raise _in_use(self.url, _read_json(self.path) or {}, "it changed hands while we looked")

    def _create(self) -> bool:
        try:
            self._write(os.link)
        except FileExistsError:
            return False
        return True

    def _write(self, publish) -> None:
        """Write the record aside, then ``publish(aside, lock)`` (link: only if absent; replace)."""
        aside = f"{self.path}.{uuid.uuid4().hex}"
        with open(aside, "w") as fh:
            json.dump(self.record, fh)
        try:
            publish(aside, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(aside)

    def release(self) -> None:
        if _is_mine(_read_json(self.path), self.record):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}


def _process_running(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # another user's process; or a record we cannot read: never take it over
    return True


@contextlib.contextmanager
def _flocked(directory: str) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


class _ObjectLock:
    def __init__(self, fs, path: str, url: str, lease_s: float):
        self.fs, self.path, self.url, self.lease_s = fs, path, url, lease_s
        self.record = _new_record(lease_s)
        self.etag: str | None = None
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._renew_until_released, daemon=True,
                                           name=f"run-lock {url}")

    def acquire(self) -> None:
        for _ in range(_ATTEMPTS):
            try:
                self.etag = self._put(mode="create")
                break
            except FileExistsError:
                pass
            self.fs.invalidate_cache(self.path)
            try:
                info = self.fs.info(self.path)
                holder = json.loads(self.fs.cat_file(self.path))
            except FileNotFoundError:
                continue  # released meanwhile: create it again
            quiet_s = time.time() - info["LastModified"].timestamp()
            lease_s = float(holder.get("lease_s", LEASE_S))
            if quiet_s <= lease_s:
                raise _in_use(self.url, holder, f"renewed {quiet_s:.0f} s ago, lease {lease_s:.0f} s")
            log.warning("taking over the stale run lock %s: %s has not renewed it for %.0f s (lease %.0f s)",
                        self.url, _describe(holder), quiet_s, lease_s)
            try:
                self.etag = self._put(IfMatch=info["ETag"])
                break
            except OSError as exc:  # EINVAL: s3fs's "precondition failed", another run took it over first
                if exc.errno != errno.EINVAL:
                    raise
        else:
            raise _in_use(self.url, {}, "it changed hands while we looked")
        self._heartbeat.start()

    def _put(self, **conditions) -> str:
        self.record["renewed"] = time.time()  # a new ETag on every renewal
        return self.fs.pipe_file(self.path, json.dumps(self.record).encode(), **conditions)["ETag"]

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.etag = self._put(IfMatch=self.etag)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    log.error("run lock %s was taken over by another run; both now write to its directory", self.url)
                    return
                log.warning("could not renew the run lock %s: %s", self.url, exc)
            except Exception as exc:  # noqa: BLE001 - keep renewing through transient failures
                log.warning("could not renew the run lock %s: %s", self.url, exc)

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        try:
            self.fs.invalidate_cache(self.path)
            if self.fs.info(self.path)["ETag"] == self.etag:
                self.fs.rm(self.path)
        except Exception as exc:  # noqa: BLE001 - the run is done; a left lock only goes stale
            log.warning("could not remove the run lock %s: %s", self.url, exc)
