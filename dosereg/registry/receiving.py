"""Receiving dose objects: register a stored object (``DoseObject`` row), queue its ingest task, count the
task's deliveries (quarantine an object whose worker is lost every time), and sweep objects or spool files
that were never queued."""
from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from .inserts import insert_unless_conflict
from .models import DoseObject

log = logging.getLogger(__name__)


# outcomes of dose_object_register
REGISTERED = "registered"
DUPLICATE = "duplicate"

# The ingest task's name: it is defined by ``dosereg.pipeline.tasks`` (above this app: the ingest is followed by the
# exposure, staff and protocol steps), so the registry queues it by name, as any Celery client would.
INGEST_TASK = "dosereg.ingest_object"


def dose_object_register(
    *, sop_instance_uid: str, sop_class_uid: str, path: Path | str, sha256: str, size_bytes: int, calling_ae: str = "",
    enqueue: bool = True, quarantine_reason: str = "",
) -> tuple[DoseObject, str]:
    """Record a durably stored object and enqueue its ingest after commit.

    Re-sending an identical object changes nothing. A different object under
    the same SOP Instance UID replaces the earlier one (re-ingested).
    With ``quarantine_reason`` the object is kept but quarantined, not ingested (held for review).
    """
    now = timezone.now()
    # the common case, a new object: one statement, committed by itself (this runs before the C-STORE answer):
    # INSERT ... ON CONFLICT DO NOTHING RETURNING id, no BEGIN / COMMIT or savepoint around it
    new = DoseObject(
        sop_instance_uid=sop_instance_uid, sha256=sha256, sop_class_uid=sop_class_uid, path=str(path),
        size_bytes=size_bytes, calling_ae=calling_ae, enqueued_at=now,
        **({"status": DoseObject.STATUS_QUARANTINED, "quarantine_reason": quarantine_reason[:2000]}
           if quarantine_reason else {}),
    )
    if insert_unless_conflict(new):
        if enqueue and not quarantine_reason:
            transaction.on_commit(lambda: enqueue_ingest(new.pk))
        return new, REGISTERED
    # the same object again: a duplicate; if it is still pending make sure it is queued
    obj = DoseObject.objects.get(sop_instance_uid=sop_instance_uid, sha256=sha256)
    if obj.status == DoseObject.STATUS_RECEIVED:
        DoseObject.objects.filter(pk=obj.pk).update(enqueued_at=now)
        if enqueue:
            transaction.on_commit(lambda: enqueue_ingest(obj.pk))
    return obj, DUPLICATE


def enqueue_ingest(dose_object_id: int) -> bool:
    """Hand an object to the workers: the ``dosereg.ingest_object`` task (``dosereg.pipeline.tasks.ingest_object_task``).
    Failure is logged, never raised: the sweeper retries."""
    from celery import current_app

    try:
        current_app.tasks[INGEST_TASK].apply_async(
            args=(dose_object_id,),
            priority=getattr(settings, "INGEST_TASK_PRIORITY", None),  # type: ignore[arg-type]  # None: broker default
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        )
        return True
    except Exception as exc:  # broker down: the object is safe on disk and in the table
        log.warning("could not enqueue dose object %s (%s); the sweeper will retry", dose_object_id, exc)
        return False


def dose_object_delivery_start(*, dose_object_id: int, max_deliveries: int) -> tuple[bool, DoseObject | None]:
    """Count one delivery of an object's ingest task, at its start (one UPDATE, committed before the parse). An
    object still not ingested after ``max_deliveries`` deliveries (0: no limit) is quarantined instead of being
    ingested again: every delivery ended without finishing (the worker was lost: killed, or out of memory), and
    the broker would deliver it forever.

    Returns (go on, the object's row as counted): (False, None) when it was quarantined for that; the row (read by
    the same UPDATE, ``RETURNING``) is handed to ``dose_object_ingest`` so that it is not read again; None when
    there was nothing to count (already ingested)."""
    table = DoseObject._meta.db_table
    limit = " AND deliveries < %s" if max_deliveries else ""
    counted = list(DoseObject.objects.raw(
        f'UPDATE "{table}" SET deliveries = deliveries + 1 WHERE id = %s AND status = %s{limit} RETURNING *',
        [dose_object_id, DoseObject.STATUS_RECEIVED, *([max_deliveries] if max_deliveries else [])]))
    if counted:
        return True, counted[0]
    with transaction.atomic():
        obj = DoseObject.objects.select_for_update().filter(pk=dose_object_id).first()
        if obj is None or obj.status != DoseObject.STATUS_RECEIVED or not max_deliveries or obj.deliveries < max_deliveries:
            return True, None  # ingested meanwhile, or already ingested: nothing to count
        reason = (f"not ingested after {obj.deliveries} deliveries of its ingest task: each ended without finishing "
                  f"(worker lost: killed or out of memory); not delivered again (INGEST_MAX_DELIVERIES={max_deliveries})")
        obj.status, obj.quarantine_reason = DoseObject.STATUS_QUARANTINED, reason
        obj.save(update_fields=["status", "quarantine_reason"])
    log.error("quarantined %s: %s", obj.sop_instance_uid, reason)
    return False, None


def dose_object_delivery_uncount(*, dose_object_id: int) -> None:
    """A delivery that ended in a named transient error (its task is retried) did not lose its worker: take it
    back, best effort (the database may be the thing that is down)."""
    try:
        DoseObject.objects.filter(pk=dose_object_id, status=DoseObject.STATUS_RECEIVED, deliveries__gt=0) \
            .update(deliveries=F("deliveries") - 1)
    except DatabaseError:
        pass


def dose_objects_sweep(*, spool=None, stale_after_s: int | None = None, orphan_window_s: int = 7 * 86400) -> dict:
    """Re-enqueue objects stored but not ingested; register files that have no row."""
    stale_after_s = settings.SWEEP_STALE_AFTER_S if stale_after_s is None else stale_after_s
    cutoff = timezone.now() - timedelta(seconds=stale_after_s)
    stale = list(
        DoseObject.objects.filter(status=DoseObject.STATUS_RECEIVED, enqueued_at__lt=cutoff).values_list("pk", flat=True)[:10000]
    )
    requeued = 0
    for pk in stale:
        DoseObject.objects.filter(pk=pk).update(enqueued_at=timezone.now())
        requeued += enqueue_ingest(pk)
    registered = 0
    if spool is not None:
        import time

        from dicom_listener.reconcile import register_unknown

        batch: list[Path] = []

        def flush() -> int:  # every file without a row, whatever its name (side-car, file, or a derived key)
            n = register_unknown(batch)
            batch.clear()
            return n

        for _name, path in spool.iter_files(newer_than=time.time() - orphan_window_s):
            batch.append(path)
            if len(batch) >= 1000:
                registered += flush()
        registered += flush()
    return {"requeued": requeued, "registered": registered}


def dose_file_register(*, path: Path, spool, enqueue: bool = True) -> tuple[DoseObject, str]:
    """Store one file in the spool and register it, as the listener does (``enqueue``: queue its ingest).
    To import and ingest it now, with the follow-up steps: ``dosereg.pipeline.flow.file_import``."""
    import re

    import pydicom

    def valid_uid(uid: str) -> bool:  # a DICOM UID (PS3.5 9.1): digits and dots, at most 64 characters
        return len(uid) <= 64 and re.fullmatch(r"[0-9]+(\.[0-9]+)*", uid) is not None

    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    sop_uid = sop_class = ""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "SOPClassUID"])
        sop_uid = str(ds.get("SOPInstanceUID", "") or "").strip()
        sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    except Exception:  # unreadable: still stored and quarantined with the extractor's reason
        pass
    # the file's own UIDs are untrusted input: a NUL, a 200-character or a non-numeric "UID" must not reach
    # the database (NUL / over-long text crash on PostgreSQL). An invalid one is filed like a missing one;
    # the extractor reads the file again and quarantines it with the reason, or warns that the UIDs differ.
    if not valid_uid(sop_uid):
        sop_uid = f"unidentified-{sha[:40]}"
    if not valid_uid(sop_class):
        sop_class = ""
    stored = spool.store(sop_uid, data)
    del data  # not held while the object is parsed (a large report costs several times its size)
    obj, outcome = dose_object_register(
        sop_instance_uid=sop_uid, sop_class_uid=sop_class, path=stored.path, sha256=stored.sha256,
        size_bytes=stored.size_bytes, calling_ae="import", enqueue=enqueue,
    )
    return obj, outcome
