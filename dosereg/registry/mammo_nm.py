"""Registry writes for mammography and NM/PET (issue 16), called from ``document._write_document`` inside its
transaction: the per-breast accumulated AGD and radiopharmaceutical administrations of a report, and the merge of
the For Presentation / For Processing copies of one exposure into one event."""
from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from dosereg.rdsr import records as R

from .models import BreastDose, DoseObject, IrradiationEvent, RadiopharmaceuticalAdministration, Study

# a report's child records (deleted and rewritten on a re-ingest, like events and plane totals)
CHILD_MODELS = (BreastDose, RadiopharmaceuticalAdministration)


def _s(value) -> str:
    return "" if value is None else str(value)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_default_timezone())
    return value


_MERGE_FIELDS = ("dap_gy_cm2", "entrance_exposure_at_rp_mgy", "agd_mgy", "compression_thickness_mm", "compression_force_n",
                 "kvp", "tube_current_ma", "exposure_time_ms", "exposure_mas", "exposure_index", "deviation_index",
                 "target_exposure_index", "distance_source_to_detector_mm")


def same_exposure(doc: R.DoseDocument, study: Study, obj: DoseObject, event_rows: list[IrradiationEvent],
                   other_ids: list[int]) -> None:
    """An image of an exposure already recorded from another image (its For Presentation / For Processing copy):
    one event. The row keeps what either copy reported (a value only one copy carries is not lost)."""
    uids = [r.irradiation_event_uid for r in event_rows]
    existing = {e.irradiation_event_uid: e for e in IrradiationEvent.objects.filter(study=study, irradiation_event_uid__in=uids)}
    for row in event_rows:
        old = existing.get(row.irradiation_event_uid)
        if old is None:
            continue
        for name in _MERGE_FIELDS:
            if getattr(row, name) is None and getattr(old, name) is not None:
                setattr(row, name, getattr(old, name))
        kept = old.extra.get("image_sop_instance_uids") or [old.extra.get("image_sop_instance_uid")]
        row.extra["image_sop_instance_uids"] = sorted({u for u in [*kept, obj.sop_instance_uid] if u})
    sops = list(DoseObject.objects.filter(pk__in=other_ids).values_list("sop_instance_uid", flat=True))
    intents = sorted({r.presentation_intent for r in event_rows if r.presentation_intent})
    doc.warnings.append(f"same exposure as object(s) {', '.join(sops)} ({' / '.join(intents) or 'another copy'}); "
                        "counted once")


def write_breasts_and_administrations(doc: R.DoseDocument, study: Study, obj: DoseObject) -> None:
    """Mammography accumulated AGD per breast (as reported) and radiopharmaceutical administrations."""
    if doc.breasts:
        BreastDose.objects.bulk_create([
            BreastDose(study=study, dose_object=obj, laterality=b.laterality[:1], accumulated_agd_mgy=b.accumulated_agd_mgy)
            for b in doc.breasts])
    if doc.radiopharmaceuticals:
        p = doc.patient
        # idempotent on the Administration Event UID: a later report of the same administration replaces it
        uids = [a.event_uid for a in doc.radiopharmaceuticals if a.event_uid]
        if uids:
            RadiopharmaceuticalAdministration.objects.filter(study=study, event_uid__in=uids).exclude(dose_object=obj).delete()
        RadiopharmaceuticalAdministration.objects.bulk_create([
            RadiopharmaceuticalAdministration(
                study=study, dose_object=obj, event_uid=_s(a.event_uid)[:128],
                radiopharmaceutical=_s(a.radiopharmaceutical)[:256], radiopharmaceutical_code=_s(a.radiopharmaceutical_code)[:64],
                radionuclide=_s(a.radionuclide)[:128], radionuclide_code=_s(a.radionuclide_code)[:64],
                radionuclide_half_life_s=a.radionuclide_half_life_s, administered_activity_mbq=a.administered_activity_mbq,
                pre_administration_activity_mbq=a.pre_administration_activity_mbq,
                post_administration_activity_mbq=a.post_administration_activity_mbq,
                start_datetime=_aware(a.start_datetime), stop_datetime=_aware(a.stop_datetime),
                route=_s(a.route)[:128], route_code=_s(a.route_code)[:64], volume_ml=a.volume_ml,
                patient_weight_kg=p.weight_kg, patient_size_m=p.size_m, comment=_s(a.comment))
            for a in doc.radiopharmaceuticals])
