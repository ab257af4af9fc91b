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
