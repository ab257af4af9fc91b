"""Periodic badge reports: censored "M" values, effective dose algorithms, quarter/year totals,
investigation-level alerts, idempotency and all-or-nothing refusal of bad files."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import IntegrityError
from django.utils import timezone

from dosereg.notifications.models import Notification
from dosereg.staff.alerts import AlertError, alert_transition, investigation_record, staff_alerts_evaluate
from dosereg.staff.dosimetry.badges import import_badge_csv
from dosereg.staff.dosimetry.common import DosimetryImportError
from dosereg.staff.models import DosimeterReading, DosimetryImport, EffectiveDose, Site, StaffAlert
from dosereg.staff.occupational import effective_dose, effective_doses_recompute, period_totals, wear_period_doses

from .conftest import BADGE_HEADER, q1_badge_rows, write_csv

pytestmark = pytest.mark.django_db


@pytest.fixture
def rso(db):
    user = User.objects.create_user("rso", email="rso@hospital.test")
    user.groups.add(Group.objects.get_or_create(name="rso")[0])
    User.objects.create_user("former-rso", email="old-rso@hospital.test", is_active=False).groups.add(Group.objects.get(name="rso"))
    return user


def test_censored_and_unused_values_are_kept_as_such(people, badge_file):
    result = import_badge_csv(badge_file)
    assert result.status == "imported"
    assert result.counts["created"] == DosimeterReading.objects.count() == 24  # one row per reported quantity
    feb_waist = DosimeterReading.objects.get(badge__badge_id="LX-1002", period_start="2025-02-01", quantity="hp10")
    assert feb_waist.is_censored and feb_waist.value_msv == 0.01 and feb_waist.value_msv != 0  # threshold, never 0
    assert feb_waist.dose_of_record_msv == 0.0
    mar_eye = DosimeterReading.objects.get(badge__badge_id="LX-1003", period_start="2025-03-01", quantity="hp3")
    assert mar_eye.unused and mar_eye.value_msv is None and not mar_eye.is_censored
    nora = DosimeterReading.objects.filter(staff=people["nora"])
    assert nora.count() == 4 and all(r.is_censored for r in nora)
    # a quantity left empty is "not reported": no row at all
    assert not DosimeterReading.objects.filter(badge__badge_id="LX-1003", quantity="hp10").exists()


def test_censored_value_is_null_when_threshold_unknown(people, tmp_path):
    from dosereg.staff.models import StaffSetting

    StaffSetting.objects.filter(key="dosimetry.minimum_reportable.hp007").delete()
    f = write_csv(tmp_path / "ring.csv", BADGE_HEADER, [["LX-1004", "ring", "E100", "", "2025-05-01", "2025-05-31", "", "", "M"]])
    import_badge_csv(f)
    r = DosimeterReading.objects.get()
    assert r.is_censored and r.value_msv is None


@pytest.mark.parametrize("algorithm,expected", [
    ("ncrp122", 0.5 * 0.2 + 0.025 * 4.0),
    ("niklason", 0.2 + 0.06 * (4.0 - 0.2)),
    ("webster", 1.5 * 0.2 + 0.04 * 4.0),
    ("martin_collar", 0.4),
    ("under_apron", 0.2),
])
def test_effective_dose_algorithms(algorithm, expected):
    used, version, e = effective_dose(algorithm, h_under=0.2, h_over=4.0)
    assert used == algorithm and e == pytest.approx(expected) and version
    # two-dosimeter method with only the collar badge: falls back to Martin's collar/10 and says so
    assert effective_dose("ncrp122", h_under=None, h_over=3.0)[0:1] == ("martin_collar",)
    assert effective_dose("niklason", h_under=None, h_over=None) is None


def test_effective_dose_stored_with_algorithm_and_raw_values(people, badge_file):
    import_badge_csv(badge_file)
    jan = EffectiveDose.objects.get(staff=people["anna"], period_start="2025-01-01")
    assert jan.algorithm == "niklason" and "Niklason" in jan.algorithm_version
    assert (jan.h_under_msv, jan.h_over_msv) == (0.2, 4.0)
    assert jan.effective_msv == pytest.approx(0.428)
    feb = EffectiveDose.objects.get(staff=people["anna"], period_start="2025-02-01")
    assert feb.inputs_censored and feb.h_under_msv == 0.0 and feb.effective_msv == pytest.approx(0.3)
    nora_jan = EffectiveDose.objects.get(staff=people["nora"], period_start="2025-01-01")
    assert nora_jan.algorithm == "martin_collar" and "fallback" in nora_jan.algorithm_version and nora_jan.effective_msv == 0.0
    # a physicist switches the site to NCRP 122: stored doses are recomputed with the new name and version
    Site.objects.filter(name="default").update(effective_dose_algorithm="ncrp122")
    effective_doses_recompute(staff_ids=[people["anna"].pk])
    jan = EffectiveDose.objects.get(staff=people["anna"], period_start="2025-01-01")
    assert jan.algorithm == "ncrp122" and jan.effective_msv == pytest.approx(0.2)


def test_quarter_and_year_totals(people, badge_file):
    import_badge_csv(badge_file)
    t = period_totals(wear_period_doses(people["anna"]))
    q1, q2, y = t["quarter"]["2025-Q1"], t["quarter"]["2025-Q2"], t["year"]["2025"]
    assert q1["effective"].msv == pytest.approx(0.428 + 0.3 + 0.642)
    assert q1["hp10_collar"].msv == pytest.approx(15.0)
    assert (q1["hp10_waist"].msv, q1["hp10_waist"].upper_msv, q1["hp10_waist"].censored) == (pytest.approx(0.5), pytest.approx(0.51), 1)
    # eye badge unused in March: the collar Hp(3) stands in for the eye lens (Martin 2013)
    assert q1["lens"].msv == pytest.approx(3.0 + 3.5 + 6.3)
    assert q1["extremity"].msv == pytest.approx(16.0) and q1["extremity"].censored == 1
    assert q2["lens"].msv == pytest.approx(4.0)
    assert y["lens"].msv == pytest.approx(16.8)
    assert y["effective"].msv == pytest.approx(1.37 + 0.107)
    assert t["month"]["2025-02"]["hp10_collar"].msv == pytest.approx(5.0)


def test_investigation_levels_and_annual_limit_alerts(people, badge_file, rso):
    import_badge_csv(badge_file)
    got = {(a.rule, a.period, a.level) for a in StaffAlert.objects.filter(staff=people["anna"])}
    assert got == {
        ("investigation_level.effective", "2025-Q1", "I"),     # 1.37 mSv >= 1.25
        ("investigation_level.lens", "2025-Q1", "II"),         # 12.8 mSv >= 11.25 (only the highest level reached)
        ("investigation_level.extremity", "2025-Q1", "I"),     # 16 mSv >= 12.5
        ("investigation_level.lens", "2025-Q2", "I"),          # 4.0 mSv >= 3.75
        ("annual_limit.lens", "2025", "approaching"),          # 16.8 mSv >= 80 % of 20 (ICRP 118)
    }
    assert not StaffAlert.objects.filter(staff=people["nora"]).exists()  # only "M": nothing to investigate
    lens = StaffAlert.objects.get(rule="investigation_level.lens", period="2025-Q1")
    assert lens.threshold_msv == 11.25 and lens.setting["key"] == "investigation.lens.II" and lens.setting["citation"]
    # each alert is e-mailed once to the person and the active RSO group members
    assert Notification.objects.count() == 10
    assert set(Notification.objects.values_list("recipient", flat=True)) == {"anna.muller@hospital.test", "rso@hospital.test"}
    assert Notification.objects.filter(severity="high").count() == 2  # the Level II alert
    # re-evaluation never duplicates; the DB refuses a second alert with the same key
    assert staff_alerts_evaluate(staff_ids=[people["anna"].pk]) == []
    assert Notification.objects.count() == 10
    with pytest.raises(IntegrityError):
        StaffAlert.objects.create(staff=people["anna"], rule="investigation_level.lens", period="2025-Q1", level="II",
                                  value_msv=1, threshold_msv=1)


def test_icrp_single_year_maximum_is_alerted_apart_from_the_averaged_limit(people, tmp_path, rso):
    # eye badge: 30 + 25 mSv Hp(3) in 2025 -> 55 mSv to the lens, over ICRP 118's 50 mSv in any one year
    rows = [["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-01-01", "2025-01-31", "", "30.0", ""],
            ["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-02-01", "2025-02-28", "", "25.0", ""]]
    import_badge_csv(write_csv(tmp_path / "eye.csv", BADGE_HEADER, rows))
    single = StaffAlert.objects.get(staff=people["anna"], rule="single_year_limit.lens")
    assert (single.period, single.level, single.threshold_msv) == ("2025", "exceeded", 50.0)
    assert single.value_msv == pytest.approx(55.0)
    assert single.setting["key"] == "limit.lens.single_year_max" and "ICRP 118" in single.setting["citation"]
    assert StaffAlert.objects.filter(staff=people["anna"], rule="annual_limit.lens", period="2025", level="exceeded").exists()
    assert not StaffAlert.objects.filter(rule="single_year_limit.effective").exists()  # no effective dose reported
    assert staff_alerts_evaluate(staff_ids=[people["anna"].pk]) == []  # once


def test_single_year_maximum_is_not_above_the_limit_at_the_limit(people, tmp_path):
    rows = [["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-01-01", "2025-01-31", "", "50.0", ""]]
    import_badge_csv(write_csv(tmp_path / "eye.csv", BADGE_HEADER, rows))
    assert StaffAlert.objects.filter(rule="annual_limit.lens", level="exceeded").exists()  # 50 > 20
    assert not StaffAlert.objects.filter(rule="single_year_limit.lens").exists()  # 50 is not above 50


def test_nrc_site_uses_nrc_lens_limit(people, badge_file):
    site = Site.objects.create(name="US clinic", limit_regime="nrc")
    people["anna"].site = site
    people["anna"].save()
    import_badge_csv(badge_file)
    assert not StaffAlert.objects.filter(rule="annual_limit.lens").exists()  # 16.8 mSv is far from 150 mSv
    assert StaffAlert.objects.filter(rule="investigation_level.lens", period="2025-Q1", level="II").exists()


def test_alert_lifecycle_and_investigation(people, badge_file, rso):
    import_badge_csv(badge_file)
    a = StaffAlert.objects.get(rule="investigation_level.lens", period="2025-Q1")
    with pytest.raises(AlertError):
        alert_transition(alert=a, to_status="closed")  # must be acknowledged first
    a = alert_transition(alert=a, to_status="acknowledged", user=rso)
    a = alert_transition(alert=a, to_status="follow_up", user=rso, note="eye badge not worn in March")
    with pytest.raises(AlertError, match="investigation"):
        alert_transition(alert=a, to_status="closed", user=rso)  # Level II needs cause and corrective action
    investigation_record(alert=a, cause="ceiling shield not used", investigator=rso)
    with pytest.raises(AlertError):
        investigation_record(alert=a, complete=True)  # no corrective action yet
    investigation_record(alert=a, corrective_action="ceiling shield training; lead glasses issued", investigator=rso, complete=True)
    a = alert_transition(alert=a, to_status="closed", user=rso)
    assert a.status == "closed" and [t.to_status for t in a.transitions.order_by("pk")] == ["acknowledged", "follow_up", "closed"]
    assert a.investigation.cause == "ceiling shield not used" and a.investigation.completed_at


def test_reimport_changes_nothing_and_a_correction_is_applied(people, badge_file, tmp_path):
    import_badge_csv(badge_file)
    before = list(DosimeterReading.objects.order_by("pk").values())
    alerts = StaffAlert.objects.count()
    assert import_badge_csv(badge_file).status == "already_imported"
    # the same rows in a different file (semicolons): natural keys match, nothing changes
    again = write_csv(tmp_path / "landauer_again.csv", BADGE_HEADER, q1_badge_rows(), delimiter=";")
    r = import_badge_csv(again)
    assert r.counts["created"] == 0 and r.counts["unchanged"] == 24 and r.counts["corrected"] == 0
    assert list(DosimeterReading.objects.order_by("pk").values()) == before
    assert StaffAlert.objects.count() == alerts
    # a corrected report from the service replaces the value of that wear period
    rows = q1_badge_rows()
    rows[0][6] = "4.50"
    r = import_badge_csv(write_csv(tmp_path / "landauer_corrected.csv", BADGE_HEADER, rows))
    assert r.counts["corrected"] == 1
    assert DosimeterReading.objects.get(badge__badge_id="LX-1001", period_start="2025-01-01", quantity="hp10").value_msv == 4.5


def _refused(path, *fragments):
    n_imports, n_readings = DosimetryImport.objects.count(), DosimeterReading.objects.count()
    with pytest.raises(DosimetryImportError) as exc:
        import_badge_csv(path)
    text = str(exc.value)
    for f in fragments:
        assert f in text, text
    assert (DosimetryImport.objects.count(), DosimeterReading.objects.count()) == (n_imports, n_readings)
    return exc.value


def test_wrong_columns(people, tmp_path):
    header = [h if h != "hp10_msv" else "hp10" for h in BADGE_HEADER]
    f = write_csv(tmp_path / "bad.csv", header, q1_badge_rows())
    _refused(f, "line 1: missing column(s) hp10_msv", "unexpected column(s) hp10")


def test_unknown_badge_refuses_the_whole_file(people, tmp_path):
    rows = q1_badge_rows()
    rows.insert(3, ["LX-9999", "Collar", "E999", "NEW^PERSON", "2025-01-01", "2025-01-31", "1.0", "1.0", ""])
    err = _refused(write_csv(tmp_path / "bad.csv", BADGE_HEADER, rows), "line 5: unknown badge 'LX-9999'")
    assert len(err.errors) == 1


def test_overlapping_wear_periods(people, badge_file, tmp_path):
    rows = [["LX-1001", "Collar", "E100", "", "2025-05-01", "2025-05-31", "1.0", "1.0", ""],
            ["LX-1001", "Collar", "E100", "", "2025-05-15", "2025-06-14", "1.0", "1.0", ""]]
    _refused(write_csv(tmp_path / "overlap.csv", BADGE_HEADER, rows), "line 3: wear period 2025-05-15..2025-06-14 of badge LX-1001 overlaps 2025-05-01..2025-05-31 on line 2")
    import_badge_csv(badge_file)
    rows = [["LX-1002", "waist", "E100", "", "2025-06-01", "2025-06-30", "0.1", "", ""],  # fine on its own
            ["LX-1001", "Collar", "E100", "", "2025-03-15", "2025-04-14", "1.0", "1.0", ""]]
    _refused(write_csv(tmp_path / "overlap2.csv", BADGE_HEADER, rows), "line 3:", "overlaps the imported period 2025-03-01..2025-03-31",
             "landauer_2025Q1.csv")
    assert not DosimeterReading.objects.filter(period_start="2025-06-01").exists()


def test_future_dates_malformed_values_and_unassigned_badges(people, tmp_path):
    soon = timezone.localdate() + timedelta(days=40)
    rows = [
        ["LX-1001", "Collar", "E100", "", "2025-05-01", soon.isoformat(), "1.0", "1.0", ""],
        ["LX-1002", "waist", "E100", "", "2025-05-01", "2025-05-31", "abc", "", ""],
        ["LX-1003", "eye", "E100", "", "2025-05-31", "2025-05-01", "", "1.0", ""],
        ["LX-1004", "ring", "E100", "", "2024-11-01", "2024-11-30", "", "", "1.0"],  # before the badge was issued
        ["LX-3001", "collar", "E100", "", "2025-05-01", "2025-05-31", "1.0", "", ""],  # worn by E300, not E100
        ["LX-2001", "ring", "E200", "", "2025-05-01", "2025-05-31", "-1", "", ""],
        ["LX-3002", "waist", "E300", "", "2025-05-01", "2025-05-31", "", "", ""],
        ["LX-3002", "waist", "E300", "", "not a date", "2025-05-31", "0.1", "", ""],
    ]
    err = _refused(write_csv(tmp_path / "bad.csv", BADGE_HEADER, rows),
                   "line 2: wear period 2025-05-01..", "is in the future",
                   "line 3: hp10_msv 'abc' is not a number",
                   "line 4: wear_end 2025-05-01 is before wear_start 2025-05-31",
                   "line 5: badge LX-1004 is not assigned to one staff member",
                   "line 6: employee_id 'E100' does not match the wearer of badge LX-3001 (E300)",
                   "line 7: position 'ring' does not match badge LX-2001", "line 7: hp10_msv '-1' is negative",
                   "line 8: no dose value", "line 9: wear period: 'not a date' is not a date")
    assert [int(e.split(":")[0].split()[1]) for e in err.errors] == sorted(int(e.split(":")[0].split()[1]) for e in err.errors)


def test_command_reports_errors_and_imports(people, badge_file, tmp_path, capsys):
    call_command("import_dosimetry", str(badge_file), "--format", "badge_csv")
    assert "imported" in capsys.readouterr().out
    call_command("import_dosimetry", str(badge_file), "--format", "badge_csv")
    assert "already imported" in capsys.readouterr().out
    bad = write_csv(tmp_path / "bad.csv", BADGE_HEADER, [["LX-0000", "collar", "", "", "2025-05-01", "2025-05-31", "1", "", ""]])
    with pytest.raises(CommandError, match="line 2: unknown badge 'LX-0000'"):
        call_command("import_dosimetry", str(bad), "--format", "badge_csv")
