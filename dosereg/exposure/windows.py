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

import hashlib
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
    # a digest of the window's contents (the points in it, its length and anchor): equal digest, equal totals
    digest: str = field(default="", repr=False, compare=False)

    @property
    def kar_max_gy(self) -> float | None:
        return max(self.kar.values()) if self.kar else None


def _r(x: float) -> float:
    return round(x, NDIGITS) + 0.0


_MOD = 1 << 128


def _point_hash(p: StudyPoint) -> int:
    assert p.at is not None  # only dated points are hashed
    key = (p.study_id, _instant(p.at), p.ionising, p.modality, p.kap_gy_cm2, p.fluoro_time_s, p.dlp_mgy_cm,
           p.ctdivol_max_mgy, p.effective_dose_msv, sorted(p.kar.items()))
    return int.from_bytes(hashlib.md5(repr(key).encode(), usedforsecurity=False).digest(), "big")


def compute_windows(points: list[StudyPoint], windows_days: tuple[int, ...] | list[int], now: datetime,
                    *, include_now: bool = True) -> list[WindowTotals]:
    """Every window in O(n) per window length after an O(n log n) sort: prefix sums for the additive
    quantities, two pointers for the window bounds (anchors in time order), a monotonic deque for the
    CTDIvol maximum, and a prefix sum of per-study hashes for each window's digest."""
    dated = sorted((p for p in points if p.at is not None), key=lambda p: (p.at, p.study_id))
    n = len(dated)
    ats = [p.at for p in dated if p.at is not None]  # == every point of `dated`, typed as datetime
    times = [_instant(at) for at in ats]
    # prefix sums (value, reported-count) per additive quantity
    pre: dict[str, tuple[list[float], list[int]]] = {}
    for f in SUM_FIELDS:
        vals, cnt = [0.0], [0]
        acc, c = 0.0, 0
        for p in dated:
            v = getattr(p, f)
            if v is not None:
                acc += v
                c += 1
            vals.append(acc)
            cnt.append(c)
        pre[f] = (vals, cnt)
    kar_keys = sorted({k for p in dated for k in p.kar})
    kar_pre: list[tuple[tuple[str, str], list[float], list[int]]] = []
    for key in kar_keys:
        vals, cnt = [0.0], [0]
        acc, c = 0.0, 0
        for p in dated:
            v = p.kar.get(key)
            if v is not None:
                acc += v
                c += 1
            vals.append(acc)
            cnt.append(c)
        kar_pre.append((key, vals, cnt))
    ion_pre = [0]
    for p in dated:
        ion_pre.append(ion_pre[-1] + bool(p.ionising))
    mod_pre: list[tuple[str, list[int]]] = []
    for m in sorted({p.modality for p in dated if p.ionising}):
        acc_m = [0]
        for p in dated:
            acc_m.append(acc_m[-1] + (p.ionising and p.modality == m))
        mod_pre.append((m, acc_m))
    hash_pre = [0]
    for p in dated:
        hash_pre.append((hash_pre[-1] + _point_hash(p)) % _MOD)
    ids = [p.study_id for p in dated]
    ctdi = [p.ctdivol_max_mgy for p in dated]
    # the deque only ever holds indices of reported CTDIvol values; this float view types those comparisons
    ctdi_f = [v if v is not None else 0.0 for v in ctdi]
    e_vals, e_cnt = pre["effective_dose_msv"]
    sums = [(f, pre[f][0], pre[f][1]) for f in SUM_FIELDS]

    out: list[WindowTotals] = []
    for w in windows_days:
        span = timedelta(days=w)
        dq: deque[int] = deque()  # sliding max of CTDIvol over [lo, hi): indices with decreasing values
        lo = hi = 0
        anchors: list[tuple[int | None, datetime, int]] = [(p.study_id, at, t) for p, at, t in zip(dated, ats, times)]
        if include_now:
            anchors.append((None, now, _instant(now)))
        for anchor_id, anchor_at, t_end in anchors:
            start = anchor_at - span  # wall-clock arithmetic in the anchor's zone (as brute_force_window), not t_end - W
            t_start = _instant(start)
            if anchor_id is None:  # "now" may even precede future-dated studies: own bounds, direct max, once per window
                lo = next((i for i in range(n) if times[i] >= t_start), n)
                hi = next((i for i in range(lo, n) if times[i] > t_end), n)
                vals = [v for v in ctdi[lo:hi] if v is not None]
                ct = max(vals) if vals else None
            else:  # dated anchors in time order: lo and hi never decrease
                while hi < n and times[hi] <= t_end:
                    v = ctdi[hi]
                    if v is not None:
                        while dq and ctdi_f[dq[-1]] <= v:
                            dq.pop()
                        dq.append(hi)
                    hi += 1
                while lo < hi and times[lo] < t_start:
                    lo += 1
                if lo > 0 and times[lo - 1] >= t_start:
                    # starts are wall-clock (anchor's zone): across a DST change an anchor in another zone may start
                    # earlier than the previous one. Step back and rebuild the deque (rare; bounded by the offset).
                    while lo > 0 and times[lo - 1] >= t_start:
                        lo -= 1
                    dq.clear()
                    for i in range(lo, hi):
                        v = ctdi[i]
                        if v is not None:
                            while dq and ctdi_f[dq[-1]] <= v:
                                dq.pop()
                            dq.append(i)
                while dq and dq[0] < lo:
                    dq.popleft()
                ct = ctdi[dq[0]] if dq else None
            wt = WindowTotals(anchor_study_id=anchor_id, window_days=w, start=start, end=anchor_at, ctdivol_max_mgy=ct,
                              procedure_count=ion_pre[hi] - ion_pre[lo], study_ids=ids[lo:hi],
                              procedure_count_by_modality={m: c[hi] - c[lo] for m, c in mod_pre if c[hi] != c[lo]},
                              effective_dose_studies=e_cnt[hi] - e_cnt[lo])
            for f, vals, cnt in sums:
                if cnt[hi] != cnt[lo]:
                    setattr(wt, f, round(vals[hi] - vals[lo], NDIGITS) + 0.0)
            for key, vals, cnt in kar_pre:
                if cnt[hi] != cnt[lo]:
                    wt.kar[key] = round(vals[hi] - vals[lo], NDIGITS) + 0.0
            wt.digest = f"{(hash_pre[hi] - hash_pre[lo] + w * 0x9E3779B97F4A7C15 + (hi - lo)) % _MOD:032x}"
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


def all_time_totals(points: list[StudyPoint]) -> WindowTotals:
    """Every study of a patient, dated or not (the history's "all time" row): the same sums as a window (a
    quantity only over the studies that reported it, None if none did; Ka,r per reference point and plane, never
    added across them; CTDIvol the largest), with ``start``/``end`` the first and last study dates."""
    ats = [p.at for p in points if p.at is not None]
    first = min(ats) if ats else _EPOCH
    last = max(ats) if ats else _EPOCH
    wt = WindowTotals(anchor_study_id=None, window_days=0, start=first, end=last,
                      study_ids=sorted(p.study_id for p in points))
    for p in points:
        if p.ionising:
            wt.procedure_count += 1
            wt.procedure_count_by_modality[p.modality] = wt.procedure_count_by_modality.get(p.modality, 0) + 1
        for f in SUM_FIELDS:
            v = getattr(p, f)
            if v is not None:
                setattr(wt, f, (getattr(wt, f) or 0.0) + v)
        if p.effective_dose_msv is not None:
            wt.effective_dose_studies += 1
        if p.ctdivol_max_mgy is not None and (wt.ctdivol_max_mgy is None or p.ctdivol_max_mgy > wt.ctdivol_max_mgy):
            wt.ctdivol_max_mgy = p.ctdivol_max_mgy
        for key, v in p.kar.items():
            if v is not None:
                wt.kar[key] = wt.kar.get(key, 0.0) + v
    for f in SUM_FIELDS:
        v = getattr(wt, f)
        if v is not None:
            setattr(wt, f, _r(v))
    wt.kar = {k: _r(v) for k, v in wt.kar.items()}
    return wt
