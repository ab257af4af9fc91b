"""Durable object store for received DICOM objects.

Writes are crash-safe: temp file in the same filesystem, fsync, atomic rename,
fsync of the directory. Nothing here parses DICOM.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SIDECAR_SUFFIX = ".json"


def valid_uid(value: str) -> bool:
    """A DICOM UID as PS3.5 9.1 needs it here: digits and dots, no empty component, at most 64 characters.

    (Leading zeros in a component are tolerated: some modalities send them and they harm nothing.)"""
    return len(value) <= 64 and _UID_RE.match(value) is not None


class SpoolError(OSError):
    """The object could not be stored durably (disk full, I/O error)."""


@dataclass(frozen=True)
class StoredObject:
    path: Path
    sha256: str
    size_bytes: int


def safe_name(sop_instance_uid: str) -> str:
    """A file name for a SOP Instance UID that can never escape the spool."""
    uid = sop_instance_uid.strip().rstrip("\x00")
    if _UID_RE.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()


class Spool:
    def __init__(self, root: Path | str, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.tmp = self.root / "tmp"
        self.min_free_bytes = min_free_bytes
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sop_instance_uid: str, sha256: str) -> Path:
        """<objects>/<bucket>/<SOP Instance UID>__<content hash>.dcm: a re-used UID never overwrites."""
        name = safe_name(sop_instance_uid)
        bucket = hashlib.sha1(name.encode()).hexdigest()[:2]
        return self.objects / bucket / f"{name}__{sha256[:16]}.dcm"

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def open_incoming(self, *, max_bytes: int, budget: "InflightBudget | None" = None) -> "IncomingFile":
        """A file in ``tmp/`` that an object is streamed into while it is received (see ``IncomingFile``)."""
        return IncomingFile(self, max_bytes=max_bytes, budget=budget)

    def commit(self, incoming: "IncomingFile", sop_instance_uid: str, meta: dict | None = None) -> StoredObject:
        """Make a completely received object durable: fsync, side-car, atomic rename, fsync of the directory.

        The side-car (``<name>.json``: UIDs, calling AE, hash, size) lets the sweeper register the object
        exactly as the listener would have when the database was unreachable. It is written before the
        object's rename and not fsynced on its own: the object is what must survive; a side-car lost in a
        crash only costs the calling AE (the sweeper then reads the UID from the file)."""
        if incoming.failure:
            raise SpoolError(incoming.failure[1])
        if self.min_free_bytes and self.free_bytes() < self.min_free_bytes:
            raise SpoolError(f"spool below minimum free space ({self.min_free_bytes} bytes)")
        try:
            incoming.sync()
            final = self.path_for(sop_instance_uid, incoming.sha256)
            final.parent.mkdir(exist_ok=True)
            if meta is not None:
                side = {**meta, "sop_instance_uid": sop_instance_uid, "sha256": incoming.sha256,
                        "size_bytes": incoming.size}
                side_tmp = self.tmp / f"{final.name}.{os.getpid()}.{os.urandom(4).hex()}.json.part"
                side_tmp.write_text(json.dumps(side, sort_keys=True))
                os.replace(side_tmp, sidecar_path(final))
            os.replace(incoming.path, final)
            incoming.committed = True
            _fsync_dir(final.parent)
        except OSError as exc:
            raise SpoolError(f"could not store {sop_instance_uid}: {exc}") from exc
        return StoredObject(final, incoming.sha256, incoming.size)

    def store(self, sop_instance_uid: str, data: bytes) -> StoredObject:
        """Write ``data`` durably under the object's UID; return where it is."""
        if self.min_free_bytes and self.free_bytes() < self.min_free_bytes + len(data):
            raise SpoolError(f"spool below minimum free space ({self.min_free_bytes} bytes)")
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.path_for(sop_instance_uid, sha256)
        tmp_path = self.tmp / f"{final.name}.{os.getpid()}.{os.urandom(4).hex()}.part"
        try:
            final.parent.mkdir(exist_ok=True)
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_path, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            try:
                tmp_path.unlink(missing_ok=True)
            except OSError:
                pass
            raise SpoolError(f"could not store {sop_instance_uid}: {exc}") from exc
        return StoredObject(final, sha256, len(data))

    def iter_files(self, newer_than: float = 0.0):
        """Yield (SOP Instance UID file name, path) for objects modified after ``newer_than`` (epoch s)."""
        if not self.objects.exists():
            return
        for bucket in os.scandir(self.objects):
            if not bucket.is_dir():
                continue
            for entry in os.scandir(bucket.path):
                if entry.name.endswith(".dcm") and entry.stat().st_mtime >= newer_than:
                    yield entry.name[:-4].split("__")[0], Path(entry.path)


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> dict:
    """The side-car written with a stored object, or {} when it is missing or unreadable (a crash)."""
    try:
        data = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class InflightBudget:
    """Bytes of partly received objects over all associations (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


# why an incoming object failed: (kind, message); kinds decide the C-STORE status
TOO_LARGE = "too-large"
NO_RESOURCES = "out-of-resources"


class IncomingFile:
    """An object being received, written to ``spool/tmp`` as its P-DATA arrive (pynetdicom's chunked receive).

    Memory stays at one PDU whatever the object's size. The size limit is enforced as the data arrive: past
    ``max_bytes``, or when the in-flight budget or the disk is exhausted, the partial file is deleted and the
    rest of the object is discarded; the C-STORE handler then answers with a failure status. ``on_runaway``
    is called once a peer goes on sending more than twice the limit (the listener aborts the association).

    Quacks like the NamedTemporaryFile pynetdicom expects: ``write``, ``file.flush``, ``close``, ``name``
    (pynetdicom unlinks ``name`` after the handler: it stays the temporary path, never the committed one).
    """

    CHECK_FREE_EVERY = 64 * 1024 * 1024

    def __init__(self, spool: Spool, *, max_bytes: int, budget: InflightBudget | None = None) -> None:
        self.spool = spool
        self.max_bytes = max_bytes
        self.budget = budget
        self.path = spool.tmp / f"rx.{os.getpid()}.{os.urandom(8).hex()}.part"
        self.name = str(self.path)
        self.file = self
        self.size = 0
        self.discarded = 0
        self.failure: tuple[str, str] | None = None
        self.committed = False
        self.on_runaway: Callable[[IncomingFile], None] | None = None
        self._held = 0  # bytes taken from the budget
        self._hash = hashlib.sha256()
        self._since_check = 0
        self._lock = threading.Lock()
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        if spool.min_free_bytes and spool.free_bytes() < spool.min_free_bytes:
            self._fail(NO_RESOURCES, f"spool below minimum free space ({spool.min_free_bytes} bytes)")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def write(self, data) -> int:
        n = len(data)
        callback = None
        with self._lock:
            if self.failure is not None or self._fd is None:
                self.discarded += n
                if self.on_runaway is not None and self.size + self.discarded > 2 * self.max_bytes:
                    callback, self.on_runaway = self.on_runaway, None
            else:
                self._write(data, n)
        if callback is not None:  # outside the lock: aborting the association closes this file
            callback(self)
        return n

    def _write(self, data, n: int) -> None:
        """Called with the lock held."""
        if self.size + n > self.max_bytes:
            self._fail(TOO_LARGE, f"object larger than the limit of {self.max_bytes} bytes")
            self.discarded += n
            return
        if self.budget is not None:
            if not self.budget.take(n):
                self._fail(NO_RESOURCES, f"in-flight limit of {self.budget.limit} bytes reached")
                self.discarded += n
                return
            self._held += n
        assert self._fd is not None  # write() checked it under the same lock
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:  # disk full, I/O error
            self._fail(NO_RESOURCES, f"spool write failed: {exc}")
            self.discarded += n
            return
        self._hash.update(data)
        self.size += n
        self._since_check += n
        if self._since_check >= self.CHECK_FREE_EVERY and self.spool.min_free_bytes:
            self._since_check = 0
            if self.spool.free_bytes() < self.spool.min_free_bytes:
                self._fail(NO_RESOURCES, f"spool below minimum free space ({self.spool.min_free_bytes} bytes)")

    def flush(self) -> None:  # every write is already handed to the kernel
        pass

    def sync(self) -> None:
        with self._lock:
            if self._fd is None:
                raise SpoolError("the incoming object was closed before it was complete")
            os.fsync(self._fd)

    def _fail(self, kind: str, message: str) -> None:
        """Give back disk and budget at once; the rest of the object is discarded."""
        self.failure = (kind, message)
        self._close_fd()
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self.budget is not None and self._held:
            self.budget.give(self._held)
            self._held = 0

    def close(self) -> None:
        """Release everything; an object never committed leaves no file behind (idempotent)."""
        with self._lock:
            self._close_fd()
            if not self.committed:
                try:
                    self.path.unlink(missing_ok=True)
                except OSError:
                    pass

    @property
    def closed(self) -> bool:
        return self._fd is None


def clean_stale_tmp(spool: Spool, older_than_s: float = 86400) -> int:
    """Remove partial files left by a listener that died mid-transfer (never acknowledged). Other listener
    replicas share the spool: only files untouched for ``older_than_s`` are removed."""
    cutoff = time.time() - older_than_s
    removed = 0
    for entry in os.scandir(spool.tmp):
        try:
            if entry.name.endswith(".part") and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def strip_pixel_data(path: Path | str) -> bool:
    """Rewrite a stored image without its pixel data (header-only capture; MR pixels are not kept).

    Crash-safe like ``Spool.store``. Returns False when there was nothing to strip.
    """
    import pydicom

    path = Path(path)
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return False
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            delattr(ds, keyword)
    tmp_path = path.with_name(path.name + f".{os.getpid()}.strip")
    with open(tmp_path, "wb") as fh:
        ds.save_as(fh, enforce_file_format=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_path, path)
    _fsync_dir(path.parent)
    return True
