"""Reading skin-dose results (for the pipeline, the web and the API)."""
from __future__ import annotations

from datetime import timedelta

from dosereg.registry.models import IrradiationEvent

from . import summing
from .models import StudySkinDose


FLUORO_GUIDED = ("RF", "XA")


def studies_with_kar(study_ids, known=()) -> list[int]:
    """The fluoroscopically guided studies among these (RF/XA procedures) with a reference air kerma: one query,
    none when ``known`` tells all of them ((study, procedure modality, an event with Ka,r), as an ingest that
    created the study knows it). Radiography (DX) and CT have no skin-dose estimate."""
    wanted = set(study_ids)
    told = {sid: modality in FLUORO_GUIDED and has_kar for sid, modality, has_kar in known}
    ids = [sid for sid in wanted if sid not in told]
    found = {sid for sid, yes in told.items() if yes and sid in wanted}
    if ids:
        found.update(IrradiationEvent.objects.filter(
            study_id__in=ids, dose_rp_gy__isnull=False, study__procedure_modality__in=FLUORO_GUIDED,
        ).values_list("study_id", flat=True))
    return sorted(found)


def studies_psd(study_ids) -> dict[int, float | None]:
    """The stored PSD of each of these studies that has a result (None: not computable): one query."""
    return dict(StudySkinDose.objects.filter(study_id__in=list(study_ids)).values_list("study_id", "psd_gy"))


def study_skin_dose(study_id: int) -> StudySkinDose | None:
    """The study's result without the PNG bytes and the map cells (loaded by their own views)."""
    return StudySkinDose.objects.filter(study_id=study_id).defer("map_png", "map_cells").first()


def study_skin_map_png(study_id: int) -> bytes | None:
    row = StudySkinDose.objects.filter(study_id=study_id).values_list("map_png", flat=True).first()
    return bytes(row) if row else None


def study_skin_map_cells(study_id: int) -> dict | None:
    return StudySkinDose.objects.filter(study_id=study_id).values_list("map_cells", flat=True).first()


def _summary(row: StudySkinDose) -> dict:
    return {
        "computable": row.computable, "psd_gy": row.psd_gy,
        "psd_location": (row.psd_location or {}).get("description") if row.computable else None,
        "phantom": row.phantom or None, "method": row.method or None, "uncertainty": row.uncertainty or None,
        "events_used": len(row.events_used or []), "events_not_used": len(row.events_skipped or []),
        "not_computable_reason": row.not_computable_reason or None, "kar_total_gy": row.kar_total_gy,
        "kar_total_label": ("sum of the reference-point air kerma of all events: an upper-bound surrogate, "
                            "not a skin dose"),
        "computed_at": row.computed_at.isoformat() if row.computed_at else None,
    }


def study_skin_dose_summary(study_id: int) -> dict | None:
    """The study's skin-dose result for the API: the estimate with its method, uncertainty and labels, or why it
    could not be computed and the labelled Ka,r-based estimate. None: no result (not fluoroscopically guided)."""
    row = study_skin_dose(study_id)
    return _summary(row) if row is not None else None


def studies_skin_dose_summaries(study_ids) -> dict[int, dict]:
    """``study_skin_dose_summary`` of several studies in one query (FHIR search pages)."""
    rows = StudySkinDose.objects.filter(study_id__in=list(study_ids)).defer("map_png", "map_cells")
    return {row.study_id: _summary(row) for row in rows}


# ---------------------------------------------------------------------------
# a patient's procedures and their skin dose over a period (summed maps where the geometry allows)
# ---------------------------------------------------------------------------
SUM_WINDOWS_DAYS = (60, 365)  # repeat procedures on the same skin (about 60 days, NCRP 168/SIR ◐); 6–12 months (TJC ◐)


def procedures_skin_dose(study_ids=None, *, patient_ids=None,
                         with_cells: bool = True) -> list[summing.ProcedureSkinDose]:
    """The stored skin-dose results of these studies, or of these patients' studies (one query; the map cells only
    when asked)."""
    qs = StudySkinDose.objects.all()
    if study_ids is not None:
        qs = qs.filter(study_id__in=list(study_ids))
    if patient_ids is not None:
        qs = qs.filter(study__patient_id__in=list(patient_ids))
    if study_ids is None and patient_ids is None:
        return []
    fields = ["study_id", "study__study_datetime", "psd_gy", "computable", "phantom", "patient_orientation",
              "kar_total_gy", "psd_location"] + (["map_cells"] if with_cells else [])
    out = []
    for row in qs.order_by("study__study_datetime", "study_id").values(*fields):
        out.append(summing.ProcedureSkinDose(
            study_id=row["study_id"], at=row["study__study_datetime"],
            psd_gy=row["psd_gy"] if row["computable"] else None, phantom=row["phantom"],
            orientation=row["patient_orientation"], cells=row.get("map_cells"), kar_total_gy=row["kar_total_gy"],
            location=str((row["psd_location"] or {}).get("description") or "") if row["computable"] else ""))
    return out


def studies_skin_dose_sum(study_ids, *, window_days: int = 0, start=None, end=None) -> summing.SkinDoseSum:
    """These procedures' skin dose together: summed maps, or the conservative sum of their PSDs (labelled)."""
    return summing.sum_procedures(procedures_skin_dose(study_ids), window_days=window_days, start=start, end=end)


def patient_skin_dose_history(patient_ids, *, with_cells: bool = False) -> dict:
    """For the patient history: each fluoroscopically guided procedure's PSD (or why not), the cumulative
    conservative sum over all of them, and per period (60 days, 12 months) the worst period's summed skin dose.
    One query, two when maps are added, whatever the number of procedures; the map cells are read only for the procedures that
    share a period with another procedure that has a PSD (the only maps that are ever added)."""
    procs = procedures_skin_dose(patient_ids=list(patient_ids), with_cells=False)
    span = timedelta(days=max(SUM_WINDOWS_DAYS))
    dated = [p for p in procs if p.at is not None and p.psd_gy is not None]
    paired = {p.study_id for p in dated for q in dated if q is not p and abs(p.at - q.at) <= span}  # type: ignore[operator]
    if paired:
        cells = dict(StudySkinDose.objects.filter(study_id__in=paired).values_list("study_id", "map_cells"))
        for p in procs:
            p.cells = cells.get(p.study_id)
    psds = [p.psd_gy for p in procs if p.psd_gy is not None]
    periods: list[summing.SkinDoseSum] = []
    for days in SUM_WINDOWS_DAYS:
        w = summing.worst_window(procs, days, with_cells=with_cells)
        if w is not None:
            w.same_as_days = next((p.window_days for p in periods if p.study_ids == w.study_ids), None)
            periods.append(w)
    return {
        "procedures": {p.study_id: p for p in procs},
        "cumulative_psd_sum_gy": round(sum(psds), 6) if psds else None,
        "cumulative_count": len(psds),
        "cumulative_label": summing.PSD_SUM_LABEL,
        "not_computable": [p.study_id for p in procs if p.psd_gy is None],
        "periods": periods,
    }
