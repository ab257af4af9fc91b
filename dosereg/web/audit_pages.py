"""Protocol audit reads for the pages (issue 17 item 2): the audit table with its drill-down links, the
overview per quantity (every room on one axis with the DRL), a group's histograms and outliers.

Every number shown links to exactly the studies behind it: the study browser (``browse``) with the filters
of the group (modality, device, period in whole days, standard name or the exact vendor description, ionising
dose, patients only) and, for a quantity, "reports this quantity". ``group_detail`` reads its studies through
the same ``browse.filtered_studies``, so the histogram, the outlier list and the browser agree by construction.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.utils import timezone

from dosereg.access.scope import EVERY_SITE, SiteScope
from dosereg.protocols import age_bands
from dosereg.protocols.histogram import exact_quantiles
from dosereg.protocols.models import DRLValue

from . import browse

# audit quantity (study field) -> the study browser's parameter stem
STEM = {field: stem for stem, (field, _, _) in browse.DOSE_RANGES.items()}


def period_days(since: datetime, until: datetime) -> tuple[str, str]:
    """The audit period [since, until) as the browser's inclusive days (both are local midnights)."""
    tz = timezone.get_current_timezone()
    return since.astimezone(tz).date().isoformat(), (until.astimezone(tz) - timedelta(microseconds=1)).date().isoformat()


def group_filters(*, since: datetime, until: datetime, modality: str, device_id: int | None, std_id: int | None,
                  description: str, family: str = "", age_band: str = "") -> dict[str, str]:
    """The study-browser query of one audit group (device x standard name, or x vendor description if unmapped;
    an age-band family: the studies mapped to any of its names whose patient's age is in the band)."""
    first, last = period_days(since, until)
    q = {"modality": modality, "device": str(device_id or 0), "since": first, "until": last, "ionising": "1",
         "not_patient": "exclude"}
    if family:
        q["family"], q["age"] = family, age_band
    elif std_id:
        q["standard"] = str(std_id)
    else:
        q["standard"], q["description"] = "0", description
    return q


def quantity_filters(group: dict[str, str], field: str) -> dict[str, str]:
    return {**group, "reported": STEM[field]}


def qs(params: dict[str, str]) -> str:
    return urlencode(params)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^k at or above ``value`` (a round axis end, so its quarters and fifths
    are round too)."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    k = math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10 ** k >= value * (1 - 1e-12):
            return m * 10 ** k
    return 10 ** (k + 1)


# ---------------------------------------------------------------------------
# the overview: per quantity and standard name, every room's median on one axis with the DRLs
# ---------------------------------------------------------------------------
def _overview_groups(rows: list[dict], key: str) -> dict[int, list[tuple[dict, dict]]]:
    """{standard name id: [(row, quantity)]}: the rooms of one quantity's charts (mapped names with a median)."""
    by_std: dict[int, list[tuple[dict, dict]]] = {}
    for r in rows:
        if r["standard_name"] is None or r.get("age_unknown"):  # age unknown: no band, no DRL to draw
            continue
        for q in r["quantities"]:
            if q["key"] == key and q["median"] is not None:
                by_std.setdefault(r["standard_name"].pk, []).append((r, q))
    return by_std


def overview_count(rows: list[dict], quantities: list[tuple[str, str, str]]) -> int:
    """How many charts :func:`overview` draws for these rows (the audit page's link to them says so)."""
    return sum(len(_overview_groups(rows, key)) for key, _, _ in quantities)


def overview(rows: list[dict], quantities: list[tuple[str, str, str]]) -> list[dict]:
    """Charts of the audit rows: one per (quantity, standard name) with every room (device) on one value axis.
    Geometry in SVG user units (the template draws it); each bar links to its studies."""
    charts = []
    for key, label, unit in quantities:
        by_std = _overview_groups(rows, key)
        for pairs in sorted(by_std.values(), key=lambda p: p[0][0]["standard_name"].name):
            std = pairs[0][0]["standard_name"]
            drls = [c["drl"] for c in pairs[0][1]["drls"]]
            top = nice_ceiling(max([q["q3"] or q["median"] for _, q in pairs] + [d.value for d in drls]) * 1.05)
            width, left, bar_h, gap = 720, 250, 18, 10
            plot_w = width - left - 20
            bars = []
            for i, (r, q) in enumerate(sorted(pairs, key=lambda p: p[0]["device"])):
                y = 20 + i * (bar_h + gap)
                bars.append({
                    "device": r["device"], "n": q["n"], "median": q["median"], "q1": q["q1"], "q3": q["q3"],
                    "y": y, "ty": y + bar_h - 4, "h": bar_h, "w": round(plot_w * q["median"] / top, 1),
                    "q1x": round(left + plot_w * (q["q1"] or q["median"]) / top, 1),
                    "q3x": round(left + plot_w * (q["q3"] or q["median"]) / top, 1), "cy": y + bar_h / 2,
                    "above": any(q["median"] > d.value for d in drls), "query": q["query"],
                })
            height = 20 + len(bars) * (bar_h + gap) + 44
            axis_y = height - 40
            ticks = [{"x": round(left + plot_w * t / 4, 1), "value": top * t / 4} for t in range(5)]
            charts.append({
                "key": key, "label": label, "unit": unit, "standard_name": std, "bars": bars, "width": width,
                "height": height, "left": left, "axis_y": axis_y, "ticks": ticks, "right": left + plot_w,
                "drls": [{"x": round(left + plot_w * d.value / top, 1), "value": d.value, "set": d.drl_set.name}
                         for d in drls],
            })
    return charts


# ---------------------------------------------------------------------------
# one group: histograms (axis titles, DRL line, bars drilling down) and outliers
# ---------------------------------------------------------------------------
def _decimal(v: float, up: bool) -> str:
    """A bound the browser accepts (at most 15 decimals), rounded outward so the value itself is inside."""
    scale = 10 ** 15
    n = math.ceil(v * scale) if up else math.floor(v * scale)
    return f"{n / scale:.15f}".rstrip("0").rstrip(".") or "0"


def histogram(values: list[float], *, drls: list[float], bins: int | None = None, width: int = 640,
              height: int = 240) -> dict:
    """Linear-binned bars of ``values`` (each bar's exact smallest and largest value, for its drill-down),
    scaled to fit the DRLs too; geometry in SVG user units."""
    vals = sorted(values)
    if not vals:
        return {"bars": []}
    nb = bins or 5 * max(1, min(6, math.ceil(math.sqrt(len(vals)) / 5)))  # a multiple of 5: bars align with ticks
    lo, hi = 0.0, nice_ceiling(max([vals[-1]] + drls) * 1.02)
    w = (hi - lo) / nb
    groups: list[list[float]] = [[] for _ in range(nb)]
    for v in vals:
        groups[min(nb - 1, int((v - lo) / w))].append(v)
    left, bottom, top_pad, right_pad = 60, height - 50, 24, 34
    plot_w, plot_h = width - left - right_pad, bottom - top_pad
    most = max(len(g) for g in groups)
    bars = []
    for i, g in enumerate(groups):
        if not g:
            continue
        h = plot_h * len(g) / most
        bars.append({"x": round(left + plot_w * i / nb, 1), "w": round(plot_w / nb - 1, 1), "y": round(bottom - h, 1),
                     "h": round(h, 1), "n": len(g), "lo": g[0], "hi": g[-1], "edge_lo": lo + i * w,
                     "edge_hi": lo + (i + 1) * w, "min_param": _decimal(g[0], up=False), "max_param": _decimal(g[-1], up=True)})
    return {
        "bars": bars, "width": width, "height": height, "left": left, "bottom": bottom, "top": top_pad,
        "right": width - right_pad, "most": most,
        "xticks": [{"x": round(left + plot_w * t / 5, 1), "value": lo + (hi - lo) * t / 5} for t in range(6)],
        "yticks": [{"y": round(bottom - plot_h * t / most, 1), "value": t}
                   for t in range(0, most + 1, max(1, math.ceil(most / 4)))],
        "drls": [{"x": round(left + plot_w * (d - lo) / (hi - lo), 1), "value": d} for d in drls],
    }


def group_detail(query, *, scope: SiteScope = EVERY_SITE, limit: int = 20000) -> dict:
    """The studies of one audit group (the browser's filters in ``query``): per audited quantity the exact
    quartiles, a histogram with the active DRLs and the outliers (above a DRL; above Q3 x factor)."""
    f = browse.read_filters(query, strict=True)
    base = {k: query.get(k) for k in ("modality", "device", "since", "until", "standard", "description", "family",
                                      "age", "ionising", "not_patient") if k in query}
    studies = list(browse.filtered_studies(f, scope=scope).select_related("device")
                   .only("pk", "study_datetime", "study_description", "procedure_modality", "accession_number",
                         "device__display_name", *STEM).order_by("study_datetime", "pk")[:limit])
    fam = age_bands.FAMILY_BY_NAME.get(f.family) if f.family else None
    band = fam.band(f.age_band) if fam else None
    drl_of: dict[str, object] | None
    if fam is not None:  # a band of an age-band family: its band's DRLs; age unknown (or no band given): none
        drl_of = {"standard_name__modality": fam.modality, "standard_name__name": fam.band_name(band)} if band else None
    else:
        drl_of = {"standard_name_id": f.standard} if f.standard else None
    drl_rows = list(DRLValue.objects.select_related("drl_set").filter(drl_set__active=True, **drl_of)) if drl_of else []
    factor = settings.AUDIT_OUTLIER_Q3_FACTOR
    out = []
    for field, stem in STEM.items():
        vals = [(getattr(s, field), s) for s in studies if getattr(s, field) is not None and math.isfinite(getattr(s, field))]
        if not vals:
            continue
        _, label, unit = browse.DOSE_RANGES[stem]
        q1, med, q3 = exact_quantiles([v for v, _ in vals], (0.25, 0.5, 0.75))
        drls = [d for d in drl_rows if d.quantity == field]
        assert q3 is not None
        limit_q3 = q3 * factor
        outliers = []
        for v, s in sorted(vals, key=lambda p: -p[0]):
            above_drl = [d for d in drls if v > d.value]
            if above_drl or v > limit_q3:
                outliers.append({"study": s, "value": v, "above_drl": above_drl, "above_q3": v > limit_q3})
        hist = histogram([v for v, _ in vals], drls=[d.value for d in drls])
        for b in hist["bars"]:
            b["query"] = qs({**base, "reported": stem, f"{stem}_min": b["min_param"], f"{stem}_max": b["max_param"]})
        out.append({"field": field, "stem": stem, "label": label, "unit": unit, "n": len(vals), "q1": q1, "median": med,
                    "q3": q3, "q3_limit": limit_q3, "drls": drls, "hist": hist, "outliers": outliers[:50],
                    "n_outliers": len(outliers), "query": qs({**base, "reported": stem}),
                    "above_q3_query": qs({**base, "reported": stem, f"{stem}_min": _decimal(limit_q3, up=False)})})
    return {"filters": f, "n": len(studies), "quantities": out, "factor": factor, "query": qs(base),
            "truncated": len(studies) >= limit, "family": fam.name if fam else "",
            "age_band_label": (band.label if band else age_bands.UNKNOWN_LABEL if f.age_band == age_bands.UNKNOWN
                               else "") if fam else ""}


# ---------------------------------------------------------------------------
# technique distributions (issue 16): per protocol and room, per irradiation event
# ---------------------------------------------------------------------------
TECHNIQUE_FIELDS = [  # event field (unit in the name or given), label, unit
    ("kvp", "Tube voltage", "kV"),
    ("tube_current_ma", "Tube current", "mA"),
    ("pulse_rate_per_s", "Pulse rate", "pulses/s"),
]
THICKNESS_BAND_MM = 10  # mammography: compressed breast thickness bands 10 mm wide


def _events(*, since: datetime, until: datetime, modality: str, device_id: int | None, scope: SiteScope):
    from dosereg.registry.models import IrradiationEvent

    ev = IrradiationEvent.objects.filter(study__study_datetime__gte=since, study__study_datetime__lt=until,
                                         study__has_ionising_dose=True, study__not_patient_reason="")
    ev = ev.filter(scope.study_q("study__"))
    if modality:
        ev = ev.filter(study__procedure_modality=modality)
    if device_id:
        ev = ev.filter(study__device_id=device_id)
    return ev


def _protocol_annotations():
    from django.db.models import Case, F, OuterRef, Subquery, Value, When

    from dosereg.protocols.models import ProtocolMapping

    std = Subquery(ProtocolMapping.objects.filter(source_name=OuterRef("study__study_description"),
                                                  modality=OuterRef("study__procedure_modality"))
                   .values("standard_name_id")[:1])
    return {"std": std}, {"descr": Case(When(std__isnull=True, then=F("study__study_description")), default=Value(""))}


def technique_distributions(*, since: datetime, until: datetime, modality: str = "", device_id: int | None = None,
                            scope: SiteScope = EVERY_SITE) -> dict:
    """Per room x protocol (standard name, or the vendor description while unmapped): the number of events and
    the quartiles of tube voltage, tube current and pulse rate, and the filtration in use (material and
    thickness as reported, with event counts). 4 queries (PostgreSQL percentile_cont)."""
    from django.db.models import Count

    from dosereg.protocols.models import StandardName

    from .selectors import Percentile, device_names

    first_ann, second_ann = _protocol_annotations()
    base = _events(since=since, until=until, modality=modality, device_id=device_id, scope=scope) \
        .annotate(**first_ann).annotate(**second_ann)
    aggs: dict = {"events": Count("id")}
    for f, _, _ in TECHNIQUE_FIELDS:
        aggs[f"{f}__n"] = Count(f)
        for tag, p in (("q1", 0.25), ("med", 0.5), ("q3", 0.75)):
            aggs[f"{f}__{tag}"] = Percentile(f, p)
    keys = ("study__device_id", "std", "study__procedure_modality", "descr")
    rows = list(base.values(*keys).annotate(**aggs).order_by(*keys))
    filt = list(base.exclude(filter_material="").values(*keys, "filter_material", "extra__filters")
                .annotate(n=Count("id")).order_by(*keys, "-n"))
    names = device_names()
    stds = {s.pk: s.name for s in StandardName.objects.all()}
    filtration: dict[tuple, list[dict]] = {}
    for r in filt:
        filtration.setdefault(tuple(r[k] for k in keys), []).append(
            {"label": filtration_label(r["filter_material"], r["extra__filters"]), "n": r["n"]})
    out = []
    for r in rows:
        key = tuple(r[k] for k in keys)
        dev, std, mod, descr = key
        fields = [{"field": f, "label": label, "unit": unit, "n": r[f"{f}__n"], "q1": r[f"{f}__q1"],
                   "median": r[f"{f}__med"], "q3": r[f"{f}__q3"]} for f, label, unit in TECHNIQUE_FIELDS if r[f"{f}__n"]]
        if not fields and key not in filtration:
            continue
        out.append({"device": names.get(dev, "unknown device") if dev else "unknown device", "device_id": dev,
                    "protocol": stds.get(std) if std else (descr or "(blank description)"), "mapped": bool(std),
                    "modality": mod, "events": r["events"], "fields": fields,
                    "by_field": {f["field"]: f for f in fields}, "filtration": filtration.get(key, []),
                    "query": qs(group_filters(since=since, until=until, modality=mod, device_id=dev, std_id=std,
                                              description=descr))})
    return {"rows": out}


def filtration_label(material: str, filters) -> str:
    """"Copper 0.1 mm + Aluminium 1 mm" from the reported filters (material only when no thickness is given)."""
    parts = []
    for f in filters if isinstance(filters, list) else []:
        if not isinstance(f, dict):
            continue
        lo, hi = f.get("thickness_min_mm"), f.get("thickness_max_mm")
        thick = ""
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo != hi:
            thick = f" {lo:g}–{hi:g} mm"
        elif isinstance(lo, (int, float)) or isinstance(hi, (int, float)):
            thick = f" {(lo if isinstance(lo, (int, float)) else hi):g} mm"
        parts.append(f"{f.get('material') or 'filter'}{thick}")
    return " + ".join(parts) or material


def mammography_agd(*, since: datetime, until: datetime, device_id: int | None = None,
                    scope: SiteScope = EVERY_SITE) -> dict:
    """Average glandular dose per exposure by room, view and compressed-thickness band (10 mm): events, quartiles
    of AGD (mGy), median thickness (2 queries)."""
    from django.db.models import Count, F, FloatField, IntegerField
    from django.db.models.functions import Cast, Floor

    from .selectors import Percentile, device_names

    ev = _events(since=since, until=until, modality="MG", device_id=device_id, scope=scope).filter(agd_mgy__isnull=False)
    ev = ev.annotate(band=Cast(Floor(F("compression_thickness_mm") / float(THICKNESS_BAND_MM)), IntegerField()))
    rows = list(ev.values("study__device_id", "view", "band").annotate(
        n=Count("id"), q1=Percentile("agd_mgy", 0.25), med=Percentile("agd_mgy", 0.5), q3=Percentile("agd_mgy", 0.75),
        thickness=Percentile(Cast("compression_thickness_mm", FloatField()), 0.5))
        .order_by("study__device_id", "view", "band"))
    names = device_names()
    for r in rows:
        r["device"] = names.get(r["study__device_id"], "unknown device")
        b = r["band"]
        r["band_label"] = "not reported" if b is None else f"{b * THICKNESS_BAND_MM}–{(b + 1) * THICKNESS_BAND_MM} mm"
    return {"rows": rows, "band_mm": THICKNESS_BAND_MM}
