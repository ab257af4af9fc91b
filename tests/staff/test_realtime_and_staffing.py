"""Real-time dosimeter samples joined to procedure windows (boundaries), staffing lists, the unmatched-name
queue and its resolution, KAP-based estimates, and the staff_exposure command."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from hypothesis import given, settings as hsettings, strategies as st

from dosereg.staff.dosimetry.common import DosimetryImportError
from dosereg.staff.dosimetry.realtime import import_realtime_csv
from dosereg.staff.models import Participation, PendingParticipation, ProcedureStaffDose, RealtimeSample, StaffAlert, UnmatchedName
from dosereg.staff.occupational import Window, assign_samples
from dosereg.staff.services import unmatched_resolve
from dosereg.staff.staffing import StaffingImportError, import_staffing

from .conftest import REALTIME_A, REALTIME_HEADER, STAFFING_HEADER, make_study, write_csv

pytestmark = pytest.mark.django_db
UTC = dt_timezone.utc


def doses(staff, kind="realtime", quantity="hp10"):
    return {d.study.accession_number: d for d in ProcedureStaffDose.objects.filter(staff=staff, kind=kind, quantity=quantity).select_related("study")}


def expected_per_procedure():
    out = {}
    for _, usv, proc in REALTIME_A:
        if proc:
            out[proc] = out.get(proc, 0.0) + usv
    return out


@pytest.mark.parametrize("order", ["realtime_first", "staffing_first"])
def test_samples_are_attributed_to_procedures_at_the_boundaries(people, procedures, realtime_file, staffing_file, order):
    if order == "realtime_first":
        r = import_realtime_csv(realtime_file)
        assert r.counts["created"] == 10 and not ProcedureStaffDose.objects.exists()  # no participation yet
        import_staffing(staffing_file)
    else:
        import_staffing(staffing_file)
        import_realtime_csv(realtime_file)
    anna = people["anna"]
    assert set(Participation.objects.filter(staff=anna).values_list("study__accession_number", flat=True)) == {"ACC1", "ACC2", "ACC3"}
    got = doses(anna)
    exp = expected_per_procedure()
    assert exp == {"S1": 14.0, "S2": 26.0, "S3": 1.0}
    assert {k: d.dose_usv for k, d in got.items()} == {"ACC1": 14.0, "ACC2": 26.0, "ACC3": 1.0}
    assert {k: d.sample_count for k, d in got.items()} == {"ACC1": 3, "ACC2": 3, "ACC3": 1}
    s1 = got["ACC1"]
    assert s1.window_start == datetime(2025, 6, 10, 8, 59, tzinfo=UTC) and s1.window_end == datetime(2025, 6, 10, 9, 12, tzinfo=UTC)
    assert s1.method["basis"] == "events" and got["ACC3"].method["basis"] == "study_datetime"
    # 5 + 7 + 9 µSv fell outside every window: counted for the person, not for a procedure
    assert sum(RealtimeSample.objects.filter(staff=anna).values_list("increment_usv", flat=True)) == 14 + 26 + 1 + 21


def test_cumulative_export_unmatched_nurse_and_resolution(people, procedures, realtime_file, realtime_cumulative_file, staffing_file, tmp_path):
    r = import_staffing(staffing_file)
    assert r.counts["linked"] == 3 and r.counts["queued"] == 1
    um = UnmatchedName.objects.get()
    assert (um.raw_name, um.status, um.normalised) == ("Jones Nora", "open", "jones nora")
    assert PendingParticipation.objects.get().study == procedures["S2"]
    rc = import_realtime_csv(realtime_cumulative_file)
    assert rc.counts["mode"] == "cumulative" and any("baseline" in w for w in rc.warnings)
    nora = people["nora"]
    assert not ProcedureStaffDose.objects.filter(staff=nora).exists()
    # the RSO says who "Jones Nora" is: alias remembered, pending participation linked, doses computed
    unmatched_resolve(unmatched=um, staff=nora)
    um.refresh_from_db()
    assert um.status == "resolved" and um.resolved_staff == nora and not PendingParticipation.objects.exists()
    part = Participation.objects.get(staff=nora)
    assert part.study == procedures["S2"] and part.role == "nurse" and part.sources[0]["source"] == "staffing_csv"
    increments = list(RealtimeSample.objects.filter(staff=nora).order_by("timestamp").values_list("increment_usv", flat=True))
    assert increments == [0.0, 30.0, 30.0, 10.0]  # first cumulative value is a baseline
    assert doses(nora)["ACC2"].dose_usv == 60.0  # 09:13 and 09:16; 09:11:00 is before S2's window, 09:22 after
    # the next theatre list with the same spelling links straight away
    nxt = write_csv(tmp_path / "theatre_list_2.csv", STAFFING_HEADER, [["ACC1", "", "", "", "", "JONES^NORA", "", "circulating nurse"]])
    assert import_staffing(nxt).counts == {"rows": 1, "linked": 1, "queued": 0, "unmatched_open": 0}
    assert set(Participation.objects.filter(staff=nora).values_list("study__accession_number", flat=True)) == {"ACC1", "ACC2"}


def test_kap_estimates_are_labelled_and_only_fill_gaps(people, procedures, staffing_file, badge_file):
    from dosereg.staff.dosimetry.badges import import_badge_csv
    from dosereg.staff.selectors import staff_exposure

    import_badge_csv(badge_file)  # Anna's badges cover Jan-Apr 2025 only
    import_staffing(staffing_file)
    est = doses(people["anna"], kind="estimate", quantity="hp3")
    assert {k: round(d.dose_usv, 6) for k, d in est.items()} == {"ACC1": 37.6, "ACC2": 47.0, "ACC3": 4.7}  # KAP x 0.94
    assert all(d.method["label"] == "estimate" and "Antic" in d.method["citation"] for d in est.values())
    data = staff_exposure(people["anna"], as_of=datetime(2025, 12, 31).date())
    june = data["periods"]["month"]["2025-06"]
    assert june["dose_of_record"] == {} and june["estimate"]["label"] == "estimate"
    assert june["estimate"]["lens"] == pytest.approx((37.6 + 47.0 + 4.7) / 1000)
    # a procedure inside a badge wear period is not estimated into the totals (the badge measured it)
    make_study("1.2.826.0.1.3680043.10.9001.9", device=procedures["S1"].device, accession="ACC9",
               events=[("2025-02-10 10:00:00", 60.0, 100.0)])
    import_staffing(write_csv(badge_file.parent / "feb.csv", STAFFING_HEADER, [["ACC9", "", "", "", "", "", "E100", "first operator"]]))
    assert doses(people["anna"], kind="estimate", quantity="hp3")["ACC9"].dose_usv == pytest.approx(94.0)
    data = staff_exposure(people["anna"], as_of=datetime(2025, 12, 31).date())
    assert data["periods"]["month"]["2025-02"]["estimate"] is None
    assert data["totals"]["estimates_used"] == 3
    # the physicist calibrates ANGIO1: the device-specific factor wins over the Antic default
    from dosereg.staff.config import scatter_factor_set
    from dosereg.staff.occupational import procedure_doses_recompute

    scatter_factor_set(role="first_operator", quantity="hp3", factor=0.5, device=procedures["S1"].device,
                       citation="ANGIO1 scatter survey 2025-05, ceiling shield in place")
    procedure_doses_recompute(staff_ids=[people["anna"].pk])
    s1 = doses(people["anna"], kind="estimate", quantity="hp3")["ACC1"]
    assert s1.dose_usv == pytest.approx(20.0) and s1.method["factor_device_id"] == procedures["S1"].device_id


def test_high_dose_procedure_alert(people, procedures, staffing_file, tmp_path):
    import_staffing(staffing_file)
    f = write_csv(tmp_path / "rt_high.csv", REALTIME_HEADER, [["RS-A", "2025-06-10T09:16:00Z", "150.0", "2400"]])
    import_realtime_csv(f)
    a = StaffAlert.objects.get(rule="procedure.high_dose")
    assert a.study == procedures["S2"] and a.value_msv == pytest.approx(0.15) and a.threshold_msv == 0.1


def test_realtime_reimport_and_bad_files(people, procedures, realtime_file, tmp_path):
    import_realtime_csv(realtime_file)
    assert import_realtime_csv(realtime_file).status == "already_imported"
    r = import_realtime_csv(write_csv(tmp_path / "again2.csv", ["timestamp", "badge_id", "dose_usv"],
                                      [[ts, "RS-A", f"{u}"] for ts, u, _ in REALTIME_A]))
    assert (r.counts["created"], r.counts["unchanged"]) == (0, 10)
    n = RealtimeSample.objects.count()
    future = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    bad = write_csv(tmp_path / "bad.csv", REALTIME_HEADER, [
        ["RS-A", "2025-06-11T09:00:00", "1.0", ""],     # fine
        ["RS-X", "2025-06-11T09:00:01", "1.0", ""],     # unknown badge
        ["LX-1001", "2025-06-11T09:00:02", "1.0", ""],  # a passive badge
        ["RS-A", future, "1.0", ""],                    # future
        ["RS-A", "2025-06-11T09:00:00", "2.0", ""],     # duplicate timestamp
        ["RS-A", "yesterday", "1.0", ""],
        ["RS-A", "2025-06-10T09:05:00", "11.0", ""],    # conflicts with the stored sample
    ])
    with pytest.raises(DosimetryImportError) as exc:
        import_realtime_csv(bad)
    text = str(exc.value)
    for frag in ["line 3: unknown badge 'RS-X'", "line 4: badge 'LX-1001' is a passive dosimeter", "line 5: timestamp", "is in the future",
                 "line 6: duplicate sample for badge RS-A", "also line 2", "line 7: 'yesterday' is not an ISO 8601 timestamp",
                 "line 8: sample of badge RS-A at 2025-06-10T09:05:00+00:00 conflicts"]:
        assert frag in text, text
    assert RealtimeSample.objects.count() == n
    wrong = write_csv(tmp_path / "wrong.csv", ["badge_id", "timestamp", "dose_usv", "cumulative_usv"], [["RS-A", "2025-06-11T10:00:00", "1", "2"]])
    with pytest.raises(DosimetryImportError, match="exactly one of the columns cumulative_usv, dose_usv"):
        import_realtime_csv(wrong)
    with pytest.raises(CommandError, match="line 3: unknown badge"):
        call_command("import_dosimetry", str(bad), "--format", "realtime_csv")


def test_fixed_utc_offset_for_devices_without_dst(people, procedures, staffing_file, tmp_path):
    import_staffing(staffing_file)
    # a dosimeter logging CET without DST: 10:05 local standard time is 09:05 UTC (inside S1)
    f = write_csv(tmp_path / "cet.csv", ["badge_id", "timestamp", "dose_usv"], [["RS-A", "2025-06-10 10:05:00", "5"]])
    import_realtime_csv(f, utc_offset="+01:00")
    assert doses(people["anna"])["ACC1"].dose_usv == 5.0


def test_staffing_errors_are_reported_and_nothing_is_linked(people, procedures, tmp_path):
    f = write_csv(tmp_path / "bad_list.csv", STAFFING_HEADER, [
        ["ACC1", "", "", "", "", "MULLER^ANNA", "", "operator"],               # fine
        ["NOPE", "", "", "", "", "MULLER^ANNA", "", "operator"],               # unknown accession
        ["", "", "ANGIO1", "2025-06-10T09:00:00", "2025-06-10T09:20:00", "x", "", "nurse"],  # two studies in that window
        ["ACC2", "", "", "", "", "", "E999", "nurse"],                          # unknown employee
        ["ACC2", "", "", "", "", "", "", "nurse"],
    ])
    with pytest.raises(StaffingImportError) as exc:
        import_staffing(f)
    text = str(exc.value)
    for frag in ["line 3: accession number 'NOPE' matches no study", "line 4: room 'ANGIO1'", "matches 2 studies",
                 "line 5: unknown employee_id 'E999'", "line 6: neither staff_name nor employee_id"]:
        assert frag in text, text
    assert not Participation.objects.exists() and not UnmatchedName.objects.exists()
    with pytest.raises(StaffingImportError, match="missing column"):
        import_staffing(write_csv(tmp_path / "cols.csv", ["accession", "who"], [["ACC1", "x"]]))


def test_staff_exposure_command_json(people, procedures, realtime_file, staffing_file, badge_file, capsys):
    call_command("import_dosimetry", str(badge_file), "--format", "badge_csv")
    call_command("import_staffing", str(staffing_file))
    call_command("import_dosimetry", str(realtime_file), "--format", "realtime_csv")
    capsys.readouterr()
    call_command("staff_exposure", "--staff", "E100", "--json", "--as-of", "2025-12-31")
    data = json.loads(capsys.readouterr().out)
    assert data["staff"]["employee_id"] == "E100" and data["limit_regime"] == "icrp" and data["effective_dose_algorithm"] == "niklason"
    q1 = data["periods"]["quarter"]["2025-Q1"]["dose_of_record"]
    assert q1["effective"]["msv"] == pytest.approx(1.37) and q1["lens"]["msv"] == pytest.approx(12.8)
    assert q1["hp10_waist"]["censored_readings"] == 1 and q1["hp10_waist"]["upper_msv"] == pytest.approx(0.51)
    assert data["periods"]["month"]["2025-06"]["realtime_hp10_msv"] == pytest.approx(0.062)
    assert data["totals"]["year_to_date"]["lens"]["msv"] == pytest.approx(16.8)
    assert data["totals"]["rolling_5y"]["effective"]["msv"] == pytest.approx(1.477)
    assert data["periods"]["rolling_5y"]["from_exclusive"] == "2020-12-31"
    procs = {p["accession_number"]: p for p in data["procedures"]}
    assert set(procs) == {"ACC1", "ACC2", "ACC3"}
    rt = [d for d in procs["ACC2"]["doses"] if d["kind"] == "realtime"][0]
    assert (rt["dose_usv"], rt["sample_count"]) == (26.0, 3)
    est = [d for d in procs["ACC2"]["doses"] if d["kind"] == "estimate"][0]
    assert est["label"] == "estimate" and est["quantity"] == "hp3"
    assert {(a["rule"], a["period"], a["level"]) for a in data["alerts"]} >= {("investigation_level.lens", "2025-Q1", "II")}
    call_command("staff_exposure", "--staff", "E100")
    assert "ALERT investigation_level.lens II 2025-Q1" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no staff member"):
        call_command("staff_exposure", "--staff", "E404", "--json")


T0 = datetime(2025, 6, 10, 9, 0, tzinfo=UTC)


@given(
    st.lists(st.tuples(st.integers(0, 3600), st.integers(1, 900)), min_size=1, max_size=5),
    st.lists(st.integers(-300, 4800), min_size=1, max_size=40),
    st.integers(0, 120),
)
@hsettings(max_examples=150, deadline=None)
def test_every_sample_goes_to_at_most_one_window_and_only_one_containing_it(spans, offsets, margin):
    windows = []
    for i, (start, length) in enumerate(spans):
        begin, end = T0 + timedelta(seconds=start), T0 + timedelta(seconds=start + length)
        windows.append(Window(i, begin, end, "events", begin - timedelta(seconds=margin), end + timedelta(seconds=margin)))
    samples = [(T0 + timedelta(seconds=o), 1.0) for o in offsets]
    per, unattributed = assign_samples(samples, windows)
    assert sum(len(v) for v in per.values()) + len(unattributed) == len(samples)  # nothing lost, nothing doubled
    inside = sum(1 for t, _ in samples if any(w.contains(t) for w in windows))
    assert inside == sum(len(v) for v in per.values())
