"""Alert rules, lifecycle, escalation, withdrawal, pregnancy, CT, routing — through the real ingest pipeline."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction

from dosereg.exposure.models import Alert, AlertEvent, AlertRoute, PatientExposureWindow, Rule, RuleSet
from dosereg.exposure.lifecycle import (
    AlertTransitionError, alert_acknowledge, alert_close, alert_record_conceptus_estimate, alert_schedule_follow_up,
    follow_up_reminders_send,
)
from dosereg.exposure.recompute import patient_exposure_recompute, study_set_pregnancy_status
from dosereg.notifications.models import Notification
from dosereg.rdsr import records as R
from dosereg.rdsr.builder import CTDoseCheckSpec
from dosereg.registry.models import Study
from tests.conftest import REPO
from tests.exposure.builders import ct_rdsr, rf_rdsr

pytestmark = pytest.mark.django_db
UTC = dt.timezone.utc
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def keys(**filters):
    return sorted((a.rule_key, a.level) for a in Alert.objects.filter(**filters))


def test_defaults_seeded_with_sources_and_marks():
    rs = RuleSet.objects.get(active=True)
    rules = {r.key: r for r in rs.rules.all()}
    assert rules["fgi-kar-srdl"].threshold_value == 5 and rules["fgi-kar-srdl"].verification == "✔"
    assert rules["fgi-kap-srdl"].verification == "◐" and rules["fgi-time-first"].threshold_unit == "min"
    assert rules["ct-ctdivol-adult-head"].threshold_value == 80 and rules["ct-ctdivol-adult-torso"].threshold_value == 50
    assert rules["ct-ctdivol-alert-1000"].verification == "⚠" and not rules["ct-ctdivol-alert-1000"].enabled
    assert all(r.source for r in rules.values())
    assert Group.objects.filter(name="rso").exists()


def test_escalation_across_studies_is_a_new_alert_and_one_email_each(tmp_path, import_file, rso_users, smtp_server):
    import_file(rf_rdsr(tmp_path, when=D0, kar=3.2, kap=100))
    assert keys() == [("fgi-kar-first", "first")]
    assert len(smtp_server.messages) == 2  # one per RSO
    # a second procedure 10 days later: per-study 4.5 Gy (first + subsequent+1), cumulative 7.7 Gy in 12 weeks
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=10), kar=4.5, kap=100))
    got = keys()
    assert ("cum-kar-12w-srdl", "srdl") in got and ("cum-kar-12w-first", "first") in got
    assert ("fgi-kar-subsequent", "subsequent+1") in got
    assert got.count(("fgi-kar-first", "first")) == 2  # one per study (subject = study)
    cum = Alert.objects.get(rule_key="cum-kar-12w-srdl")
    assert cum.value == pytest.approx(7.7) and cum.window_days == 84 and cum.subject.startswith("episode:")
    n_alerts, n_mails = Alert.objects.count(), len(smtp_server.messages)
    assert Notification.objects.exclude(status="digest_pending").count() == n_mails  # repeat-procedure rule: daily digest
    # recompute and re-import: nothing new
    patient_exposure_recompute(patient_id=cum.patient_id)
    assert Alert.objects.count() == n_alerts and len(smtp_server.messages) == n_mails


def test_late_earlier_study_extends_the_same_cumulative_episode(tmp_path, import_file, rso_users, smtp_server):
    import_file(rf_rdsr(tmp_path, when=D0, kar=2.0, kap=50))
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=20), kar=2.0, kap=50))
    first = Alert.objects.get(rule_key="cum-kar-12w-first")
    mails = len(smtp_server.messages)
    # an even earlier study arrives late: the episode now starts earlier; same alert, no new e-mail
    import_file(rf_rdsr(tmp_path, when=D0 - dt.timedelta(days=5), kar=2.0, kap=50))
    assert Alert.objects.filter(rule_key="cum-kar-12w-first").count() == 1
    first.refresh_from_db()
    assert first.value == pytest.approx(6.0)  # the latest window now holds all three
    assert ("cum-kar-12w-srdl", "srdl") in keys()  # 6 Gy ≥ 5 Gy: escalation is a new alert
    new_subjects = [m["Subject"] for m in smtp_server.messages[mails:]]
    assert new_subjects and all("12 weeks" in s and "substantial" in s for s in new_subjects)


def test_replacement_that_lowers_totals_withdraws_never_deletes(tmp_path, import_file, rso_users, smtp_server):
    study_uid, sop_uid = "1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.1002"
    import_file(rf_rdsr(tmp_path, when=D0, kar=6.0, kap=100, study_uid=study_uid, sop_uid=sop_uid))
    srdl = Alert.objects.get(rule_key="fgi-kar-srdl")
    alert_acknowledge(alert_id=srdl.pk, user=rso_users[0], note="seen")
    mails = len(smtp_server.messages)
    # corrected RDSR, same SOP Instance UID, lower dose
    import_file(rf_rdsr(tmp_path, when=D0, kar=1.0, kap=100, study_uid=study_uid, sop_uid=sop_uid))
    assert Study.objects.get().dose_rp_max_plane_gy == pytest.approx(1.0)
    srdl.refresh_from_db()
    assert srdl.status == Alert.STATUS_WITHDRAWN and "no longer met" in srdl.withdrawn_note
    assert srdl.acknowledged_by == rso_users[0]  # history kept
    assert Alert.objects.filter(rule_key="fgi-kar-first").get().status == Alert.STATUS_WITHDRAWN
    assert AlertEvent.objects.filter(alert=srdl, action="withdrawn").count() == 1
    assert len(smtp_server.messages) == mails
    w = PatientExposureWindow.objects.get(anchor_study__isnull=False, window_days=84)
    assert w.kar_max_gy == pytest.approx(1.0)
    # corrected again upwards: the same alert is re-raised, not duplicated or re-sent
    import_file(rf_rdsr(tmp_path, when=D0, kar=6.5, kap=100, study_uid=study_uid, sop_uid=sop_uid))
    srdl.refresh_from_db()
    assert srdl.status == Alert.STATUS_ACKNOWLEDGED and srdl.value == pytest.approx(6.5)
    assert Alert.objects.filter(rule_key="fgi-kar-srdl").count() == 1
    assert len(smtp_server.messages) == mails


def test_deleting_a_study_withdraws_its_alerts(tmp_path, import_file, rso_users, django_capture_on_commit_callbacks):
    import_file(rf_rdsr(tmp_path, when=D0, kar=6.0, kap=100))
    study = Study.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            study.dose_objects.all().delete()
            study.delete()
    a = Alert.objects.get(rule_key="fgi-kar-srdl")
    assert a.status == Alert.STATUS_WITHDRAWN and a.study is None and a.study_uid
    assert "deleted" in a.withdrawn_note
    assert not PatientExposureWindow.objects.filter(anchor_study__isnull=False).exists()


def test_lifecycle_and_follow_up_reminder(tmp_path, import_file, rso_users, smtp_server, django_capture_on_commit_callbacks):
    import_file(rf_rdsr(tmp_path, when=D0, kar=6.0, kap=100))
    a = Alert.objects.get(rule_key="fgi-kar-srdl")
    user = rso_users[0]
    with pytest.raises(AlertTransitionError):
        alert_close(alert_id=a.pk, user=user)  # must be acknowledged first
    a = alert_acknowledge(alert_id=a.pk, user=user, note="patient informed")
    assert a.status == "acknowledged" and a.acknowledged_by == user and a.acknowledged_at and a.acknowledge_note == "patient informed"
    with pytest.raises(AlertTransitionError):
        alert_acknowledge(alert_id=a.pk, user=user)
    a = alert_schedule_follow_up(alert_id=a.pk, user=user, note="skin check")
    assert a.status == "follow_up" and a.follow_up_due == dt.date.fromisoformat(a.detail["follow_up_suggested_due"])
    assert a.follow_up_due == (D0 + dt.timedelta(days=28)).date()
    mails = len(smtp_server.messages)
    assert follow_up_reminders_send(today=a.follow_up_due - dt.timedelta(days=1)) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert follow_up_reminders_send(today=a.follow_up_due) == 1
    assert follow_up_reminders_send(today=a.follow_up_due) == 0  # once
    assert len(smtp_server.messages) == mails + 2 and "follow-up due" in smtp_server.messages[-1]["Subject"]
    a = alert_close(alert_id=a.pk, user=user, note="no skin reaction at 4 weeks")
    assert a.status == "closed" and a.closed_by == user
    assert [e.action for e in a.events.all()][:1] == ["raised"]
    assert {"acknowledged", "follow_up_scheduled", "follow_up_reminder", "closed"} <= {e.action for e in a.events.all()}


def test_unique_constraint_per_patient_rule_level_subject(tmp_path, import_file):
    import_file(rf_rdsr(tmp_path, when=D0, kar=6.0, kap=100))
    a = Alert.objects.get(rule_key="fgi-kar-srdl")
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(patient=a.patient, rule=a.rule, rule_key=a.rule_key, level=a.level, subject=a.subject,
                             quantity=a.quantity, title="dup", message="dup")


# ---------------------------------------------------------------------------
# pregnancy
# ---------------------------------------------------------------------------
def test_pregnancy_from_builder_pelvis_is_high_priority(tmp_path, import_file, rso_users, smtp_server):
    import_file(rf_rdsr(tmp_path, when=D0, kar=0.02, kap=3.0, region="pelvis", pregnancy=2, description="Hysterosalpingogram"))
    study = Study.objects.get()
    assert study.pregnancy_status == R.PREGNANCY_POSSIBLE
    a = Alert.objects.get(rule_key="pregnancy")
    assert a.severity == "high" and "HIGH PRIORITY" in a.title
    assert "region involves abdomen/pelvis" in a.detail["priority_reasons"]
    assert "< 50 mGy" in a.message and "physicist" in a.message
    assert {m["To"] for m in smtp_server.messages} == {"rso1@hospital.test", "rso2@hospital.test"}
    a = alert_record_conceptus_estimate(alert_id=a.pk, user=rso_users[0], estimate_mgy=1.2, note="HSG, 2 min fluoro")
    assert a.detail["conceptus_dose_band"].startswith("< 50 mGy")


def test_pregnancy_fixture_file(import_file):
    path = REPO / "fixtures" / "possibly_pregnant_rf.dcm"
    import_file(path)
    a = Alert.objects.get(rule_key="pregnancy")
    assert a.severity == "high" and a.detail["pregnancy_status"] == R.PREGNANCY_POSSIBLE
    assert a.detail["status_source"] == "DICOM Pregnancy Status"


def test_pregnancy_outside_pelvis_normal_priority_and_override(tmp_path, import_file, rso_users, smtp_server,
                                                               django_capture_on_commit_callbacks):
    import_file(rf_rdsr(tmp_path, when=D0, kar=0.01, kap=1.0, region="chest", pregnancy=None, description="Chest fluoroscopy"))
    assert not Alert.objects.exists()
    study = Study.objects.get()
    # staff record the pregnancy after the exam: re-evaluated, alert raised (normal priority: chest)
    with django_capture_on_commit_callbacks(execute=True):
        study_set_pregnancy_status(study_id=study.pk, status=R.PREGNANCY_DEFINITE, user=rso_users[0], note="told after exam")
    a = Alert.objects.get(rule_key="pregnancy")
    assert a.severity == "normal" and a.detail["status_source"] == "staff override"
    mails = len(smtp_server.messages)
    assert mails == 2
    # corrected to not pregnant: withdrawn, not deleted, nothing sent
    with django_capture_on_commit_callbacks(execute=True):
        study_set_pregnancy_status(study_id=study.pk, status=R.PREGNANCY_NOT, user=rso_users[0])
    a.refresh_from_db()
    assert a.status == Alert.STATUS_WITHDRAWN
    with pytest.raises(ValueError):
        study_set_pregnancy_status(study_id=study.pk, status="maybe")
    # a configured dose level makes it high priority
    rule = Rule.objects.get(key="pregnancy", ruleset__active=True)
    rule.params = {"high_priority_kap_gy_cm2": 0.5}
    rule.save()
    with django_capture_on_commit_callbacks(execute=True):
        study_set_pregnancy_status(study_id=study.pk, status=R.PREGNANCY_POSSIBLE)
    a.refresh_from_db()
    assert a.status == Alert.STATUS_OPEN and a.severity == "high"
    assert len(smtp_server.messages) == mails  # re-raised, never re-sent


# ---------------------------------------------------------------------------
# CT and Dose Check
# ---------------------------------------------------------------------------
def test_ct_notification_value_and_dose_check_reason(tmp_path, import_file, rso_users, smtp_server):
    dc = CTDoseCheckSpec(ctdivol_notification_value_mgy=50, ctdivol_forward_estimate_mgy=62,
                         reason_for_proceeding="Large patient; protocol approved", authorizing_person="Dr Who")
    import_file(ct_rdsr(tmp_path, when=D0, ctdivol=62.0, dlp=2000.0, region="abdomen", protocol="Abdomen routine", dose_check=dc))
    got = keys()
    assert ("ct-ctdivol-adult-torso", "notification") in got
    assert ("ct-dose-check", "dose_check") in got
    assert ("ct-ctdivol-adult-head", "notification") not in got
    a = Alert.objects.get(rule_key="ct-dose-check")
    assert a.detail["reason_for_proceeding"] == "Large patient; protocol approved"
    assert "Large patient" in a.message
    se = Study.objects.get().exposure
    assert se.effective_dose_msv == pytest.approx(2000 * 0.0153)
    assert se.effective_dose_detail["label"].startswith("population-average estimate")
    assert se.effective_dose_detail["factors"][0]["verification"] == "✔"
    w = PatientExposureWindow.objects.get(anchor_study__isnull=False, window_days=84)
    assert w.dlp_mgy_cm == 2000 and w.ctdivol_max_mgy == 62 and w.kap_gy_cm2 is None


def test_ct_head_below_head_value_no_alert(tmp_path, import_file):
    import_file(ct_rdsr(tmp_path, when=D0, ctdivol=60.0, dlp=900.0, region="head", phantom="head", protocol="Head routine"))
    assert keys() == []  # 60 < 80 mGy head; the torso value does not apply to a head


# ---------------------------------------------------------------------------
# routing
# ---------------------------------------------------------------------------
def test_routing_by_device_and_severity(tmp_path, import_file, rso_users, smtp_server):
    from dosereg.registry.models import Device

    cardio = User.objects.create_user("cardio", email="cardio-lead@hospital.test")
    import_file(rf_rdsr(tmp_path, when=D0 - dt.timedelta(days=400), kar=0.1, kap=1, station="CATHLAB2"))
    device = Device.objects.get(station_name="CATHLAB2")
    route = AlertRoute.objects.create(name="cath lab 2 high", device=device, min_severity="high", emails="physics@hospital.test")
    route.users.add(cardio)
    import_file(rf_rdsr(tmp_path, when=D0, kar=5.5, kap=100, station="CATHLAB2"))
    by_subject = {}
    for m, (_, rcpts) in zip(smtp_server.messages, smtp_server.envelopes):
        by_subject.setdefault(" ".join(m["Subject"].split()), set()).update(rcpts)
    # one case for the procedure, one e-mail: to the high-severity route (SRDL) and to the default route (the
    # first level is not high), each address once
    srdl = [s for s in by_subject if "substantial" in s]
    assert len(by_subject) == 1 and srdl
    assert by_subject[srdl[0]] == {"cardio-lead@hospital.test", "physics@hospital.test", "rso1@hospital.test", "rso2@hospital.test"}


def test_ruleset_versions_keep_alert_history(tmp_path, import_file):
    from dosereg.exposure.rulesets import ruleset_activate, ruleset_new_version

    import_file(rf_rdsr(tmp_path, when=D0, kar=3.5, kap=100))
    a = Alert.objects.get(rule_key="fgi-kar-first")
    v1 = a.rule.ruleset
    v2 = ruleset_new_version(user=None, note="site lowers Ka,r first level")
    Rule.objects.filter(ruleset=v2, key="fgi-kar-first").update(threshold_value=2.0)
    Rule.objects.filter(ruleset=v2, key="fgi-kar-srdl").update(threshold_value=3.0, verification="⚠")
    ruleset_activate(ruleset_id=v2.pk)
    patient_exposure_recompute(patient_id=a.patient_id)
    a.refresh_from_db()
    assert a.rule.ruleset_id == v1.pk and a.status == Alert.STATUS_OPEN  # same key: not duplicated
    srdl = Alert.objects.get(rule_key="fgi-kar-srdl")
    assert srdl.rule.ruleset_id == v2.pk and srdl.detail["rule_version"] == 2 and srdl.detail["verification"] == "⚠"
    assert RuleSet.objects.get(active=True).pk == v2.pk


def test_alert_emails_follow_rso_site_assignments(tmp_path, import_file, rso_users, smtp_server):
    """Without a route, an alert goes to the RSOs whose sites include the study's site (as on their dashboard)."""
    from dosereg.access.models import AssignedSite, SiteAssignment

    rso1, rso2 = rso_users
    SiteAssignment.objects.create(user=rso1, all_sites=False).sites.create(institution="  riverside clinic ")
    SiteAssignment.objects.create(user=rso2, all_sites=False).sites.create(institution="Northfield General Hospital")
    everywhere = User.objects.create_user("rso3", email="rso3@hospital.test")
    everywhere.groups.add(Group.objects.get(name="rso"))
    SiteAssignment.objects.create(user=everywhere, all_sites=True)
    nobody = User.objects.create_user("rso4", email="rso4@hospital.test")
    nobody.groups.add(Group.objects.get(name="rso"))
    SiteAssignment.objects.create(user=nobody, all_sites=False)  # no site listed: sees and receives nothing
    assert AssignedSite.objects.count() == 2

    import_file(rf_rdsr(tmp_path, when=D0, kar=3.2, kap=100, patient_id="SITE-A", institution="Riverside Clinic"))
    assert {r for _, rcpts in smtp_server.envelopes for r in rcpts} == {"rso1@hospital.test", "rso3@hospital.test"}
    smtp_server.envelopes.clear()
    import_file(rf_rdsr(tmp_path, when=D0, kar=3.2, kap=100, patient_id="SITE-B", station="ANGIO2"))
    assert {r for _, rcpts in smtp_server.envelopes for r in rcpts} == {"rso2@hospital.test", "rso3@hospital.test"}
    assert Alert.objects.filter(notified="queued").count() == 2
