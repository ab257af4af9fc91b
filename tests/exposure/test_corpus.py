"""Acceptance with the real corpus: cumulative sums in either import order; the 316-event
Philips Allura file raises the SRDL alert and e-mails each recipient exactly once per
rule over real SMTP; nothing more on re-import or recompute."""
from __future__ import annotations

from collections import Counter

import pytest

from dosereg.exposure.models import Alert, PatientExposureWindow
from dosereg.exposure.recompute import patient_exposure_recompute
from dosereg.exposure.tasks import recompute_patient_exposure_task
from dosereg.notifications.models import Notification
from dosereg.registry.models import DoseObject, Study

pytestmark = pytest.mark.django_db

ZEE = "siemens_axiom-artis-zee_RF.dcm"
ZEE_EARLIER = "siemens_axiom-artis-zee_RF_adjusted-date.dcm"
ALLURA_316 = "philips_allura-xper_RF_316events_no-orientation-modifier.dcm"


def win(study, days=84):
    return PatientExposureWindow.objects.get(anchor_study=study, window_days=days)


def earlier_procedure(corpus_dir, tmp_path):
    """The corpus's "adjusted" Zee copy (study date -2 days, new Study UID) keeps the SOP Instance and
    Irradiation Event UIDs: as sent, that is the same procedure re-filed, counted once (issue 18). With fresh
    SOP and event UIDs it is another procedure of the same patient, two days earlier."""
    from dosereg.rdsr.builder import rewrite_uids

    path = tmp_path / "zee-earlier-procedure.dcm"
    path.write_bytes(rewrite_uids((corpus_dir / ZEE_EARLIER).read_bytes()))
    return path


@pytest.mark.parametrize("order", [(ZEE, ZEE_EARLIER), (ZEE_EARLIER, ZEE)], ids=["later-first", "earlier-first"])
def test_artis_zee_cumulative_in_either_order(corpus_dir, import_file, order, tmp_path):
    for name in order:
        path = earlier_procedure(corpus_dir, tmp_path) if name == ZEE_EARLIER else corpus_dir / name
        assert import_file(path).status == DoseObject.STATUS_INGESTED
    later, earlier = Study.objects.order_by("-study_datetime")
    assert later.patient_id == earlier.patient_id
    assert later.study_datetime - earlier.study_datetime == __import__("datetime").timedelta(days=2)
    w_later, w_earlier = win(later), win(earlier)
    # the later study's window holds both; the earlier one's only itself
    assert w_later.procedure_count == 2 and w_earlier.procedure_count == 1
    assert w_later.kap_gy_cm2 == pytest.approx(later.dap_total_gy_cm2 + earlier.dap_total_gy_cm2)
    assert w_later.kap_gy_cm2 == pytest.approx(0.32)
    assert w_earlier.kap_gy_cm2 == pytest.approx(earlier.dap_total_gy_cm2)
    assert w_later.fluoro_time_s == pytest.approx(later.fluoro_time_total_s + earlier.fluoro_time_total_s)
    assert w_later.kar_max_gy == pytest.approx(later.dose_rp_max_plane_gy + earlier.dose_rp_max_plane_gy)
    assert [k["reference_point"] for k in w_later.kar] == ["DCM:113860"]  # one reference point, one plane
    assert w_later.ctdivol_max_mgy is None and w_later.dlp_mgy_cm is None  # not reported ≠ 0
    # all three windows exist for both anchors, plus "now"
    assert PatientExposureWindow.objects.filter(patient=later.patient, anchor_study__isnull=False).count() == 6
    assert PatientExposureWindow.objects.filter(patient=later.patient, anchor_study__isnull=True).count() == 3
    # the repeat-procedure rule (2 FGI procedures within 60 days) fires once, whatever the order
    assert list(Alert.objects.values_list("rule_key", flat=True)) == ["fgi-repeat-60d"]


def test_allura_316_srdl_alerts_one_case_and_one_email_per_recipient(
    corpus_dir, import_file, rso_users, smtp_server, django_capture_on_commit_callbacks
):
    obj = import_file(corpus_dir / ALLURA_316)
    study = Study.objects.get(pk=obj.study_id)
    assert study.dose_rp_max_plane_gy == pytest.approx(7.7, abs=0.05)
    assert study.dap_total_gy_cm2 == pytest.approx(469, abs=1)
    alerts = {(a.rule_key, a.level): a for a in Alert.objects.all()}
    srdl = alerts[("fgi-kar-srdl", "srdl")]
    assert srdl.severity == "high" and srdl.status == Alert.STATUS_OPEN
    assert srdl.value == pytest.approx(7.69, abs=0.01) and srdl.threshold == 5.0
    assert "does not imply that an injury will occur" in srdl.message
    assert srdl.detail["verification"] == "✔" and "NCRP" in srdl.detail["source"]
    assert srdl.detail["follow_up_suggested_due"]
    assert ("fgi-kar-first", "first") in alerts and ("fgi-kap-first", "first") in alerts
    assert ("fgi-kap-srdl", "srdl") not in alerts  # 469 < 500 Gy·cm²
    # escalation levels 4..7 Gy recorded, one e-mail for the highest
    subs = sorted(l for k, l in alerts if k == "fgi-kar-subsequent")
    assert subs == ["subsequent+1", "subsequent+2", "subsequent+3", "subsequent+4"]

    # one RSO case for the procedure holds every level; one e-mail per recipient, not one per rule or step
    from dosereg.cases.models import Case

    recipients = sorted(u.email for u in rso_users)
    case = Case.objects.get()
    assert case.kind == "procedure" and case.top_rule_key == "fgi-kar-srdl" and case.level_count == len(alerts)
    assert sorted(r for _, rcpts in smtp_server.envelopes for r in rcpts) == recipients
    body = smtp_server.to(recipients[0])[0].get_payload(decode=True).decode()
    assert "substantial radiation dose level" in body and "does not imply that an injury will occur" in body
    assert f"/alerts/{case.pk}/" in body and "://" in body and "Exam date: 2017-11-14" in body
    assert "dose-standards" not in body and "§" not in body
    notified_rules = {a.rule_key for a in alerts.values() if a.notified == "queued"}
    assert notified_rules == {"fgi-kar-srdl"}
    assert {a.notified for a in alerts.values() if a.rule_key != "fgi-kar-srdl"} == {"collapsed"}
    sent_before, alerts_before = len(smtp_server.messages), Alert.objects.count()

    # import again, re-ingest from the stored original, recompute, run the task: nothing new
    import_file(corpus_dir / ALLURA_316)
    from dosereg.pipeline.flow import objects_reprocess

    with django_capture_on_commit_callbacks(execute=True):
        objects_reprocess(inline=True)
    with django_capture_on_commit_callbacks(execute=True):
        patient_exposure_recompute(patient_id=study.patient_id)
        recompute_patient_exposure_task.delay(study.patient_id)
    assert len(smtp_server.messages) == sent_before
    assert Alert.objects.count() == alerts_before
    assert Alert.objects.filter(status=Alert.STATUS_OPEN).count() == alerts_before  # none withdrawn
    assert Notification.objects.count() == len(notified_rules) * len(recipients)
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
