"""The one home of effective dose: the factor table and E = k × DLP / E = c × KAP.

The factors are the ``EffectiveDoseFactor`` rows (seeded once from ``seed.DEFAULT_FACTORS``, dose-standards.md
§7; editable in the admin): ICRP 103 adult CT k-factors (Deak et al. 2010), AAPM Report 96 (adult fallback
and paediatric brackets), and the interventional-cardiology E/KAP coefficient. No other module holds a
factor. An estimate is a population average (``EFFECTIVE_DOSE_LABEL``), never an individual's risk.
"""
from __future__ import annotations

from . import conf, regions as RG
from .constants import EFFECTIVE_DOSE_LABEL
from .models import EffectiveDoseFactor

FactorTable = dict[tuple[str, str, str, str], EffectiveDoseFactor]


def factor_table() -> FactorTable:
    """The active factors by (factor set, kind, region, age bracket) (1 query)."""
    return {(f.factor_set, f.kind, f.region, f.age_bracket): f for f in EffectiveDoseFactor.objects.filter(active=True)}


def factor_json(f: EffectiveDoseFactor) -> dict:
    return {"factor_set": f.factor_set, "kind": f.kind, "region": f.region, "age_bracket": f.age_bracket,
            "value": f.value, "unit": f.unit, "source": f.source, "verification": f.verification}


def ct_factor(factors: FactorTable, region: str, age: float | None) -> EffectiveDoseFactor | None:
    """The CT k-factor (mSv per mGy·cm) for a k-factor region and patient age, or None (no verified factor)."""
    bracket = RG.paediatric_bracket(age)
    if bracket in ("", "adult"):
        return factors.get((conf.ct_factor_set(), EffectiveDoseFactor.KIND_CT_DLP, region, "adult")) or factors.get(
            ("AAPM96", EffectiveDoseFactor.KIND_CT_DLP, region, "adult"))
    paed_region = {"head": "head", "chest": "chest", "abdomen": "abdomen_pelvis", "pelvis": "abdomen_pelvis",
                   "trunk": "abdomen_pelvis"}.get(region, "")
    return factors.get(("AAPM96", EffectiveDoseFactor.KIND_CT_DLP, paed_region, bracket))


def study_effective_dose(factors: FactorTable, *, ct_events: list[tuple[set[str], float]], has_events: bool,
                         study_regions: set[str], all_regions: set[str], age_years: float | None,
                         dlp_total_mgy_cm: float | None, kap_total_gy_cm2: float | None) -> tuple[float | None, dict]:
    """(E in mSv or None, detail) for one study.

    ``ct_events``: (regions, DLP mGy·cm) of each CT event that reported a DLP. Per event E = k(region, age) × DLP;
    without events, k × the study DLP; for interventional cardiology, c × KAP. ``detail["partial"]`` when some
    events had no factor (their share is missing from E)."""
    detail: dict = {"label": EFFECTIVE_DOSE_LABEL}
    e_total, used, missing = 0.0, {}, 0
    for regions, dlp in ct_events:
        f = ct_factor(factors, RG.ct_k_region(regions), age_years)
        if f is None:
            missing += 1
        else:
            e_total += f.value * dlp
            used[f.pk] = f
    e_msv = None
    if used:
        e_msv = round(e_total, 6)
        detail.update(method="E = k × DLP per CT event", factors=[factor_json(f) for f in used.values()],
                      events_without_factor=missing, partial=bool(missing))
    elif dlp_total_mgy_cm is not None and not has_events:
        f = ct_factor(factors, RG.ct_k_region(study_regions), age_years)
        if f is not None:
            e_msv = round(f.value * dlp_total_mgy_cm, 6)
            detail.update(method="E = k × study DLP", factors=[factor_json(f)], partial=False)
    elif kap_total_gy_cm2 is not None and "cardiac" in all_regions:
        f = factors.get(("Vano-ICRP103", EffectiveDoseFactor.KIND_PROJECTION_KAP, "cardiac", "adult"))
        if f is not None:
            e_msv = round(f.value * kap_total_gy_cm2, 6)
            detail.update(method="E = c × KAP (interventional cardiology)", factors=[factor_json(f)], partial=False)
    if e_msv is None:
        detail["reason"] = ("no verified conversion factor for this region/modality"
                            if (kap_total_gy_cm2 or dlp_total_mgy_cm) else "no KAP or DLP reported")
    return e_msv, detail
