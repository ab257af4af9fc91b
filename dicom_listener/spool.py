"""Durable object store for received DICOM objects.

Writes are crash-safe: temp file in the same filesystem, fsync, atomic rename,
fsync of the directory. Nothing here parses DICOM.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


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
