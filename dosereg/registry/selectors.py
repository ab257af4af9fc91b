"""Read-side queries for the registry."""
from __future__ import annotations

from django.db.models import Count, Q

from .models import Device, DoseObject, IrradiationEvent, Patient, Study


def registry_stats() -> dict[str, int]:
    objs = DoseObject.objects.aggregate(
        received=Count("id"),
        ingested=Count("id", filter=Q(status=DoseObject.STATUS_INGESTED)),
        quarantined=Count("id", filter=Q(status=DoseObject.STATUS_QUARANTINED)),
        not_dose=Count("id", filter=Q(status=DoseObject.STATUS_NOT_DOSE)),
    )
    return {
        "objects_received": objs["received"],
        "objects_ingested": objs["ingested"],
        "objects_quarantined": objs["quarantined"],
        "objects_not_dose": objs["not_dose"],
        "patients": Patient.objects.filter(merged_into__isnull=True).count(),
        "studies": Study.objects.count(),
        "irradiation_events": IrradiationEvent.objects.count(),
        "devices": Device.objects.count(),
    }


def study_breast_agd(study_id: int) -> dict[str, dict]:
    """Cumulative average glandular dose per breast of one study (mammography), in mGy, by laterality
    ("L", "R", "B" for an exposure of both breasts): the sum of its events' AGD (each exposure counted once:
    events are unique per study by their Irradiation Event UID / exposure key); for a breast whose events carry
    no AGD, the Accumulated AGD (111637) its active reports state."""
    from django.db.models import Sum

    from .models import BreastDose

    out: dict[str, dict] = {}
    rows = list(IrradiationEvent.objects.filter(study_id=study_id, agd_mgy__isnull=False).exclude(laterality="")
                .values("laterality", "dose_object__source_kind").annotate(agd=Sum("agd_mgy"), n=Count("id")))
    # a unit that sends both an RDSR and images whose headers do not carry the RDSR's Irradiation Event UID: the
    # same exposures twice under different keys. The RDSR's events win; image headers count only without one.
    if any(r["dose_object__source_kind"] == "rdsr" for r in rows):
        rows = [r for r in rows if r["dose_object__source_kind"] == "rdsr"]
    for row in rows:
        acc = out.setdefault(row["laterality"], {"agd_mgy": 0.0, "events": 0, "source": "events"})
        acc["agd_mgy"] += row["agd"]
        acc["events"] += row["n"]
    reported_rows = (BreastDose.objects.filter(study_id=study_id, accumulated_agd_mgy__isnull=False,
                                          dose_object__status=DoseObject.STATUS_INGESTED,
                                          dose_object__superseded_by__isnull=True)
                .values("laterality").annotate(agd=Sum("accumulated_agd_mgy")))
    for reported in reported_rows:
        out.setdefault(reported["laterality"], {"agd_mgy": reported["agd"], "events": 0, "source": "reported"})
    return dict(sorted(out.items()))


def study_nm_administrations(study_id: int, *, age_years: float | None | bool = False) -> list[dict]:
    """The study's radiopharmaceutical administrations (NM/PET part; never added to its CT part), each with its
    population-average effective-dose estimate from the versioned coefficient table (setting
    NM_EFFECTIVE_DOSE_COEFFICIENTS) or the reason there is none."""
    from django.conf import settings

    from dosereg.rdsr import nm
    from dosereg.rdsr.records import RadiopharmaceuticalAdministration as Adm

    from .models import RadiopharmaceuticalAdministration

    table = settings.NM_EFFECTIVE_DOSE_COEFFICIENTS
    age = (Study.objects.filter(pk=study_id).values_list("patient_age_years", flat=True).first()
           if age_years is False else age_years)  # the caller may pass the study's age (one query less)
    out = []
    rows = list(RadiopharmaceuticalAdministration.objects.filter(study_id=study_id).select_related("dose_object")
                .order_by("start_datetime", "pk"))
    # an RRDSR's administrations win over those read from NM/PET image headers (the same ones, other keys)
    if any(a.dose_object.source_kind == "rrdsr" for a in rows):
        rows = [a for a in rows if a.dose_object.source_kind == "rrdsr"]
    for a in rows:
        e_msv, detail = nm.effective_dose(
            Adm(radiopharmaceutical_code=a.radiopharmaceutical_code or None,
                administered_activity_mbq=a.administered_activity_mbq), table, age)
        out.append({
            "radiopharmaceutical": a.radiopharmaceutical, "radiopharmaceutical_code": a.radiopharmaceutical_code,
            "radionuclide": a.radionuclide, "radionuclide_code": a.radionuclide_code,
            "administered_activity_mbq": a.administered_activity_mbq, "start_datetime": a.start_datetime,
            "route": a.route, "patient_weight_kg": a.patient_weight_kg, "patient_size_m": a.patient_size_m,
            "effective_dose_msv": e_msv, "effective_dose_detail": detail, "source": a.dose_object.source_kind,
        })
    return out
