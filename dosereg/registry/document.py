"""The write of one parsed document inside the ingest's transaction: device, patient and study, events, plane
totals, participants and MR / mammography / NM rows; replaced, cumulative and re-filed reports are superseded,
never counted twice."""
from __future__ import annotations

from django.utils import timezone

from dosereg.rdsr import records as R

from . import mammo_nm
from .device_resolution import device_resolve_identity
from .models import DoseObject, IrradiationEvent, MRExam, Participant, PlaneTotal, Study
from .patients import patient_resolve
from .refiled import _refiled_elsewhere, _reports_sharing
from .rows import _event_row, _plane_row
from .studies import _study_upsert
from .totals import _totals_from_document, study_recompute_totals
from .values import _flag, _s


def _one_event_per_uid(events: list[R.IrradiationEvent], doc: R.DoseDocument) -> list[R.IrradiationEvent]:
    """The report's events with one event per Irradiation Event UID (a study keeps one row per UID). A repeated
    UID (a vendor or middleware defect) is flagged: an exact repeat of an event is counted once; an event with
    other values under a UID already used is kept as its own event, keyed ``<uid>#<n>`` (the same key every time
    the report is read, so a re-sent copy is still recognised)."""
    seen: dict[str, R.IrradiationEvent] = {}
    out: list[R.IrradiationEvent] = []
    for ev in events:
        uid = ev.irradiation_event_uid
        if not uid:
            out.append(ev)
            continue
        first = seen.get(uid)
        if first is None:
            seen[uid] = ev
            out.append(ev)
            continue
        if ev == first:
            _flag(doc, f"Irradiation Event UID {uid} repeated in this report with the same values: counted once")
            continue
        n = 2
        while f"{uid}#{n}" in seen:
            n += 1
        key = f"{uid}#{n}"
        _flag(doc, f"Irradiation Event UID {uid} repeated in this report with other values: kept as separate "
                   f"events ({key})")
        ev.irradiation_event_uid = key
        seen[key] = ev
        out.append(ev)
    return out


# an event merged by Irradiation Event UID into a study's existing row takes every value of the new report
_EVENT_UPDATE_FIELDS = [f.name for f in IrradiationEvent._meta.concrete_fields
                        if f.name not in ("id", "study", "irradiation_event_uid")]


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
    events = _one_event_per_uid(events, doc)
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
        if study.created_by_this_ingest:  # a study inserted by this transaction has no events to merge with
            IrradiationEvent.objects.bulk_create(rows, batch_size=500)
        else:
            IrradiationEvent.objects.bulk_create(rows, batch_size=500, update_conflicts=True,
                                                 unique_fields=["study", "irradiation_event_uid"],
                                                 update_fields=_EVENT_UPDATE_FIELDS)
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
