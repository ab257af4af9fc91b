"""Acknowledged means kept: every file in the spool ends in the registry (ingested or quarantined).

``register_spool_file`` registers a spooled object the listener could not record (database unreachable,
a crash between the rename and the INSERT), exactly as the listener would have: UID, SOP class and
calling AE from the side-car written at store time, else the UID from the file name or the file itself;
a file whose UID cannot be made valid is registered under a derived key and quarantined, never skipped.

``spool_reconcile`` compares the spool with the registry and lists what is in neither registry nor
quarantine (``manage.py reconcile_spool``, the listener health check, the fault suite).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from .spool import Spool, read_sidecar, valid_uid

log = logging.getLogger("dicom_listener")

BATCH = 1000


def replacement_conflict(*, sop_instance_uid: str, sha256: str, calling_ae: str) -> str:
    """Why an object must be held for review, or "": a different object under a SOP Instance UID that is
    already registered from another calling AE (a report replaced by another device or caller).

    Quarantined objects and objects of unknown origin (no calling AE) are not compared."""
    from django.db import connection

    from dosereg.registry.models import DoseObject

    # the common case, nothing to compare with: one indexed probe without the ORM (it runs before every
    # C-STORE answer; the queryset below costs about ten times its CPU)
    table = connection.ops.quote_name(DoseObject._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(f"SELECT 1 FROM {table} WHERE sop_instance_uid = %s AND sha256 <> %s AND status <> %s "
                    "AND calling_ae <> '' AND calling_ae <> %s LIMIT 1",
                    [sop_instance_uid, sha256, DoseObject.STATUS_QUARANTINED, calling_ae])
        if cur.fetchone() is None:
            return ""
    others = set(
        DoseObject.objects.filter(sop_instance_uid=sop_instance_uid)
        .exclude(sha256=sha256).exclude(status=DoseObject.STATUS_QUARANTINED).exclude(calling_ae="")
        .values_list("calling_ae", flat=True)
    )
    others.discard(calling_ae)
    if not others:
        return ""
    return (f"replacement from another calling AE: this object came from {calling_ae or 'an unknown caller'}, "
            f"the registered one with the same SOP Instance UID from {', '.join(sorted(others))}; "
            "held for review (reprocess it to accept the replacement)")


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _uid_in_file(path: Path) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SOPInstanceUID"])
    except Exception:
        return ""
    meta = getattr(ds, "file_meta", None)
    for value in (getattr(meta, "MediaStorageSOPInstanceUID", None), ds.get("SOPInstanceUID")):
        text = str(value or "").rstrip("\x00 ")
        if valid_uid(text):
            return text
    return ""


def register_spool_file(path: Path | str):
    """Register one spooled file that has no row. Returns (DoseObject, outcome) like dose_object_register."""
    from dosereg.registry.receiving import dose_object_register

    path = Path(path)
    meta = read_sidecar(path)
    size_on_disk = path.stat().st_size
    if meta.get("sha256") and meta.get("size_bytes") == size_on_disk:
        sha256, size = str(meta["sha256"]), size_on_disk
    else:
        sha256, size = _hash_file(path)
    name = path.name[:-4].split("__")[0] if path.name.endswith(".dcm") else path.name
    uid = str(meta.get("sop_instance_uid") or "")
    for candidate in (uid, name):
        if valid_uid(candidate):
            uid = candidate
            break
    else:
        uid = _uid_in_file(path)
    calling_ae = str(meta.get("calling_ae") or "")[:32]
    sop_class = str(meta.get("sop_class_uid") or "")
    if not valid_uid(sop_class):
        sop_class = ""
    if valid_uid(uid):
        reason = replacement_conflict(sop_instance_uid=uid, sha256=sha256, calling_ae=calling_ae) if calling_ae else ""
    else:
        uid = f"unidentified-{sha256[:40]}"
        reason = (f"the SOP Instance UID of this spooled file is missing or not a valid DICOM UID; "
                  f"registered by the sweeper under {uid}")
    obj, outcome = dose_object_register(
        sop_instance_uid=uid, sop_class_uid=sop_class, path=path, sha256=sha256, size_bytes=size,
        calling_ae=calling_ae, quarantine_reason=reason,
    )
    log.warning("registered spooled file %s as %s (%s)%s", path.name, uid, outcome, f": {reason}" if reason else "")
    return obj, outcome


def register_unknown(paths: list[Path]) -> int:
    """Register those of ``paths`` that have no row; returns how many were registered."""
    from dosereg.registry.models import DoseObject

    known = set(DoseObject.objects.filter(path__in=[str(p) for p in paths]).values_list("path", flat=True))
    n = 0
    for path in paths:
        if str(path) in known:
            continue
        try:
            register_spool_file(path)
        except FileNotFoundError:  # removed meanwhile (retention)
            continue
        n += 1
    return n


def spool_reconcile(*, spool: Spool, grace_s: float = 0.0, register: bool = False, max_listed: int = 100,
                    window_s: float | None = None) -> dict:
    """Compare the spool with the registry.

    Every ``.dcm`` under ``objects/`` must have a DoseObject row (received, ingested or quarantined).
    Files younger than ``grace_s`` without a row are counted as ``pending`` (the listener or the sweeper
    may be registering them); older ones are ``unregistered``: acknowledged objects in neither registry
    nor quarantine. With ``register`` they are registered (as the sweeper does) and reported as such.
    ``window_s``: only files modified that recently (a cheaper check for frequent health probes)."""
    from dosereg.registry.models import DoseObject

    now = time.time()
    files = unregistered = pending = registered_now = 0
    listed: list[str] = []
    batch: list[Path] = []

    def flush() -> None:
        nonlocal unregistered, pending, registered_now
        known = set(DoseObject.objects.filter(path__in=[str(p) for p in batch]).values_list("path", flat=True))
        for path in batch:
            if str(path) in known:
                continue
            try:
                young = now - path.stat().st_mtime < grace_s
            except FileNotFoundError:
                continue
            if young:
                pending += 1
                continue
            if register:
                register_spool_file(path)
                registered_now += 1
                continue
            unregistered += 1
            if len(listed) < max_listed:
                listed.append(str(path))
        batch.clear()

    for _name, path in spool.iter_files(newer_than=now - window_s if window_s else 0.0):
        files += 1
        batch.append(path)
        if len(batch) >= BATCH:
            flush()
    flush()
    partial = 0
    if spool.tmp.exists():
        partial = sum(1 for e in os.scandir(spool.tmp) if e.name.endswith(".part"))
    return {"ok": unregistered == 0, "spool": str(spool.root), "files": files, "unregistered": unregistered,
            "unregistered_paths": listed, "pending": pending, "registered_now": registered_now,
            "partial_transfers": partial}
