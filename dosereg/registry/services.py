"""Registry services: every write to the dose registry goes through here.

One transaction per object, bulk inserts, idempotent on SOP Instance UID and on
Irradiation Event UID. Parsing is done by the pure ``dosereg.rdsr`` package.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, Max, Q, Sum
from django.utils import timezone

from dosereg.rdsr import ExtractionError, NotADoseObject, extract_file
from dosereg.rdsr import records as R

from . import device_identity as DI
from . import mammo_nm
from .inserts import insert_unless_conflict
from .models import (
    Device,
    DeviceIdentifier,
    DeviceIdentity,
    DeviceSoftwareVersion,
    DoseObject,
    IrradiationEvent,
    MRExam,
    Participant,
    Patient,
    PlaneTotal,
    Study,
)
log = logging.getLogger(__name__)

# outcomes of dose_object_register
REGISTERED = "registered"
DUPLICATE = "duplicate"

# The ingest task's name: it is defined by ``dosereg.pipeline.tasks`` (above this app: the ingest is followed by the
# exposure, staff and protocol steps), so the registry queues it by name, as any Celery client would.
INGEST_TASK = "dosereg.ingest_object"


@dataclass(frozen=True)
class StudyChanges:
    """What a change of the registry touched, for the follow-up pipeline (``dosereg.pipeline.flow.follow_up``).

    ``new_study_ids``: studies the ingest created (nothing can refer to them yet); ``named_study_ids``: those whose
    report names people (None: not known, look)."""

    study_ids: tuple[int, ...]
    patient_ids: tuple[int, ...]
    new_study_ids: tuple[int, ...] = ()
    named_study_ids: tuple[int, ...] | None = None
    # a corrected report moved these studies to another patient: (study, former patient, new patient)
    corrections: tuple[tuple[int, int | None, int | None], ...] = ()
    # of the new studies: (study, procedure modality, whether an event with a reference air kerma was written);
    # what the follow-up would otherwise read back (the skin-dose step's choice of studies)
    new_study_facts: tuple[tuple[int, str, bool], ...] = ()


def study_changes_of(obj: DoseObject) -> StudyChanges:
    """The changes of an object already ingested (its task was delivered again after the ingest committed)."""
    if not obj.study_id:
        return StudyChanges((), ())
    patient_ids = tuple(p for p in Study.objects.filter(pk=obj.study_id).values_list("patient_id", flat=True) if p)
    return StudyChanges((obj.study_id,), patient_ids)


# ---------------------------------------------------------------------------
# receiving
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# ingest
# ---------------------------------------------------------------------------
def dose_object_ingest(*, dose_object_id: int, force: bool = False, row: DoseObject | None = None) -> DoseObject:
    """Extract one stored object and write its dose records (study totals included) in one transaction.

    ``row``: the object's row as just read (``dose_object_delivery_start``), else it is read here; the
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


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_default_timezone())
    return value


EARLIEST_DATETIME = datetime(1895, 1, 1, tzinfo=dt_timezone.utc)
FUTURE_SLACK = timedelta(days=1)


_SAFE_EARLIEST = datetime(1895, 1, 2)  # a wall-clock time in range at any UTC offset (at most 14 h)
_SAFE_LATEST: list = [0.0, datetime.min]


def _safe_latest() -> datetime:
    """A naive wall-clock time before which every value is in range at any UTC offset: now in UTC (an offset
    adds at most 14 h, under the day of slack). Read once a minute: older is only more cautious."""
    import time as _time

    if _time.monotonic() > _SAFE_LATEST[0]:
        _SAFE_LATEST[:] = [_time.monotonic() + 60.0, timezone.now().replace(tzinfo=None)]
    return _SAFE_LATEST[1]


def _bounded(value: datetime | None, doc: R.DoseDocument, what: str) -> datetime | None:
    """``value`` made aware, or None (flagged on ``doc``) when it is outside [1895-01-01, now + 1 day] in UTC.

    The extractor already nulls such values; this is the registry's own bound: a naive 9999-12-31 23:00 on a
    server west of UTC is year 10000 in UTC, which PostgreSQL stores and Python cannot read back."""
    if value is None:
        return None
    wall = value.replace(tzinfo=None) if value.tzinfo is not None else value
    if _SAFE_EARLIEST <= wall < _safe_latest():  # in range whatever its time zone (the common case): no arithmetic
        return _aware(value)
    try:
        aware = _aware(value)
        utc = aware.astimezone(dt_timezone.utc) if aware is not None else None
    except (OverflowError, ValueError):
        utc = None
    if utc is not None and EARLIEST_DATETIME <= utc <= timezone.now() + FUTURE_SLACK:
        return aware
    msg = f"implausible date: {what} {value.isoformat()} is out of range after time-zone handling; stored as null"
    if msg not in doc.flags:
        doc.flags.append(msg)
        doc.warnings.append(msg)
    return None


def _s(value) -> str:
    return "" if value is None else str(value)


def _write_document(obj: DoseObject, doc: R.DoseDocument, affected: set[int],
                    corrections: list[tuple[int, int | None, int | None]] | None = None,
                    device_alive: tuple[int, bool] | None = None) -> Study:
    device, identity = device_resolve_identity(doc.device, modality=doc.procedure_modality or doc.modality or "",
                                               cached_alive=device_alive)
    patient = patient_resolve(doc.patient, warnings=doc.warnings, flags=doc.flags)
    events = doc.events
    if doc.source_kind == R.IMAGE_HEADER:
        for ev in events:  # one event per image: key it by the image's SOP Instance UID
            ev.irradiation_event_uid = ev.irradiation_event_uid or doc.sop_instance_uid
    event_rows = [_event_row(ev, None, obj, doc) for ev in events]
    new_uids = {e.irradiation_event_uid for e in events if e.irradiation_event_uid}
    # one query for both re-filed checks (the study to keep, and the reports to replace or not count again)
    sharing = _reports_sharing(obj, new_uids)
    study = _study_upsert(doc, patient, device, _totals_from_document(doc, event_rows), refiled_from=obj,
                          identity=identity, sharing=sharing)
    affected.add(study.pk)
    if corrections is not None and not study.created_by_this_ingest and study.former_patient_id != study.patient_id:
        corrections.append((study.pk, study.former_patient_id, study.patient_id))

    others = list(
        DoseObject.objects.filter(study=study, status=DoseObject.STATUS_INGESTED, superseded_by__isnull=True)
        .exclude(pk=obj.pk).values_list("pk", "sop_instance_uid")
    ) if not study.created_by_this_ingest else []
    # A corrected object re-sent under the same SOP Instance UID replaces the earlier one in this study.
    replaced = [pk for pk, sop in others if sop == obj.sop_instance_uid]
    if replaced:
        doc.warnings.append(f"replaces {len(replaced)} earlier object(s) with the same SOP Instance UID")
        DoseObject.objects.filter(pk__in=replaced).update(superseded_by=obj)
    # re-ingest of this object (or of the objects it replaces): remove what they wrote before
    if obj.attempts or replaced:
        for model in (IrradiationEvent, PlaneTotal, Participant, MRExam, *mammo_nm.CHILD_MODELS):
            model.objects.filter(dose_object_id__in=[obj.pk, *replaced]).delete()

    # the same report (or its events) filed before under another Study Instance UID: one procedure
    counted_elsewhere, superseded_elsewhere = _refiled_elsewhere(obj, doc, study, new_uids, affected, sharing)

    # cumulative RDSRs (a later one holds all events of an earlier one): supersede, never double count
    owners: dict[int, set[str]] = {}
    active_others = {pk for pk, _ in others} - set(replaced)
    if active_others:
        for owner_id, uid in IrradiationEvent.objects.filter(study=study).exclude(dose_object=obj).values_list(
            "dose_object_id", "irradiation_event_uid"
        ):
            owners.setdefault(owner_id, set()).add(uid)
    superseded_by_other = None
    if new_uids:
        for other_id in active_others:
            other_uids = owners.get(other_id, set())
            if new_uids <= other_uids and new_uids != other_uids:
                superseded_by_other = other_id  # an older partial report arriving late
                break
    to_supersede = [] if superseded_by_other else [
        oid for oid in active_others if owners.get(oid) and owners[oid] <= new_uids
    ]
    overlap = [oid for oid in active_others if oid not in to_supersede and owners.get(oid, set()) & new_uids]
    if overlap and not superseded_by_other:
        doc.warnings.append("events overlap another report of this study without being a superset; events were merged by Irradiation Event UID")

    if doc.source_kind == R.IMAGE_HEADER and (to_supersede or superseded_by_other):
        mammo_nm.same_exposure(doc, study, obj, event_rows, to_supersede or [superseded_by_other])  # type: ignore[list-item]  # not None here
    superseded_by_other = superseded_by_other or superseded_elsewhere
    obj.superseded_by_id = superseded_by_other
    if to_supersede:
        DoseObject.objects.filter(pk__in=to_supersede).update(superseded_by=obj)
        DoseObject.objects.filter(superseded_by_id__in=to_supersede).update(superseded_by=obj)

    study.kar_written = False
    if not superseded_by_other and events:
        rows = [r for r in event_rows if r.irradiation_event_uid not in counted_elsewhere] if counted_elsewhere else event_rows
        study.kar_written = any(r.dose_rp_gy is not None for r in rows)
        for row in rows:
            row.study = study
        update_fields = [f.name for f in IrradiationEvent._meta.concrete_fields if f.name not in ("id", "study", "irradiation_event_uid")]
        IrradiationEvent.objects.bulk_create(
            rows,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["study", "irradiation_event_uid"],
            update_fields=update_fields,
        )
    if not superseded_elsewhere:  # a late partial copy of a report counted in another study adds nothing
        PlaneTotal.objects.bulk_create([_plane_row(p, study, obj) for p in doc.planes])
    seen: set[tuple[str, str]] = set()
    participants = []
    for p in doc.participants:
        key = (_s(p.name), _s(p.role))
        if key in seen:
            continue
        seen.add(key)
        participants.append(
            Participant(study=study, dose_object=obj, name=_s(p.name)[:256], role=_s(p.role)[:64],
                        role_code=_s(p.role_code)[:64], person_id=_s(p.person_id)[:128], source=p.source)
        )
    Participant.objects.bulk_create(participants)
    mammo_nm.write_breasts_and_administrations(doc, study, obj)
    if doc.mr is not None:
        MRExam.objects.create(
            study=study, dose_object=obj, sar_w_kg=doc.mr.sar_w_kg, sar_definition=_s(doc.mr.sar_definition)[:32],
            db_dt_t_s=doc.mr.db_dt_t_s, field_strength_t=doc.mr.field_strength_t, b1rms_ut=doc.mr.b1rms_ut,
            operating_mode=_s(doc.mr.operating_mode)[:32], protocol=_s(doc.mr.protocol)[:256],
        )

    obj.study = study
    obj.device = device
    obj.source_kind = doc.source_kind
    obj.template_id = _s(doc.template_id)
    obj.software_versions = _s(doc.device.software_versions)[:256]  # as received (a device split moves its history)
    obj.scope_of_accumulation = _s(doc.scope_of_accumulation)
    obj.dlp_total_mgy_cm = doc.dlp_total_mgy_cm
    obj.warnings = list(doc.warnings)
    obj.flags = list(doc.flags)
    obj.status = DoseObject.STATUS_INGESTED
    obj.quarantine_reason = ""
    obj.ingested_at = timezone.now()
    obj.attempts += 1
    obj.save()
    if not study.created_by_this_ingest or counted_elsewhere or superseded_elsewhere:
        study_recompute_totals(study_id=study.pk)  # (a new study was inserted with this report's totals)
    elif study.flags != obj.flags:  # flags raised after the insert (e.g. a re-filed report)
        Study.objects.filter(pk=study.pk).update(flags=obj.flags)
    return study


def _active_objects():
    """Objects whose rows count in the registry: ingested (or pending a reprocess after an ingest: their rows
    are still there) and not superseded."""
    return DoseObject.objects.filter(superseded_by__isnull=True, study__isnull=False).exclude(
        status=DoseObject.STATUS_QUARANTINED)


class _Sharing(NamedTuple):
    """An active report other than the one being ingested that is the same report (SOP Instance UID) or holds
    some of its Irradiation Event UIDs, with its study."""

    pk: int
    study_id: int
    sop_instance_uid: str


def _reports_sharing(obj: DoseObject, new_uids: set[str]) -> list[_Sharing]:
    """The active reports (any study) that are this report or hold its events: one query, read before the study
    is chosen; ``_refiled_study`` and ``_refiled_elsewhere`` pick from it. On PostgreSQL a UNION of two index
    lookups with the event UIDs as one array parameter (an OR with a sub-select over hundreds of literals cost
    more to plan than to run)."""
    if connection.vendor == "postgresql":
        qn = connection.ops.quote_name
        objects, events = qn(DoseObject._meta.db_table), qn(IrradiationEvent._meta.db_table)
        with connection.cursor() as cur:  # driven by the two lookups (a handful of rows), then their objects
            cur.execute(
                f"SELECT o.id, o.study_id, o.sop_instance_uid FROM ("
                f"SELECT id FROM {objects} WHERE sop_instance_uid = %s "
                f"UNION SELECT dose_object_id FROM {events} WHERE irradiation_event_uid = ANY(%s)) c "
                f"JOIN {objects} o ON o.id = c.id "
                f"WHERE o.id <> %s AND o.study_id IS NOT NULL AND o.superseded_by_id IS NULL AND o.status <> %s",
                [obj.sop_instance_uid, sorted(new_uids), obj.pk, DoseObject.STATUS_QUARANTINED])
            return [_Sharing(*row) for row in cur.fetchall()]
    same = Q(sop_instance_uid=obj.sop_instance_uid)
    if new_uids:
        same |= Q(pk__in=IrradiationEvent.objects.filter(irradiation_event_uid__in=list(new_uids))
                  .values("dose_object_id"))
    return [_Sharing(*row) for row in _active_objects().filter(same).exclude(pk=obj.pk).values_list(
        "pk", "study_id", "sop_instance_uid")]


def _refiled_study(obj: DoseObject, doc: R.DoseDocument, sharing: Sequence[_Sharing]) -> int | None:
    """The study this report (same SOP Instance UID) was counted under with another Study Instance UID, when
    it is that study's only active report (the study can take the new UID); else None. ``sharing``: the
    ingest's one read of ``_reports_sharing``."""
    # (asked only when no study has this report's Study Instance UID: each found is under another UID)
    found = {r.study_id for r in sharing if r.sop_instance_uid == obj.sop_instance_uid}
    if len(found) != 1:
        return None
    study_id = found.pop()
    if _active_objects().filter(study_id=study_id).exclude(sop_instance_uid=obj.sop_instance_uid).exists():
        return None
    return study_id


def _refiled_elsewhere(obj: DoseObject, doc: R.DoseDocument, study: Study, new_uids: set[str],
                       affected: set[int], sharing: Sequence[_Sharing]) -> tuple[set[str], int | None]:
    """Reports counted under another study that are this report (same SOP Instance UID) or hold its events
    (same Irradiation Event UIDs): never count one procedure twice.

    - the same report, or one whose events are all in this one: replaced (superseded by this object, its rows
      removed from the other study, which is deleted when no report is left in it);
    - one that holds all of this report's events and more: this one adds nothing (returned as superseding);
    - a partial overlap: the overlapping events are not counted again here (returned as the set of UIDs).
    Each case is flagged on the object and study."""
    # ``sharing``: the same report, or the owners of these events (read once by the ingest); here: another study's
    candidates: dict[int, set[str]] = {r.pk: set() for r in sharing if r.study_id != study.pk}
    if not candidates:
        return set(), None
    for owner_id, uid in IrradiationEvent.objects.filter(dose_object_id__in=list(candidates)).values_list(
            "dose_object_id", "irradiation_event_uid"):
        candidates[owner_id].add(uid)
    counted: set[str] = set()
    superseding = None
    emptied: set[int] = set()
    for other in DoseObject.objects.filter(pk__in=list(candidates)).select_related("study").order_by("pk"):
        other_uids = candidates[other.pk]
        where = other.study.study_instance_uid if other.study else "?"
        if other.sop_instance_uid == obj.sop_instance_uid or (other_uids and other_uids <= new_uids):
            why = "same SOP Instance UID" if other.sop_instance_uid == obj.sop_instance_uid else "all its events are in this one"
            _flag(doc, f"re-filed: replaces report {other.sop_instance_uid} counted under Study Instance UID {where} "
                       f"({why}); one procedure, counted once")
            for model in (IrradiationEvent, PlaneTotal, Participant, MRExam):
                model.objects.filter(dose_object_id=other.pk).delete()
            old_study_id = other.study_id
            DoseObject.objects.filter(pk=other.pk).update(superseded_by=obj, study=study)
            DoseObject.objects.filter(superseded_by_id=other.pk).update(superseded_by=obj)
            if old_study_id:
                emptied.add(old_study_id)
        elif new_uids and new_uids < other_uids:
            _flag(doc, f"re-filed: all events of this report are counted under Study Instance UID {where} "
                       f"(report {other.sop_instance_uid}, which holds more); not counted again")
            superseding = superseding or other.pk
        else:
            overlap = other_uids & new_uids
            if overlap:
                _flag(doc, f"re-filed: {len(overlap)} irradiation event(s) already counted under Study Instance UID "
                           f"{where} (report {other.sop_instance_uid}); not counted again")
                counted |= overlap
    for old_study_id in sorted(emptied):
        if not DoseObject.objects.filter(study_id=old_study_id).exists():
            Study.objects.filter(pk=old_study_id).delete()  # nothing left in it (its patient is recomputed on delete)
        else:
            study_recompute_totals(study_id=old_study_id)
            affected.add(old_study_id)
    return counted, superseding


def _flag(doc: R.DoseDocument, msg: str) -> None:
    if msg not in doc.flags:
        doc.flags.append(msg)
        doc.warnings.append(msg)


def _mas(exposure_uas: float | None) -> float | None:
    return exposure_uas / 1000.0 if exposure_uas is not None else None


def _event_row(ev: R.IrradiationEvent, study: Study | None, obj: DoseObject, doc: R.DoseDocument) -> IrradiationEvent:
    return IrradiationEvent(
        study=study,
        dose_object=obj,
        irradiation_event_uid=ev.irradiation_event_uid or f"{doc.sop_instance_uid}#{id(ev)}",
        event_type=_s(ev.event_type)[:32],
        datetime=_bounded(ev.datetime, doc, "irradiation event DateTime Started"),
        plane=_s(ev.plane)[:8],
        protocol=_s(ev.protocol)[:256],
        dap_gy_cm2=ev.dap_gy_cm2,
        dose_rp_gy=ev.dose_rp_gy,
        reference_point_definition=_s(ev.reference_point_definition)[:256],
        kvp=ev.kvp,
        tube_current_ma=ev.tube_current_ma,
        exposure_time_ms=ev.exposure_time_ms,
        pulse_rate_per_s=ev.pulse_rate_per_s,
        number_of_frames=ev.number_of_frames,
        irradiation_duration_s=ev.irradiation_duration_s,
        fluoro_mode=_s(ev.fluoro_mode)[:16],
        dose_mode=_s(ev.dose_mode)[:64],
        positioner_primary_angle_deg=ev.positioner_primary_angle_deg,
        positioner_secondary_angle_deg=ev.positioner_secondary_angle_deg,
        collimated_field_area_m2=ev.collimated_field_area_m2,
        entrance_exposure_at_rp_mgy=ev.entrance_exposure_at_rp_mgy,
        pulse_width_ms=ev.pulse_width_ms,
        number_of_pulses=ev.number_of_pulses,
        distance_source_to_detector_mm=ev.distance_source_to_detector_mm,
        distance_source_to_isocenter_mm=_float_extra(ev, "distance_source_to_isocenter_mm"),
        table_longitudinal_position_mm=_float_extra(ev, "table_longitudinal_position_mm"),
        table_lateral_position_mm=_float_extra(ev, "table_lateral_position_mm"),
        table_height_position_mm=_float_extra(ev, "table_height_position_mm"),
        filter_material=_s(ev.filter_material)[:128],
        exposure_index=ev.exposure_index,
        target_exposure_index=_float_extra(ev, "target_exposure_index"),
        deviation_index=ev.deviation_index,
        ctdivol_mgy=ev.ctdivol_mgy,
        dlp_mgy_cm=ev.dlp_mgy_cm,
        ctdiw_phantom=_s(ev.ctdiw_phantom)[:16],
        ct_scanning_length_mm=ev.ct_scanning_length_mm,
        ct_pitch_factor=ev.ct_pitch_factor,
        ct_exposure_time_s=ev.ct_exposure_time_s,
        ssde_mgy=ev.ssde_mgy,
        target_region=_s(ev.target_region)[:128],
        target_region_code=_s(ev.target_region_code)[:64],
        dose_check=_jsonable(asdict(ev.dose_check)) if ev.dose_check else None,
        agd_mgy=ev.agd_mgy,
        compression_thickness_mm=ev.compression_thickness_mm,
        compression_force_n=ev.compression_force_n,
        laterality=_s(ev.laterality)[:1],
        view=_s(ev.view)[:64],
        view_code=_s(ev.view_code)[:64],
        anode_target_material=_s(ev.anode_target_material)[:64],
        exposure_mas=_mas(_float_extra(ev, "exposure_uas")),
        presentation_intent=_s(ev.presentation_intent)[:16],
        extra=_jsonable(ev.extra),
    )


def _float_extra(ev: R.IrradiationEvent, key: str) -> float | None:
    value = ev.extra.get(key)
    return float(value) if isinstance(value, (int, float)) else None


_JSON_PLAIN = frozenset({str, int, bool, type(None)})


def _jsonable(value):
    """``value`` as JSON PostgreSQL accepts: NaN and infinity (invalid JSON) become text. Plain values are
    passed through without a call (an event's private items are many small values)."""
    t = type(value)
    if t in _JSON_PLAIN:
        return value
    if t is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): v if type(v) in _JSON_PLAIN else _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _JSON_PLAIN else _jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (str, int)):  # subclasses (bool is an int)
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    return str(value)


def _plane_row(p: R.PlaneTotals, study: Study, obj: DoseObject) -> PlaneTotal:
    return PlaneTotal(
        dose_object=obj, study=study, plane=p.plane,
        dap_total_gy_cm2=p.dap_total_gy_cm2, dose_rp_total_gy=p.dose_rp_total_gy,
        fluoro_dap_total_gy_cm2=p.fluoro_dap_total_gy_cm2, acquisition_dap_total_gy_cm2=p.acquisition_dap_total_gy_cm2,
        fluoro_dose_rp_total_gy=p.fluoro_dose_rp_total_gy, acquisition_dose_rp_total_gy=p.acquisition_dose_rp_total_gy,
        fluoro_time_total_s=p.fluoro_time_total_s, acquisition_time_total_s=p.acquisition_time_total_s,
        total_frames=p.total_frames, reference_point_definition=_s(p.reference_point_definition)[:256],
        reference_point_code=_s(p.reference_point_code)[:64], derived=p.derived,
    )


def _study_upsert(doc: R.DoseDocument, patient: Patient | None, device: Device | None, totals: dict,
                  refiled_from: DoseObject | None = None, identity: DeviceIdentity | None = None,
                  sharing: Sequence[_Sharing] = ()) -> Study:
    """The object's study, locked. A new study is inserted once, with ``totals`` (computed from this, its
    only report); an existing one is updated and its totals recomputed after the events are written.
    ``refiled_from``: the object being ingested; when no study has its Study Instance UID yet but the same report
    (SOP Instance UID) is counted under another study as its only report, it stays in that study (one procedure,
    not two)."""
    uid = doc.study_instance_uid or f"nostudy-{doc.sop_instance_uid}"
    # the row lock serialises concurrent ingests of one study (e.g. cumulative CT RDSRs); FOR NO KEY UPDATE, so
    # that rows referring to the study written by other transactions (its exposure facts, by a recompute) do not
    # wait for it
    study = Study.objects.select_for_update(no_key=True).filter(study_instance_uid=uid).first()
    rename_from = _refiled_study(refiled_from, doc, sharing) if study is None and refiled_from is not None else None
    if rename_from is not None:
        study = Study.objects.select_for_update(no_key=True).filter(pk=rename_from).first()
        if study is not None:  # the study keeps its UID (alerts and links refer to it); the new one is noted
            _flag(doc, f"re-filed: this report (same SOP Instance UID) was sent again under Study Instance UID {uid}; "
                       f"it stays with the study it was first filed under, {study.study_instance_uid} "
                       "(one procedure, counted once)")
    if study is None:
        study = Study(study_instance_uid=uid)
        _study_fields(study, doc, patient, device, identity)
        for field, value in totals.items():
            setattr(study, field, value)
        if insert_unless_conflict(study):  # one statement (no savepoint): ON CONFLICT DO NOTHING RETURNING id
            study.created_by_this_ingest = True  # a brand-new study has no other reports to look at
            return study
        # another worker created it meanwhile
        study = Study.objects.select_for_update(no_key=True).get(study_instance_uid=uid)
    if study.patient_id is not None and (patient is None or study.patient_id != patient.pk):
        _refuse_study_collision(study, doc, patient)
    study.former_patient_id = study.patient_id
    _study_fields(study, doc, patient, device, identity)
    study.save()
    study.created_by_this_ingest = False
    return study


class StudyUidCollision(Exception):
    """The Study Instance UID of a report already names another patient's study that holds other reports."""


def _refuse_study_collision(study: Study, doc: R.DoseDocument, patient: Patient | None) -> None:
    """A report of another patient under a Study Instance UID that is in use: a correction of one of the study's
    own reports (same SOP Instance UID) moves the study to the corrected patient; a different report would move
    the other patient's reports with it (two people joined under one procedure): refused, for review."""
    others = (DoseObject.objects.filter(study=study, status=DoseObject.STATUS_INGESTED, superseded_by__isnull=True)
              .exclude(sop_instance_uid=doc.sop_instance_uid))
    if others.exists():
        raise StudyUidCollision(
            f"Study Instance UID {study.study_instance_uid} is already the study of another patient (record "
            f"{study.patient_id}) with other reports; this report names "
            + (f"Patient ID {patient.patient_id!r}" if patient is not None else "no patient")
            + ": not filed under it (a UID collision or a placeholder UID would join two patients, or take the study "
            "from its patient) - review and reprocess")


def _study_fields(study: Study, doc: R.DoseDocument, patient: Patient | None, device: Device | None,
                  identity: DeviceIdentity | None = None) -> None:
    p = doc.patient
    study.patient = patient
    study.device = device or study.device
    study.received_identity = identity or study.received_identity
    study.study_datetime = _bounded(doc.study_datetime, doc, "Study Date/Time") or study.study_datetime
    study.accession_number = _s(doc.accession_number)[:64] or study.accession_number
    study.study_description = _s(doc.study_description or doc.procedure_description)[:256] or study.study_description
    modality = doc.procedure_modality or doc.modality or ""
    if modality == "SR":  # a report that names no procedure (Patient Radiation Dose SR): not a modality
        modality = ""
    if modality and (not study.procedure_modality or doc.source_kind in (R.RDSR, R.DOSE_SUMMARY)):
        study.procedure_modality = modality[:8]
    if p.pregnancy_status:
        study.pregnancy_status = p.pregnancy_status
    study.patient_weight_kg = p.weight_kg if p.weight_kg is not None else study.patient_weight_kg
    study.patient_size_m = p.size_m if p.size_m is not None else study.patient_size_m
    study.patient_age_years = p.age_years if p.age_years is not None else study.patient_age_years
    study.not_patient_reason = not_patient_reason(p.id, p.name)


def not_patient_reason(patient_id, patient_name) -> str:
    """The text that marks a phantom / QA / test exposure (NOT_PATIENT_PATTERN, case-insensitive, on the
    Patient ID and the Patient's Name with its component separators read as spaces), or "" for a patient."""
    pattern = _not_patient_re()
    if pattern is None:
        return ""
    for value in (patient_id, patient_name):
        text = re.sub(r"[\^=_]+", " ", _s(value))
        m = pattern.search(text)
        if m:
            return m.group(0)[:64]
    return ""


@functools.lru_cache(maxsize=4)
def _compile_not_patient(pattern: str):
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def _not_patient_re():
    return _compile_not_patient(getattr(settings, "NOT_PATIENT_PATTERN", ""))


def _get_or_create(model, defaults=None, **lookup):
    """get_or_create that survives a concurrent insert of the same key (``lookup``: the unique fields), without
    get_or_create's savepoint: a read, and for a new row one INSERT ... ON CONFLICT DO NOTHING."""
    obj = model.objects.filter(**lookup).first()
    if obj is not None:
        return obj, False
    obj = model(**lookup, **(defaults or {}))
    if insert_unless_conflict(obj):
        return obj, True
    return model.objects.get(**lookup), False


def study_recompute_totals(*, study_id: int) -> None:
    """Study totals from its active (not superseded) dose objects; planes are never added together."""
    active = DoseObject.objects.filter(study_id=study_id, status=DoseObject.STATUS_INGESTED, superseded_by__isnull=True)
    planes = list(PlaneTotal.objects.filter(dose_object__in=active).values_list("plane", "dap_total_gy_cm2", "dose_rp_total_gy", "fluoro_time_total_s"))
    ev = IrradiationEvent.objects.filter(study_id=study_id).aggregate(
        n=Count("id"), ctdi=Max("ctdivol_mgy"), dap=Sum("dap_gy_cm2"), dlp=Sum("dlp_mgy_cm")
    )
    dlp_reported = active.aggregate(d=Sum("dlp_total_mgy_cm"))["d"]
    flags: list[str] = []
    for object_flags in active.order_by("pk").values_list("flags", flat=True):
        flags.extend(f for f in object_flags or [] if f not in flags)
    Study.objects.filter(pk=study_id).update(
        **_totals(planes, ev, dlp_reported, has_mr=lambda: MRExam.objects.filter(study_id=study_id).exists()),
        flags=flags, updated_at=timezone.now(),
    )


def _totals(planes, ev: dict, dlp_reported: float | None, has_mr) -> dict:
    """The Study total columns from plane totals (plane, dap, Ka,r, fluoro time), the events' aggregate
    (n, ctdi max, dap sum, dlp sum) and the reported DLP total; ``has_mr()`` is asked only when needed."""
    per_plane: dict[str, dict[str, float | None]] = {}
    for plane, dap, rp, ft in planes:
        acc = per_plane.setdefault(plane, {"dap": None, "rp": None, "ft": None})
        for key, value in (("dap", dap), ("rp", rp), ("ft", ft)):
            if value is not None:
                acc[key] = (acc[key] or 0.0) + value
    event_count = ev["n"]
    dlp_total = dlp_reported if dlp_reported is not None else ev["dlp"]
    dap_vals = [v["dap"] for v in per_plane.values() if v["dap"] is not None]
    rp_vals = [v["rp"] for v in per_plane.values() if v["rp"] is not None]
    ft_vals = [v["ft"] for v in per_plane.values() if v["ft"] is not None]
    ionising = bool(event_count or dap_vals or rp_vals or dlp_total)
    return dict(
        dap_total_gy_cm2=sum(dap_vals) if dap_vals else ev["dap"],
        dose_rp_max_plane_gy=max(rp_vals) if rp_vals else None,
        fluoro_time_total_s=sum(ft_vals) if ft_vals else None,
        dlp_total_mgy_cm=dlp_total,
        ctdivol_max_mgy=ev["ctdi"],
        event_count=event_count,
        has_ionising_dose=ionising or not has_mr(),
    )


def _totals_from_document(doc: R.DoseDocument, event_rows: list[IrradiationEvent]) -> dict:
    """What ``study_recompute_totals`` computes for a study whose only report is ``doc`` (its events as written)."""
    by_uid = {row.irradiation_event_uid: row for row in event_rows}  # the upsert keeps one row per UID
    rows = list(by_uid.values())

    def agg(values, fn):
        values = [v for v in values if v is not None]
        return fn(values) if values else None
    ev = {"n": len(rows), "ctdi": agg((r.ctdivol_mgy for r in rows), max), "dap": agg((r.dap_gy_cm2 for r in rows), sum),
          "dlp": agg((r.dlp_mgy_cm for r in rows), sum)}
    planes = [(p.plane, p.dap_total_gy_cm2, p.dose_rp_total_gy, p.fluoro_time_total_s) for p in doc.planes]
    return dict(_totals(planes, ev, doc.dlp_total_mgy_cm, has_mr=lambda: doc.mr is not None), flags=list(doc.flags))


# ---------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------
def pseudonym(value: str) -> str:
    return hmac.new(settings.PSEUDONYM_SECRET.encode(), value.encode(), hashlib.sha256).hexdigest()


def _name_key(name: str | None) -> str:
    """A Person Name for comparison: the alphabetic group, case, spacing and empty trailing components ignored."""
    alphabetic = _s(name).split("=", 1)[0]
    parts = [" ".join(p.split()).upper() for p in alphabetic.split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def patient_resolve(info: R.PatientInfo, *, warnings: list[str], flags: list[str] | None = None) -> Patient | None:
    """Link by Patient ID + Issuer (whole: an over-length ID is refused before, see ``_refusal``); name, birth
    date and sex are checks, not keys. A different name under the same ID is flagged (``flags``), not merged silently."""
    pid = (info.id or "").strip()
    if not pid:
        warnings.append("no Patient ID: the study is not linked to a patient and has no cumulative exposure")
        return None
    issuer = (info.issuer or "").strip()
    if len(pid) > 128 or len(issuer) > 128:  # the columns' width: never match on a prefix
        raise ValueError("Patient ID or Issuer longer than 128 characters")
    pseudo = settings.PSEUDONYMISE_PATIENTS
    key_id = pseudonym(f"{issuer}|{pid}") if pseudo else pid
    birth = info.birth_date
    if pseudo and birth:
        birth = date(birth.year, 1, 1)
    patient, created = _get_or_create(
        Patient,
        issuer=issuer[:128],
        patient_id=key_id,
        defaults={
            "name": "" if pseudo else _s(info.name)[:256],
            "sex": _s(info.sex)[:4],
            "birth_date": birth,
            "pseudonymised": pseudo,
        },
    )
    if not created:
        if not pseudo and patient.name and info.name and _name_key(patient.name) != _name_key(info.name):
            msg = (f"patient identity check: Patient's Name differs from the registered patient with this Patient ID "
                   f"({info.name!r} sent, {patient.name!r} registered); linked by ID — verify it is the same person")
            warnings.append(msg)
            if flags is not None:
                flags.append(msg)
        if patient.birth_date and birth and patient.birth_date != birth:
            warnings.append("patient identity check: birth date differs from the registered patient")
        if patient.sex and info.sex and patient.sex != info.sex:
            warnings.append("patient identity check: sex differs from the registered patient")
        changed = False
        if not patient.birth_date and birth:
            patient.birth_date, changed = birth, True
        if not patient.sex and info.sex:
            patient.sex, changed = info.sex[:4], True
        if not pseudo and not patient.name and info.name:
            patient.name, changed = _s(info.name)[:256], True
        if changed:
            patient.save(update_fields=["birth_date", "sex", "name"])
    while patient.merged_into_id:
        patient = patient.merged_into
    return patient


# Device resolutions are remembered for a minute per worker: a 316-event report needs one device, not a lookup
# (last_seen is only written once a minute anyway). Keyed by the identity as received.
_DEVICE_CACHE: dict[tuple, tuple[float, Device, DeviceIdentity]] = {}
_DEVICE_CACHE_S = 60.0


def device_resolve(info: R.DeviceInfo, *, modality: str = "") -> Device | None:
    """The physical unit an object came from (see ``device_resolve_identity``)."""
    return device_resolve_identity(info, modality=modality)[0]


def _device_cache_hit(info: R.DeviceInfo) -> tuple[DI.ReceivedIdentity, tuple, tuple | None]:
    """The identity as received, its cache key, and this process's remembered (time, device, identity) for it
    when fresh (under a minute), else None."""
    import time as _time

    rid = DI.received(info.manufacturer, info.model, info.serial_number, info.station_name, info.device_observer_uid)
    key = (rid.key, _s(info.software_versions))
    hit = _DEVICE_CACHE.get(key) if rid.identifiers() else None
    return rid, key, hit if hit and _time.monotonic() - hit[0] < _DEVICE_CACHE_S else None


def device_cache_peek(info: R.DeviceInfo) -> int | None:
    """The device this process remembers for this identity as received (fresh, under a minute), else None: the
    ingest asks in its first statement whether it is still a device of its own (``device_resolve_identity``'s
    ``cached_alive``)."""
    hit = _device_cache_hit(info)[2]
    return hit[1].pk if hit else None


def device_resolve_identity(info: R.DeviceInfo, *, modality: str = "",
                            cached_alive: tuple[int, bool] | None = None) -> tuple[Device | None, DeviceIdentity | None]:
    """Find the physical unit by Device Observer UID, then serial number with manufacturer and model (both
    normalised: ``registry.device_identity``), and by station name only when nothing stronger decides (two
    units that share a station name are never merged on it); remember every identifier. Returns the device and
    the identity row of the values as received (kept on the study)."""
    import time as _time

    rid, key, hit = _device_cache_hit(info)
    idents = rid.identifiers()
    if not idents:
        return None, None
    # a device merged into another by a web user since (in another process) is not used: the caller asked already
    # (``cached_alive``: device id, still its own), else one primary-key probe
    if hit and (
            cached_alive[1] if cached_alive is not None and cached_alive[0] == hit[1].pk
            else Device.objects.filter(pk=hit[1].pk, merged_into__isnull=True).exists()):
        return hit[1], hit[2]
    device = _device_resolve_db(info, rid, idents, modality)
    identity = _identity_row(device, rid)

    def remember() -> None:  # only once committed: a rolled-back device must never be cached
        if len(_DEVICE_CACHE) > 1000:
            _DEVICE_CACHE.clear()
        _DEVICE_CACHE[key] = (_time.monotonic(), device, identity)

    transaction.on_commit(remember)
    return device, identity


def _identity_row(device: Device, rid: DI.ReceivedIdentity) -> DeviceIdentity:
    row = DeviceIdentity.objects.filter(key=rid.key).first()
    if row is None:
        DeviceIdentity.objects.bulk_create([DeviceIdentity(
            device=device, key=rid.key, manufacturer=rid.manufacturer, model=rid.model,
            serial_number=rid.serial_number, station_name=rid.station_name,
            device_observer_uid=rid.device_observer_uid)], ignore_conflicts=True)
        row = DeviceIdentity.objects.get(key=rid.key)
    return row


def _match(found: dict[tuple[str, str], int], idents: list[tuple[str, str]]) -> int | None:
    """The device the identifiers name: observer UID or serial first; a station only when the object carries
    no stronger identifier, or the device it names has none of the kinds the object carries (else a unit with
    the same station label but another serial or observer UID would be merged into it)."""
    by_kind = {k: found[(k, v)] for k, v in idents if (k, v) in found}
    uid_dev, serial_dev = by_kind.get(DI.KIND_OBSERVER_UID), by_kind.get(DI.KIND_SERIAL)
    if uid_dev is not None and serial_dev is not None and uid_dev != serial_dev:
        return serial_dev  # an observer UID copied between units: the serial with manufacturer and model decides
    carried = [k for k, _ in idents if k in DI.STRONG_KINDS]
    if uid_dev is not None and serial_dev is None and DI.KIND_SERIAL in carried and DeviceIdentifier.objects.filter(
            device_id=uid_dev, kind=DI.KIND_SERIAL).exists():
        return None  # the unit with this observer UID has another serial: the UID was copied, a different unit
    strong = uid_dev if uid_dev is not None else serial_dev
    if strong is not None:
        return strong
    station_dev = by_kind.get(DI.KIND_STATION)
    if station_dev is None:
        return None
    if carried and DeviceIdentifier.objects.filter(device_id=station_dev, kind__in=carried).exists():
        return None  # the unit with this station label has another serial / observer UID: a different unit
    return station_dev


def _device_resolve_db(info: R.DeviceInfo, rid: DI.ReceivedIdentity, idents: list[tuple[str, str]],
                       modality: str) -> Device:
    found = {
        (d.kind, d.value): d.device_id
        for d in DeviceIdentifier.objects.filter(value__in=[v for _, v in idents])
    }
    device_id = _match(found, idents)
    now = timezone.now()
    if device_id is not None:
        device = Device.objects.filter(pk=device_id).first()
        while device is not None and device.merged_into_id:  # identifiers follow a merge; be safe all the same
            device = Device.objects.filter(pk=device.merged_into_id).first()
    else:
        device = None
    if device is None:
        manu = DI.manufacturer_display(rid.manufacturer)[:128]
        device = Device.objects.create(
            manufacturer=manu, model=rid.model, serial_number=rid.serial_number,
            station_name=rid.station_name, device_observer_uid=rid.device_observer_uid,
            software_versions=_s(info.software_versions)[:256], institution=_s(info.institution_name)[:256],
            department=_s(info.department)[:256], modality=modality[:8], last_seen=now,
            display_name=" ".join(x for x in (rid.station_name, manu, rid.model) if x)[:256],
        )
        if info.software_versions:
            DeviceSoftwareVersion.objects.create(device=device, software_versions=info.software_versions[:256])
        return _add_identifiers(device, idents, found)
    observer_uid = (info.device_observer_uid or device.device_observer_uid)[:128]
    software = (info.software_versions or device.software_versions)[:256]
    stale = device.last_seen is None or now - device.last_seen > timedelta(minutes=1)
    if stale or observer_uid != device.device_observer_uid or software != device.software_versions:
        device.last_seen, device.device_observer_uid, device.software_versions = now, observer_uid, software
        device.save(update_fields=["last_seen", "device_observer_uid", "software_versions"])
        if info.software_versions:
            DeviceSoftwareVersion.objects.bulk_create(
                [DeviceSoftwareVersion(device=device, software_versions=software)], ignore_conflicts=True
            )
    return _add_identifiers(device, idents, found)


def _add_identifiers(device: Device, idents, found) -> Device:
    missing = [DeviceIdentifier(device=device, kind=k, value=v) for k, v in idents if (k, v) not in found]
    if missing:
        DeviceIdentifier.objects.bulk_create(missing, ignore_conflicts=True)
    return device


# ---------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------
def dose_objects_mark_for_reprocess(*, queryset=None) -> list[int]:
    """Set stored originals back to "received" (after a parser or configuration change); returns their ids.
    The caller ingests them: ``dosereg.pipeline.flow.objects_reprocess`` (inline, with the follow-up) or the queue."""
    qs = queryset if queryset is not None else DoseObject.objects.all()
    # in the order they were received (originals removed by retention cannot be re-read): a reprocess replays the
    # registry's history in one fixed order, so reports that replace or re-file one another end the same way
    # every time (the database's row order changes with every update)
    ids = list(qs.exclude(path="").order_by("pk").values_list("pk", flat=True))
    DoseObject.objects.filter(pk__in=ids).update(status=DoseObject.STATUS_RECEIVED, enqueued_at=timezone.now(), deliveries=0)
    return ids


def dose_objects_reprocess(*, queryset=None) -> int:
    """Re-extract stored originals through the ingest task (queued; each is followed by the pipeline's steps)."""
    ids = dose_objects_mark_for_reprocess(queryset=queryset)
    for pk in ids:
        enqueue_ingest(pk)
    return len(ids)


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
