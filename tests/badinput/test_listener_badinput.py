"""Hostile input through the real listener (in-process, tasks eager): every bad object is refused with a
failure status or quarantined with a specific reason; good objects in the same association get in; the
listener keeps answering.

Decisions asserted here:
* A SOP class we do not accept (Secondary Capture) is rejected at presentation-context negotiation; the
  sender cannot even send it. The same object sent under an *accepted* context (a File Meta that lies) is
  acknowledged (the listener never parses, the original is kept) and quarantined as "unsupported SOP
  class ... (Secondary Capture Image Storage)".
* An unknown transfer syntax is rejected at negotiation; a known one whose data do not match it
  (Deflated that is not deflated) is stored and quarantined with the reader's reason.
* Negative or absurd dose indices quarantine the whole object ("implausible dose value: ..."): a report
  whose encoder produced 1e30 Gy cannot be trusted for its other numbers either.
* Bad *individual* values that do not make a report untrustworthy (a DAP sent as TEXT, a number that is
  not a number, a date in the future) are ingested with the value null / as sent, with a specific warning.
* Over-size objects are refused with 0xC000 (nothing spooled); the association goes on.
"""
from __future__ import annotations

import time

import pytest

from dosereg.registry.models import DoseObject, IrradiationEvent

from . import objects as O
from .conftest import PER_OBJECT_BOUND_S, UNKNOWN_TS, association, echo

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS, CANNOT_UNDERSTAND = 0x0000, 0xC000


def _finished(uid: str, timeout_s: float = 120.0) -> DoseObject:
    """The listener answers before its in-process worker ingests: wait until the object left "received"."""
    deadline = time.monotonic() + timeout_s
    obj = DoseObject.objects.get(sop_instance_uid=uid)
    while obj.status == DoseObject.STATUS_RECEIVED and time.monotonic() < deadline:
        time.sleep(0.05)
        obj.refresh_from_db()
    return obj


def _quarantined(uid: str) -> DoseObject:
    obj = _finished(uid)
    assert obj.status == DoseObject.STATUS_QUARANTINED, (uid, obj.status, obj.warnings)
    return obj


def _ingested(uid: str) -> DoseObject:
    obj = _finished(uid)
    assert obj.status == DoseObject.STATUS_INGESTED, (uid, obj.status, obj.quarantine_reason)
    return obj


def test_bad_objects_are_quarantined_or_refused_and_good_ones_in_the_same_association_get_in(listener, tmp_path):
    goods: list[str] = []
    expect_q: dict[str, str] = {}      # SOP UID -> reason fragment (quarantined)
    expect_w: dict[str, str] = {}      # SOP UID -> warning fragment (ingested)
    with association(listener.port, tmp_path / "send") as s:
        # negotiation: the SC context and the unknown transfer syntax were rejected, the others accepted
        rejected = {(c.abstract_syntax, tuple(c.transfer_syntax)) for c in s.assoc.rejected_contexts}
        assert (O.SECONDARY_CAPTURE, ("1.2.840.10008.1.2.1",)) in rejected
        assert (O.RDSR_CLASS, (UNKNOWN_TS,)) in rejected
        accepted = {c.abstract_syntax for c in s.assoc.accepted_contexts}
        assert {O.RDSR_CLASS, O.COMPREHENSIVE_SR, O.CT_IMAGE} <= accepted

        def good(i):
            data = O.good(f"GOOD{i:04d}")
            r = s.send(f"good{i}", data)
            assert r.status == SUCCESS, r
            goods.append(r.sop_uid)

        good(1)
        data, reason = O.truncated()
        expect_q[s.send("truncated", data).sop_uid] = reason
        good(2)
        data, uid, reason = O.garbage_with_preamble(seed=11)
        expect_q[s.send("garbage", data, uid).sop_uid] = reason
        data, uid, reason = O.secondary_capture_as(O.COMPREHENSIVE_SR)
        expect_q[s.send("sc-as-comprehensive-sr", data, uid).sop_uid] = reason
        for factory in (O.absurd_dose, O.negative_dose, O.absurd_ctdi, O.negative_dlp, O.no_content, O.no_dose_items,
                        O.deep_nesting):
            data, reason = factory()
            expect_q[s.send(factory.__name__, data).sop_uid] = reason
        good(3)
        for factory in (O.wrong_value_types, O.future_dates):
            data, warning = factory()
            expect_w[s.send(factory.__name__, data).sop_uid] = warning
        data, uid, reason = O.fake_deflated()
        expect_q[s.send("fake-deflated", data, uid).sop_uid] = reason
        data, n_events = O.by_reference_cycle()
        cyc = s.send("by-reference-cycle", data)

        big = O.oversize(13 * 1024 * 1024)
        over = s.send("oversize", big)
        assert over.status == CANNOT_UNDERSTAND, over
        sc = s.send_dataset("sc-own-class", O.secondary_capture())
        assert sc.status is None and "presentation context" in sc.error.lower(), sc
        good(4)

        for r in s.sent:
            assert r.seconds < PER_OBJECT_BOUND_S, f"{r.name} took {r.seconds:.1f}s"
        statuses = {r.name: r.status for r in s.sent}

    # every object the listener acknowledged with Success is in the registry, finished (by the listener's worker)
    for name, status in statuses.items():
        if name not in ("oversize", "sc-own-class"):
            assert status == SUCCESS, (name, hex(status or 0))
    for uid in goods:
        obj = _ingested(uid)
        assert IrradiationEvent.objects.filter(dose_object=obj).count() == 3
    for uid, fragment in expect_q.items():
        obj = _quarantined(uid)
        assert fragment in obj.quarantine_reason, (fragment, obj.quarantine_reason)
    for uid, fragment in expect_w.items():
        obj = _ingested(uid)
        assert any(fragment in w for w in obj.warnings), (fragment, obj.warnings)
    obj = _ingested(cyc.sop_uid)
    assert IrradiationEvent.objects.filter(dose_object=obj).count() == n_events

    # refused objects leave nothing behind: no row, no spooled file
    assert not DoseObject.objects.filter(sop_instance_uid=over.sop_uid).exists()
    assert not DoseObject.objects.filter(sop_instance_uid=sc.sop_uid).exists()
    spooled = [p.name for p in (listener.spool / "objects").rglob("*.dcm")]
    assert not any(n.startswith(over.sop_uid) for n in spooled)
    assert DoseObject.objects.count() == len(goods) + len(expect_q) + len(expect_w) + 1
    assert listener.stats.refused == 1

    # the listener still answers
    assert echo(listener.port) == SUCCESS


def test_wrong_values_keep_the_rest_of_the_report(listener, tmp_path):
    """A DAP sent as TEXT and a Dose (RP) that is not a number: null with warnings, the other events intact."""
    with association(listener.port, tmp_path / "send") as s:
        data, _ = O.wrong_value_types()
        r = s.send("wrong-vt", data)
    assert r.status == SUCCESS
    obj = _ingested(r.sop_uid)
    events = list(IrradiationEvent.objects.filter(dose_object=obj).order_by("datetime"))
    assert [e.dap_gy_cm2 for e in events] == [None, pytest.approx(1.5), pytest.approx(2.5)]
    assert [e.dose_rp_gy for e in events] == [pytest.approx(0.002), None, pytest.approx(0.004)]
    assert "Dose (RP): unparseable number 'abc'; stored as null" in obj.warnings


def test_huge_number_of_content_items_is_processed_within_bounds(listener, tmp_path):
    """100,000 junk content items around a 3-event report: ingested, nothing invented, within the bound."""
    data, n_events = O.many_items(100_000)
    with association(listener.port, tmp_path / "send") as s:
        r = s.send("many-items", data)
        g = s.send("good", O.good("GOODMANY"))
    assert r.status == SUCCESS and g.status == SUCCESS
    assert r.seconds < PER_OBJECT_BOUND_S, r.seconds
    obj = _ingested(r.sop_uid)
    assert IrradiationEvent.objects.filter(dose_object=obj).count() == n_events
    _ingested(g.sop_uid)


def test_many_events_are_all_stored(listener, tmp_path):
    """A 2,000-event report (a long fixed-angio day) is stored whole within the bound."""
    data = O.good("MANYEV01", n_events=2000)
    with association(listener.port, tmp_path / "send") as s:
        r = s.send("5000-events", data)
    assert r.status == SUCCESS and r.seconds < PER_OBJECT_BOUND_S, r
    obj = _ingested(r.sop_uid)
    assert IrradiationEvent.objects.filter(dose_object=obj).count() == 2000


def test_only_unknown_transfer_syntax_offered_means_no_context_and_nothing_stored(listener, tmp_path):
    from pynetdicom import build_context
    from pynetdicom.sop_class import Verification

    contexts = [build_context(Verification), build_context(O.RDSR_CLASS, [UNKNOWN_TS])]
    with association(listener.port, tmp_path / "send", contexts=contexts) as s:
        assert [c.abstract_syntax for c in s.assoc.accepted_contexts] == [Verification]
        ds = O.projection(patient_id="UNKTS001")
        ds.file_meta = __import__("pydicom").dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = UNKNOWN_TS
        r = s.send_dataset("unknown-ts", ds)
        assert r.status is None
        assert int(s.assoc.send_c_echo().Status) == SUCCESS
    assert not DoseObject.objects.exists()


def test_listener_survives_abrupt_aborts_mid_association(listener, tmp_path):
    """A sender that aborts after sending garbage leaves the listener serving the next caller."""
    with association(listener.port, tmp_path / "a") as s:
        data, uid, _ = O.garbage_with_preamble(seed=3)
        assert s.send("garbage", data, uid).status == SUCCESS
        s.assoc.abort()
    assert echo(listener.port) == SUCCESS
    with association(listener.port, tmp_path / "b") as s:
        r = s.send("good", O.good("AFTERABORT"))
    assert r.status == SUCCESS
    _ingested(r.sop_uid)
    _quarantined(uid)
