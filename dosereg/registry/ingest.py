"""The ingest of one stored object: extract it (``dosereg.rdsr``), refuse or quarantine what cannot be filed, and
write it in one transaction (``document._write_document``), idempotent on SOP Instance UID; returns the
``StudyChanges`` for the follow-up."""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists

from dosereg.rdsr import ExtractionError, NotADoseObject, extract_file
from dosereg.rdsr import records as R

from .changes import StudyChanges
from .device_resolution import _DEVICE_CACHE, device_cache_peek
from .document import _write_document
from .models import Device, DoseObject, Study
from .studies import StudyUidCollision
from .totals import study_recompute_totals

log = logging.getLogger(__name__)


def dose_object_ingest(*, dose_object_id: int, force: bool = False, row: DoseObject | None = None) -> DoseObject:
    """Extract one stored object and write its dose records (study totals included) in one transaction.

    ``row``: the object's row as just read (``receiving.dose_object_delivery_start``), else it is read here; the
    transaction reads it again, locked. The object returned by an ingest that wrote something carries
    ``changes`` (a ``StudyChanges``) for the follow-up pipeline; it is None when nothing was written (already
    ingested, or quarantined)."""
    obj = row if row is not None and row.pk == dose_object_id else DoseObject.objects.get(pk=dose_object_id)
    obj.changes = None
    if obj.status != DoseObject.STATUS_RECEIVED and not force:
        return obj
    path = _resolve_path(obj)
    if obj.ingested_at is not None and obj.study_id:  # a re-ingest (reprocess) of a counted object
        problem = _original_problem(path)
        if problem:
            return _keep_last_extraction(obj.pk, f"original missing at reprocess ({obj.path}: {problem}); "
                                                 "the last good extraction is kept")
    try:
        doc = extract_file(path, max_events=_max_events())
    except NotADoseObject as exc:  # an accepted class without dose content: kept, not quarantined
        return _quarantine(obj.pk, str(exc), status=DoseObject.STATUS_NOT_DOSE)
    except ExtractionError as exc:
        return _quarantine(obj.pk, str(exc))
    except OSError as exc:
        return _quarantine(obj.pk, f"stored original unreadable: {exc}")
    refusal = _refusal(doc)
    if refusal:
        return _quarantine(obj.pk, refusal)
    if doc.sop_instance_uid != obj.sop_instance_uid:
        doc.warnings.append(
            f"SOP Instance UID in the object ({doc.sop_instance_uid}) differs from the C-STORE request ({obj.sop_instance_uid})"
        )
    for attempt in (1, 2):
        affected: set[int] = set()
        corrections: list[tuple[int, int | None, int | None]] = []  # (study, former patient, new patient)
        try:
            with transaction.atomic():
                # the object's row, locked; with it, whether the device this process remembers for the report is
                # still a device of its own (not merged away meanwhile): asked in this statement, not its own
                cached_device = device_cache_peek(doc.device)
                lock = DoseObject.objects.select_for_update()
                if cached_device is not None:
                    lock = lock.annotate(cached_device_alive=Exists(
                        Device.objects.filter(pk=cached_device, merged_into__isnull=True)))
                obj = lock.get(pk=dose_object_id)
                if obj.status != DoseObject.STATUS_RECEIVED and not force:
                    obj.changes = None
                    return obj
                old_study_id = obj.study_id
                alive = (cached_device, obj.cached_device_alive) if cached_device is not None else None  # type: ignore[attr-defined]
                # a corrected report is a new object; a re-ingest of this one (reprocess, unmerge) that links its
                # study to another patient follows a decision taken in dosereg, not a correction: no notice
                study = _write_document(obj, doc, affected, corrections if obj.ingested_at is None else None,
                                        device_alive=alive)
                # the follow-up skips lookups that cannot find anything for a study this ingest created / that names nobody
                new_ids = [study.pk] if study.created_by_this_ingest else []
                new_facts = [(study.pk, study.procedure_modality, study.kar_written)] if new_ids else []
                named_ids = [study.pk] if doc.participants else []
                if old_study_id and old_study_id != obj.study_id:
                    study_recompute_totals(study_id=old_study_id)
                    affected.add(old_study_id)
            break
        except StudyUidCollision as exc:
            return _quarantine(dose_object_id, str(exc))
        except IntegrityError:
            # a device remembered by this process was deleted or merged meanwhile: forget and resolve again
            if attempt == 2 or not _DEVICE_CACHE:
                raise
            _DEVICE_CACHE.clear()
    if doc.source_kind in (R.IMAGE_HEADER, R.MR_HEADER, R.NM_HEADER):
        _strip_pixels(obj)
    patient_ids = sorted(set(Study.objects.filter(pk__in=affected).values_list("patient_id", flat=True)) - {None}) \
        if len(affected) > 1 else ([obj.study.patient_id] if obj.study and obj.study.patient_id else [])
    obj.changes = StudyChanges(tuple(sorted(affected)), tuple(patient_ids), tuple(new_ids), tuple(named_ids),
                               tuple(corrections), tuple(new_facts))
    return obj


def _max_events() -> int | None:
    return getattr(settings, "INGEST_MAX_EVENTS", None) or None


# Patient ID (0010,0020) and Issuer of Patient ID (0010,0021) are LO: at most 64 characters. A longer value is
# not a conformant identity key; cutting it would make two people one patient (matched on a prefix).
PATIENT_KEY_MAX_CHARS = 64


def _refusal(doc: R.DoseDocument) -> str:
    """Why the object must be quarantined before anything is written, or ""."""
    pid, issuer = (doc.patient.id or "").strip(), (doc.patient.issuer or "").strip()
    if len(pid) > PATIENT_KEY_MAX_CHARS:
        return (f"Patient ID (0010,0020) has {len(pid)} characters, more than the {PATIENT_KEY_MAX_CHARS} of its "
                f"VR (LO): not a usable identity key (it would be matched on a prefix and could join two patients)")
    if len(issuer) > PATIENT_KEY_MAX_CHARS:
        return (f"Issuer of Patient ID (0010,0021) has {len(issuer)} characters, more than the "
                f"{PATIENT_KEY_MAX_CHARS} of its VR (LO): not a usable identity key")
    return ""


def _original_problem(path: Path) -> str:
    """Why the stored original cannot be read, or ""."""
    try:
        with open(path, "rb"):
            return ""
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _keep_last_extraction(dose_object_id: int, note: str) -> DoseObject:
    """Reprocessing found no original: the object stays ingested with what it wrote before (its study, events
    and totals stay counted, consistently with its state), with a warning; nothing is announced (nothing changed)."""
    with transaction.atomic():
        obj = DoseObject.objects.select_for_update().get(pk=dose_object_id)
        obj.status = DoseObject.STATUS_INGESTED
        obj.warnings = [w for w in (obj.warnings or []) if not w.startswith("original missing at reprocess")] + [note]
        obj.save(update_fields=["status", "warnings"])
    log.warning("dose object %s: %s", obj.sop_instance_uid, note)
    return obj


def _strip_pixels(obj: DoseObject) -> None:
    """Header-only capture: dose is in the header, pixel data is not kept (MR pixels never)."""
    from dicom_listener.spool import strip_pixel_data

    try:
        strip_pixel_data(obj.path)
    except Exception as exc:  # the header was ingested; keeping pixels is not a data loss
        log.warning("could not strip pixel data from %s: %s", obj.path, exc)


def _resolve_path(obj: DoseObject) -> Path:
    return Path(obj.path)


def _quarantine(dose_object_id: int, reason: str, status: str = DoseObject.STATUS_QUARANTINED) -> DoseObject:
    with transaction.atomic():
        obj = DoseObject.objects.select_for_update().get(pk=dose_object_id)
        obj.status = status
        obj.quarantine_reason = reason[:2000]
        obj.attempts += 1
        obj.save(update_fields=["status", "quarantine_reason", "attempts"])
    log.warning("%s %s: %s", status, obj.sop_instance_uid, reason)
    return obj
