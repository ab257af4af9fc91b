"""Window arithmetic: closed interval [anchor − W, anchor], anchored at every study and at "now".

Pure tests against exposure.windows (no database): table-driven edges, time zones,
and a hypothesis property test against a brute-force reference, including
arrival order (the result must not depend on it).
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from dosereg.exposure.windows import StudyPoint, brute_force_window, compute_windows

UTC = timezone.utc
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2027, 1, 1, tzinfo=UTC)
KEY = ("DCM:113860", "single")


def pt(i, at, kap=None, kar=None, **kw):
    return StudyPoint(study_id=i, at=at, kap_gy_cm2=kap, kar={KEY: kar} if kar is not None else {}, **kw)


def window(res, anchor_id, days):
    return next(w for w in res if w.anchor_study_id == anchor_id and w.window_days == days)


@pytest.mark.parametrize(
    "offset, inside",
    [
        (timedelta(days=84), True),                                   # exactly at the window start: inside (closed)
        (timedelta(days=84, microseconds=1), False),                  # 1 µs earlier: outside
        (timedelta(days=84) - timedelta(microseconds=1), True),
        (timedelta(0), True),                                         # same instant as the anchor: inside
        (-timedelta(microseconds=1), False),                          # 1 µs after the anchor: outside
    ],
)
def test_window_edges_are_closed(offset, inside):
    anchor = pt(1, T0, kap=10.0)
    other = pt(2, T0 - offset, kap=1.0)
    w = window(compute_windows([anchor, other], [84], NOW), 1, 84)
    assert (2 in w.study_ids) is inside
    assert w.kap_gy_cm2 == (11.0 if inside else 10.0)


def test_time_zones_compare_as_instants():
    # 23:30 in New York on 7 Oct is 03:30 UTC on 8 Oct: 84 days before an anchor at 03:30 UTC on 31 Dec
    anchor_at = datetime(2026, 12, 31, 3, 30, tzinfo=UTC)
    ny = datetime(2026, 10, 7, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    assert anchor_at - ny == timedelta(days=84)
    tokyo = ny.astimezone(ZoneInfo("Asia/Tokyo"))  # the same instant, written differently
    res = compute_windows([pt(1, anchor_at, kap=1.0), pt(2, ny, kap=2.0), pt(3, tokyo - timedelta(seconds=1), kap=4.0)], [84], NOW)
    w = window(res, 1, 84)
    assert w.study_ids == [2, 1] and w.kap_gy_cm2 == 3.0
    # a DST change inside the window does not shift it: windows are absolute durations
    london = datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("Europe/London"))
    res = compute_windows([pt(1, london + timedelta(days=60), kap=1.0), pt(2, london, kap=2.0)], [60], NOW)
    assert window(res, 1, 60).kap_gy_cm2 == 3.0


def test_late_earlier_study_updates_later_windows():
    later = pt(1, T0, kap=100.0, kar=2.0)
    before = compute_windows([later], [84], NOW)
    assert window(before, 1, 84).kap_gy_cm2 == 100.0
    earlier = pt(2, T0 - timedelta(days=2), kap=100.0, kar=2.0)
    after = compute_windows([later, earlier], [84], NOW)
    assert window(after, 1, 84).kap_gy_cm2 == 200.0 and window(after, 1, 84).kar == {KEY: 4.0}
    assert window(after, 2, 84).kap_gy_cm2 == 100.0  # the earlier study's own window holds only itself


def test_not_reported_is_none_not_zero_and_quantities_never_mix():
    a = StudyPoint(1, T0, kap_gy_cm2=None, dlp_mgy_cm=500.0, ctdivol_max_mgy=20.0, modality="CT")
    b = StudyPoint(2, T0 - timedelta(days=1), kap_gy_cm2=None, kar={("IRP", "A"): 1.0, ("IRP", "B"): 0.5}, modality="XA")
    c = StudyPoint(3, T0 - timedelta(days=2), kar={("table", "single"): 0.2}, modality="RF")
    w = window(compute_windows([a, b, c], [84], NOW), 1, 84)
    assert w.kap_gy_cm2 is None and w.fluoro_time_s is None
    assert w.dlp_mgy_cm == 500.0 and w.ctdivol_max_mgy == 20.0
    assert w.kar == {("IRP", "A"): 1.0, ("IRP", "B"): 0.5, ("table", "single"): 0.2}  # per reference point and plane
    assert w.kar_max_gy == 1.0
    assert w.procedure_count == 3 and w.procedure_count_by_modality == {"CT": 1, "XA": 1, "RF": 1}


def test_undated_studies_are_in_no_window_and_now_window():
    res = compute_windows([pt(1, None, kap=5.0), pt(2, NOW - timedelta(days=10), kap=1.0), pt(3, NOW - timedelta(days=100), kap=2.0)], [84], NOW)
    assert {w.anchor_study_id for w in res} == {2, 3, None}
    now_w = window(res, None, 84)
    assert now_w.study_ids == [2] and now_w.kap_gy_cm2 == 1.0 and now_w.end == NOW


def test_future_dated_study_and_now_window_ctdivol():
    pts = [StudyPoint(1, NOW + timedelta(days=3), ctdivol_max_mgy=99.0), StudyPoint(2, NOW - timedelta(days=3), ctdivol_max_mgy=10.0)]
    res = compute_windows(pts, [84], NOW)
    assert window(res, None, 84).ctdivol_max_mgy == 10.0
    assert window(res, 1, 84).ctdivol_max_mgy == 99.0


offsets = st.integers(min_value=0, max_value=400 * 86400 * 1_000_000)  # µs within ~400 days
zones = st.sampled_from([UTC, ZoneInfo("Europe/Berlin"), ZoneInfo("America/Los_Angeles"), ZoneInfo("Asia/Kolkata")])
maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
points_strategy = st.lists(
    st.tuples(
        maybe(st.tuples(offsets, zones)),
        maybe(st.floats(min_value=0, max_value=1000, allow_nan=False)),
        maybe(st.floats(min_value=0, max_value=10, allow_nan=False)),
        maybe(st.floats(min_value=0, max_value=200, allow_nan=False)),
        st.sampled_from(["RF", "XA", "CT"]),
        st.booleans(),
    ),
    max_size=25,
)


@hsettings(max_examples=150, deadline=None)
@given(raw=points_strategy, days=st.sampled_from([1, 60, 84, 365]), seed=st.integers(0, 10_000), edge=st.booleans())
def test_matches_brute_force_in_any_arrival_order(raw, days, seed, edge):
    pts = []
    for i, (when, kap, kar, ctdi, modality, ionising) in enumerate(raw, start=1):
        at = None
        if when is not None:
            at = (T0 + timedelta(microseconds=when[0])).astimezone(when[1])
        pts.append(StudyPoint(i, at, ionising=ionising, modality=modality, kap_gy_cm2=kap, ctdivol_max_mgy=ctdi,
                              kar={KEY: kar} if kar is not None else {}))
    if edge and pts and pts[0].at is not None:  # force a study exactly on the window edge of the first one
        pts.append(StudyPoint(len(pts) + 1, pts[0].at - timedelta(days=days), kap_gy_cm2=1.0))
    shuffled = pts[:]
    random.Random(seed).shuffle(shuffled)
    res_a = compute_windows(pts, [days], NOW)
    res_b = compute_windows(shuffled, [days], NOW)
    key = lambda w: (w.anchor_study_id or 0, w.window_days)  # noqa: E731
    assert [vars(w) for w in sorted(res_a, key=key)] == [vars(w) for w in sorted(res_b, key=key)]
    by_id = {p.study_id: p for p in pts}
    for w in res_a:
        anchor_at = NOW if w.anchor_study_id is None else by_id[w.anchor_study_id].at
        ref = brute_force_window(pts, anchor_at, days)
        assert sorted(w.study_ids) == ref["study_ids"]
        assert w.procedure_count == ref["procedure_count"]
        assert w.ctdivol_max_mgy == ref["ctdivol_max_mgy"]
        for f in ("kap_gy_cm2",):
            if ref[f] is None:
                assert getattr(w, f) is None
            else:
                assert getattr(w, f) == pytest.approx(ref[f], rel=1e-9, abs=1e-6)
        assert w.kar.keys() == ref["kar"].keys()
        for k in ref["kar"]:
            assert w.kar[k] == pytest.approx(ref["kar"][k], rel=1e-9, abs=1e-6)
