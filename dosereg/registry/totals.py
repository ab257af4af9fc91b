"""Study totals (DAP, Ka,r per plane, fluoroscopy time, DLP, CTDIvol, event count) from the study's active
reports, or from a new study's only report as it is written."""
from __future__ import annotations

from django.db.models import Count, Max, Sum
from django.utils import timezone

from dosereg.rdsr import records as R

from .models import DoseObject, IrradiationEvent, MRExam, PlaneTotal, Study


def study_recompute_totals(*, study_id: int) -> None:
    """Study totals from its active (not superseded) dose objects; planes are never added together."""
    active = DoseObject.objects.filter(study_id=study_id, status=DoseObject.STATUS_INGESTED, superseded_by__isnull=True)
    planes = list(PlaneTotal.objects.filter(dose_object__in=active).values_list("plane", "dap_total_gy_cm2", "dose_rp_total_gy", "fluoro_time_total_s"))
    ev = IrradiationEvent.objects.filter(study_id=study_id).aggregate(
        n=Count("id"), ctdi=Max("ctdivol_mgy"), dap=Sum("dap_gy_cm2"), dlp=Sum("dlp_mgy_cm")
    )
    ev["protocols"] = (IrradiationEvent.objects.filter(study_id=study_id).exclude(protocol="")
                       .values_list("protocol", flat=True).distinct())
    dlp_reported = active.aggregate(d=Sum("dlp_total_mgy_cm"))["d"]
    flags: list[str] = []
    for object_flags in active.order_by("pk").values_list("flags", flat=True):
        flags.extend(f for f in object_flags or [] if f not in flags)
    Study.objects.filter(pk=study_id).update(
        **_totals(planes, ev, dlp_reported, has_mr=lambda: MRExam.objects.filter(study_id=study_id).exists()),
        flags=flags, updated_at=timezone.now(),
    )


def protocol_names(names) -> str:
    """``Study.protocol_names``: the distinct non-blank protocol names, sorted, one per line."""
    return "\n".join(sorted({n for n in names if n}))


def _totals(planes, ev: dict, dlp_reported: float | None, has_mr) -> dict:
    """The Study total columns from plane totals (plane, dap, Ka,r, fluoro time), the events' aggregate
    (n, ctdi max, dap sum, dlp sum, protocol names) and the reported DLP total; ``has_mr()`` is asked only when
    needed."""
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
        protocol_names=protocol_names(ev["protocols"]),
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
          "dlp": agg((r.dlp_mgy_cm for r in rows), sum), "protocols": [r.protocol for r in rows]}
    planes = [(p.plane, p.dap_total_gy_cm2, p.dose_rp_total_gy, p.fluoro_time_total_s) for p in doc.planes]
    return dict(_totals(planes, ev, doc.dlp_total_mgy_cm, has_mr=lambda: doc.mr is not None), flags=list(doc.flags))
