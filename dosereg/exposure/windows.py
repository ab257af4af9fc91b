"""Rolling-window arithmetic, pure Python (no Django), so it can be property-tested.

Window definition (the choice documented here is what the tests pin down):

* A window of W days *anchored at* time T holds every dated study S with
  ``T - W <= S.at <= T`` — **closed at both ends**: a study exactly W days before
  the anchor is inside, and studies at the same instant as the anchor (including
  the anchor itself) are inside. Times are compared as absolute instants, so aware
  datetimes in different zones compare correctly.
* Windows are anchored at every dated study of the patient, plus one window
  "ending now". A late-arriving earlier study therefore changes the windows of the
  later studies it falls into, whatever the arrival order.
* Undated studies are in no window (they are listed in reports as undated).
* A quantity is summed only over studies that reported it; if none did, the total
  is None ("not reported"), never 0. Quantities are never mixed: Ka,r is kept per
  (reference-point definition, plane).
"""
from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

SUM_FIELDS = ("kap_gy_cm2", "fluoro_time_s", "dlp_mgy_cm", "effective_dose_msv")
NDIGITS = 9
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def _instant(at: datetime) -> int:
    """Integer microseconds since the epoch: exact comparisons at the window edges."""
    return (at - _EPOCH) // _US  # prefix-sum differences are rounded to remove float noise


@dataclass
class StudyPoint:
    study_id: int
    at: datetime | None              # aware
    ionising: bool = True
    modality: str = ""
    kap_gy_cm2: float | None = None
    fluoro_time_s: float | None = None
    dlp_mgy_cm: float | None = None
    ctdivol_max_mgy: float | None = None
    effective_dose_msv: float | None = None
    kar: dict[tuple[str, str], float] = field(default_factory=dict)  # (reference point, plane) -> Gy


@dataclass
class WindowTotals:
    anchor_study_id: int | None      # None: the window ending "now"
    window_days: int
    start: datetime
    end: datetime
    procedure_count: int = 0
    procedure_count_by_modality: dict[str, int] = field(default_factory=dict)
    study_ids: list[int] = field(default_factory=list)
    kap_gy_cm2: float | None = None
    fluoro_time_s: float | None = None
    dlp_mgy_cm: float | None = None
    effective_dose_msv: float | None = None
    effective_dose_studies: int = 0   # studies in the window that had an estimate
    ctdivol_max_mgy: float | None = None
    kar: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def kar_max_gy(self) -> float | None:
        return max(self.kar.values()) if self.kar else None


def _r(x: float) -> float:
    return round(x, NDIGITS) + 0.0


def compute_windows(points: list[StudyPoint], windows_days: tuple[int, ...] | list[int], now: datetime,
                    *, include_now: bool = True) -> list[WindowTotals]:
    dated = sorted((p for p in points if p.at is not None), key=lambda p: (p.at, p.study_id))
    times = [_instant(p.at) for p in dated]
    # prefix sums (value, reported-count) per additive quantity
    pre: dict[str, tuple[list[float], list[int]]] = {}
    for f in SUM_FIELDS:
        vals, cnt = [0.0], [0]
        for p in dated:
            v = getattr(p, f)
            vals.append(vals[-1] + (v if v is not None else 0.0))
            cnt.append(cnt[-1] + (v is not None))
        pre[f] = (vals, cnt)
    kar_keys = sorted({k for p in dated for k in p.kar})
    kar_pre: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for key in kar_keys:
        vals, cnt = [0.0], [0]
        for p in dated:
            v = p.kar.get(key)
            vals.append(vals[-1] + (v if v is not None else 0.0))
            cnt.append(cnt[-1] + (v is not None))
        kar_pre[key] = (vals, cnt)
    ion_pre = [0]
    for p in dated:
        ion_pre.append(ion_pre[-1] + bool(p.ionising))
    mod_pre: dict[str, list[int]] = {}
    for m in sorted({p.modality for p in dated if p.ionising}):
        acc = [0]
        for p in dated:
            acc.append(acc[-1] + (p.ionising and p.modality == m))
        mod_pre[m] = acc
    ids = [p.study_id for p in dated]

    out: list[WindowTotals] = []
    for w in windows_days:
        span = timedelta(days=w)
        dq: deque[int] = deque()  # sliding max of CTDIvol over [lo, hi): indices with decreasing values
        pushed = 0
        anchors: list[tuple[int | None, datetime]] = [(p.study_id, p.at) for p in dated]
        if include_now:
            anchors.append((None, now))
        for anchor_id, anchor_at in anchors:
            start = anchor_at - span
            lo = bisect.bisect_left(times, _instant(start))
            hi = bisect.bisect_right(times, _instant(anchor_at))
            if anchor_id is None:  # "now" may even precede future-dated studies: direct max, once per window
                vals = [dated[i].ctdivol_max_mgy for i in range(lo, hi) if dated[i].ctdivol_max_mgy is not None]
                ctdi = max(vals) if vals else None
            else:  # dated anchors in time order: lo and hi never decrease
                while pushed < hi:
                    v = dated[pushed].ctdivol_max_mgy
                    if v is not None:
                        while dq and dated[dq[-1]].ctdivol_max_mgy <= v:
                            dq.pop()
                        dq.append(pushed)
                    pushed += 1
                while dq and dq[0] < lo:
                    dq.popleft()
                ctdi = dated[dq[0]].ctdivol_max_mgy if dq else None
            wt = WindowTotals(anchor_study_id=anchor_id, window_days=w, start=start, end=anchor_at, ctdivol_max_mgy=ctdi)
            wt.procedure_count = ion_pre[hi] - ion_pre[lo]
            wt.study_ids = ids[lo:hi]
            wt.procedure_count_by_modality = {m: c[hi] - c[lo] for m, c in mod_pre.items() if c[hi] - c[lo]}
            for f in SUM_FIELDS:
                vals, cnt = pre[f]
                if cnt[hi] - cnt[lo]:
                    setattr(wt, f, _r(vals[hi] - vals[lo]))
            wt.effective_dose_studies = pre["effective_dose_msv"][1][hi] - pre["effective_dose_msv"][1][lo]
            for key, (vals, cnt) in kar_pre.items():
                if cnt[hi] - cnt[lo]:
                    wt.kar[key] = _r(vals[hi] - vals[lo])
            out.append(wt)
    return out


def brute_force_window(points: list[StudyPoint], anchor_at: datetime, window_days: int) -> dict:
    """Reference implementation for tests: the same definition, by direct filtering."""
    start = anchor_at - timedelta(days=window_days)
    inside = [p for p in points if p.at is not None and start <= p.at <= anchor_at]
    res: dict = {"procedure_count": sum(1 for p in inside if p.ionising), "study_ids": sorted(p.study_id for p in inside)}
    for f in SUM_FIELDS:
        vals = [getattr(p, f) for p in inside if getattr(p, f) is not None]
        res[f] = _r(sum(vals)) if vals else None
    ct = [p.ctdivol_max_mgy for p in inside if p.ctdivol_max_mgy is not None]
    res["ctdivol_max_mgy"] = max(ct) if ct else None
    kar: dict = {}
    for p in inside:
        for k, v in p.kar.items():
            kar[k] = kar.get(k, 0.0) + v
    res["kar"] = {k: _r(v) for k, v in kar.items()}
    return res
