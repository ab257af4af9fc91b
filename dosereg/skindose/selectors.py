"""Reading skin-dose results (for the pipeline, the web and the API)."""
from __future__ import annotations

from dosereg.registry.models import IrradiationEvent

from .models import StudySkinDose


FLUORO_GUIDED = ("RF", "XA")


def studies_with_kar(study_ids) -> list[int]:
    """The fluoroscopically guided studies among these (RF/XA procedures) with a reference air kerma: one query.
    Radiography (DX) and CT have no skin-dose estimate."""
    ids = list(study_ids)
    if not ids:
        return []
    return sorted(set(IrradiationEvent.objects.filter(
        study_id__in=ids, dose_rp_gy__isnull=False, study__procedure_modality__in=FLUORO_GUIDED,
    ).values_list("study_id", flat=True)))


def study_skin_dose(study_id: int) -> StudySkinDose | None:
    """The study's result without the PNG bytes and the map cells (loaded by their own views)."""
    return StudySkinDose.objects.filter(study_id=study_id).defer("map_png", "map_cells").first()


def study_skin_map_png(study_id: int) -> bytes | None:
    row = StudySkinDose.objects.filter(study_id=study_id).values_list("map_png", flat=True).first()
    return bytes(row) if row else None


def study_skin_map_cells(study_id: int) -> dict | None:
    return StudySkinDose.objects.filter(study_id=study_id).values_list("map_cells", flat=True).first()


def study_skin_dose_summary(study_id: int) -> dict | None:
    """The study's skin-dose result for the API: the estimate with its method, uncertainty and labels, or why it
    could not be computed and the labelled Ka,r-based estimate. None: no result (not fluoroscopically guided)."""
    row = study_skin_dose(study_id)
    if row is None:
        return None
    out = {
        "computable": row.computable, "psd_gy": row.psd_gy,
        "psd_location": (row.psd_location or {}).get("description") if row.computable else None,
        "phantom": row.phantom or None, "method": row.method or None, "uncertainty": row.uncertainty or None,
        "events_used": len(row.events_used or []), "events_not_used": len(row.events_skipped or []),
        "not_computable_reason": row.not_computable_reason or None, "kar_total_gy": row.kar_total_gy,
        "kar_total_label": ("sum of the reference-point air kerma of all events: an upper-bound surrogate, "
                            "not a skin dose"),
        "computed_at": row.computed_at.isoformat() if row.computed_at else None,
    }
    return out
