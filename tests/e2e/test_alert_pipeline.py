"""Exposure alerts end to end: DCMTK storescu -> listener -> Redis -> Celery worker (ingest, recompute,
send) -> PostgreSQL -> real SMTP (aiosmtpd in the test process).

Issue 3 acceptance: the 316-event Philips Allura file raises the substantial-radiation-dose-level alerts
and exactly one e-mail per rule and recipient, and sending it again sends nothing; a possibly pregnant
patient raises a pregnancy alert e-mail; the two Siemens Artis zee studies (same patient, two days
apart, sharing one SOP Instance UID) get correct cumulative windows when the earlier one arrives last.
"""
from __future__ import annotations

import importlib
from collections import Counter
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User

from dosereg.exposure.constants import RSO_GROUP
from dosereg.rdsr import records as R
from dosereg.exposure.models import Alert, PatientExposureWindow, Rule
from dosereg.notifications.models import Notification
from dosereg.registry.models import DoseObject, Study
from tests.conftest import REPO
from tests.e2e.conftest import wait_until
from tests.notifications.smtp import RecordingHandler, free_port

pytestmark = pytest.mark.e2e

ZEE = "siemens_axiom-artis-zee_RF.dcm"
ZEE_EARLIER = "siemens_axiom-artis-zee_RF_adjusted-date.dcm"
ALLURA_316 = "philips_allura-xper_RF_316events_no-orientation-modifier.dcm"
PREGNANT = REPO / "fixtures" / "possibly_pregnant_rf.dcm"
RECIPIENTS = ["rso1@hospital.test", "rso2@hospital.test"]


@pytest.fixture
def smtp(stack):
    """A real SMTP server on loopback; the listener's and workers' environment points at it."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    stack.env.update({
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(port),
        "EMAIL_USE_TLS": "false",
        "EMAIL_TIMEOUT": "5",
    })
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def alerting(stack, smtp):
    """Default rules present (a flush by an earlier live-server test removes the migration's seed), RSO users
    committed so the worker's routing finds recipients, then a worker and the listener."""
    if not Rule.objects.exists():
        importlib.import_module("dosereg.exposure.migrations.0002_seed_defaults").seed(django_apps, None)
    assert Rule.objects.filter(key="fgi-kar-srdl", ruleset__active=True).exists()
    group, _ = Group.objects.get_or_create(name=RSO_GROUP)
    for address in RECIPIENTS:
        User.objects.create_user(address.split("@")[0], email=address).groups.add(group)
    stack.start_worker(concurrency=2)
    stack.start_listener()
    return stack


def received(smtp) -> Counter:
    """(normalised subject, recipient) of every message the SMTP server accepted."""
    out = Counter()
    for msg, (_, rcpts) in zip(smtp.messages, smtp.envelopes):
        for r in rcpts:
            out[(" ".join(str(msg["Subject"]).split()), r)] += 1
    return out


def alerts_notified(study_uid: str) -> list[Alert]:
    return list(Alert.objects.filter(study_uid=study_uid, notified="queued"))


def test_allura_316_srdl_one_case_one_email_per_recipient_and_resend_sends_nothing(alerting, smtp, corpus_dir):
    path = corpus_dir / ALLURA_316
    res = alerting.storescu([path])
    assert res.returncode == 0, res.stderr + alerting.logs()

    def all_sent():
        obj = DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).first()
        if obj is None or obj.study_id is None:
            return None
        study = Study.objects.get(pk=obj.study_id)
        alerts = alerts_notified(study.study_instance_uid)
        if not any(a.rule_key == "fgi-kar-srdl" for a in alerts):
            return None
        expected = len(RECIPIENTS)  # one case, one e-mail per recipient
        sent = Notification.objects.filter(status=Notification.STATUS_SENT).count()
        return (study, alerts) if sent >= expected and len(smtp.messages) >= expected else None

    done = wait_until(all_sent, timeout=120, interval=0.3)
    assert done, alerting.logs()
    study, alerts = done
    assert study.dose_rp_max_plane_gy == pytest.approx(7.7, abs=0.05)
    assert study.dap_total_gy_cm2 == pytest.approx(469, abs=1)

    srdl = next(a for a in alerts if a.rule_key == "fgi-kar-srdl")
    assert srdl.level == "srdl" and srdl.severity == "high" and srdl.status == Alert.STATUS_OPEN
    all_rules = set(Alert.objects.filter(study_uid=study.study_instance_uid).values_list("rule_key", flat=True))
    assert {"fgi-kar-srdl", "fgi-kar-first", "fgi-kar-subsequent", "fgi-kap-first"} <= all_rules
    assert "fgi-kap-srdl" not in all_rules  # 469 < 500 Gy·cm²
    # the procedure's RSO case holds every level; one e-mail per recipient (the SRDL carried it)
    from dosereg.cases.models import Case

    case = Case.objects.get(study_uid=study.study_instance_uid)
    assert case.kind == "procedure" and case.top_level == "srdl"
    assert [a.rule_key for a in alerts] == ["fgi-kar-srdl"]
    notified_rules = {"fgi-kar-srdl"}
    got = received(smtp)
    assert sorted(r for (_, r) in got) == RECIPIENTS and set(got.values()) == {1}
    body = smtp.messages[0].get_body(preferencelist=("plain",)).get_content()
    assert f"/alerts/{case.pk}/" in body and "does not imply that an injury will occur" in body

    mails_before, alerts_before = len(smtp.messages), Alert.objects.count()
    res = alerting.storescu([path])
    assert res.returncode == 0, res.stderr
    wait_until(lambda: False, timeout=6)  # give the workers time to (wrongly) recompute or send anything
    assert len(smtp.messages) == mails_before
    assert Alert.objects.count() == alerts_before
    assert Notification.objects.count() == len(notified_rules) * len(RECIPIENTS)
    assert set(Notification.objects.values_list("status", flat=True)) == {Notification.STATUS_SENT}
    assert DoseObject.objects.count() == 1


def test_possibly_pregnant_patient_raises_pregnancy_email(alerting, smtp):
    res = alerting.storescu([PREGNANT])
    assert res.returncode == 0, res.stderr + alerting.logs()

    def sent():
        a = Alert.objects.filter(rule_key="pregnancy", notified="queued").first()
        if a is None:
            return None
        mails = [m for m in smtp.messages if "Pregnancy" in " ".join(str(m["Subject"]).split())]
        return (a, mails) if len(mails) >= len(RECIPIENTS) else None

    done = wait_until(sent, timeout=90, interval=0.3)
    assert done, alerting.logs()
    alert, mails = done
    assert alert.severity == "high" and alert.detail["status_source"] == "DICOM Pregnancy Status"
    assert alert.detail["pregnancy_status"] == R.PREGNANCY_POSSIBLE
    assert sorted(str(m["To"]) for m in mails) == RECIPIENTS  # one e-mail per recipient
    body = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert "HIGH PRIORITY" in str(mails[0]["Subject"]) and "abdomen/pelvis" in body


def test_artis_zee_earlier_study_arriving_last_updates_both_windows(alerting, corpus_dir, tmp_path):
    from dosereg.rdsr.builder import rewrite_uids

    # the corpus's adjusted copy keeps the SOP Instance and Irradiation Event UIDs (as sent: the same procedure
    # re-filed, counted once, issue 18); with fresh UIDs it is another procedure two days earlier
    later_file, earlier_file = corpus_dir / ZEE, tmp_path / "zee-earlier-procedure.dcm"
    earlier_file.write_bytes(rewrite_uids((corpus_dir / ZEE_EARLIER).read_bytes()))

    def windows_for(n_studies: int):
        def check():
            studies = list(Study.objects.order_by("-study_datetime"))
            if len(studies) != n_studies:
                return None
            ws = {s.pk: PatientExposureWindow.objects.filter(anchor_study=s, window_days=84).first() for s in studies}
            if any(w is None for w in ws.values()):
                return None
            if n_studies == 2 and ws[studies[0].pk].procedure_count != 2:
                return None  # the later study's window not yet recomputed with the late earlier one
            return studies, ws
        return check

    res = alerting.storescu([later_file])
    assert res.returncode == 0, res.stderr + alerting.logs()
    first = wait_until(windows_for(1), timeout=90, interval=0.3)
    assert first, alerting.logs()
    (only,), ws = first
    assert ws[only.pk].procedure_count == 1

    res = alerting.storescu([earlier_file])  # another procedure of the same patient, two days earlier
    assert res.returncode == 0, res.stderr + alerting.logs()
    both = wait_until(windows_for(2), timeout=90, interval=0.3)
    assert both, alerting.logs()
    (later, earlier), ws = both
    assert later.pk == only.pk
    assert later.patient_id == earlier.patient_id
    assert later.study_datetime - earlier.study_datetime == timedelta(days=2)
    assert DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).count() == 2
    w_later, w_earlier = ws[later.pk], ws[earlier.pk]
    assert w_later.procedure_count == 2 and w_earlier.procedure_count == 1
    assert w_later.kap_gy_cm2 == pytest.approx(later.dap_total_gy_cm2 + earlier.dap_total_gy_cm2)
    assert w_later.kap_gy_cm2 == pytest.approx(0.32)
    assert w_earlier.kap_gy_cm2 == pytest.approx(earlier.dap_total_gy_cm2)
    assert w_later.fluoro_time_s == pytest.approx(later.fluoro_time_total_s + earlier.fluoro_time_total_s)
    assert w_later.kar_max_gy == pytest.approx(later.dose_rp_max_plane_gy + earlier.dose_rp_max_plane_gy)
    assert w_later.ctdivol_max_mgy is None and w_later.dlp_mgy_cm is None  # not reported ≠ 0
    assert PatientExposureWindow.objects.filter(patient=later.patient, anchor_study__isnull=False).count() == 6
    # the repeat-procedure rule (2 FGI procedures within 60 days) fires exactly once
    assert wait_until(lambda: list(Alert.objects.values_list("rule_key", flat=True)) == ["fgi-repeat-60d"], timeout=20), \
        list(Alert.objects.values_list("rule_key", "level"))
