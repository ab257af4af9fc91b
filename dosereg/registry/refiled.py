"""Re-filed reports: the active reports (any study) that are the report being ingested (same SOP Instance UID) or
hold its Irradiation Event UIDs, read once per ingest, and what the ingest does with them (one procedure is
counted once)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from django.db import connection
from django.db.models import Q

from dosereg.rdsr import records as R

from .models import DoseObject, IrradiationEvent, MRExam, Participant, PlaneTotal, Study
from .totals import study_recompute_totals
from .values import _flag


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
