"""Patient identity: merge/unmerge keep cumulative windows and alerts right; HMAC pseudonymisation links studies."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from dosereg.exposure.identity import MergeError
from dosereg.exposure.models import Alert, PatientExposureWindow, PatientMerge
from dosereg.pipeline.flow import patient_merge, patient_unmerge
from dosereg.registry.models import Patient, Study
from tests.exposure.builders import rf_rdsr

pytestmark = pytest.mark.django_db
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def latest_window(patient, days=84):
    return (PatientExposureWindow.objects.filter(patient=patient, window_days=days, anchor_study__isnull=False)
            .order_by("-end").first())


def test_merge_and_unmerge_restore(tmp_path, import_file, rso_users, smtp_server, django_capture_on_commit_callbacks):
    import_file(rf_rdsr(tmp_path, when=D0, kar=3.0, kap=50, patient_id="EXP-A"))
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=7), kar=3.0, kap=50, patient_id="EXP-B"))
    a, b = Patient.objects.get(patient_id="EXP-A"), Patient.objects.get(patient_id="EXP-B")
    assert latest_window(a).kar_max_gy == pytest.approx(3.0) and latest_window(b).kar_max_gy == pytest.approx(3.0)
    b_first = Alert.objects.get(patient=b, rule_key="fgi-kar-first")
    assert not Alert.objects.filter(rule_key__startswith="cum-").exists()

    with django_capture_on_commit_callbacks(execute=True):
        patient_merge(source_id=b.pk, target_id=a.pk, user=rso_users[0], note="RIS merge")
    b.refresh_from_db()
    assert b.merged_into_id == a.pk
    assert Study.objects.filter(patient=b).count() == 1  # studies are not re-pointed
    assert latest_window(a).kar_max_gy == pytest.approx(6.0) and latest_window(a).procedure_count == 2
    assert not PatientExposureWindow.objects.filter(patient=b).exists()
    cum = Alert.objects.get(rule_key="cum-kar-12w-srdl")
    assert cum.patient_id == a.pk and cum.status == Alert.STATUS_OPEN
    b_first.refresh_from_db()
    assert b_first.patient_id == a.pk and b_first.status == Alert.STATUS_OPEN  # follows the surviving record

    # a study for patient ID B while merged is linked to the survivor ...
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=9), kar=0.5, kap=5, patient_id="EXP-B"))
    during = Study.objects.order_by("-study_datetime").first()
    assert during.patient_id == a.pk
    with pytest.raises(MergeError):
        patient_merge(source_id=a.pk, target_id=b.pk)  # cycle
    mails = len(smtp_server.messages)

    with django_capture_on_commit_callbacks(execute=True):
        merge = patient_unmerge(patient_id=b.pk, user=rso_users[0])
    assert merge.unmerged_at and PatientMerge.objects.get().unmerged_by == rso_users[0]
    b.refresh_from_db()
    assert b.merged_into_id is None
    # ... and goes back to B on unmerge (re-ingested from its stored original)
    during.refresh_from_db()
    assert during.patient_id == b.pk
    assert latest_window(a).kar_max_gy == pytest.approx(3.0) and latest_window(a).procedure_count == 1
    assert latest_window(b).kar_max_gy == pytest.approx(3.5) and latest_window(b).procedure_count == 2
    cum.refresh_from_db()
    assert cum.status == Alert.STATUS_WITHDRAWN  # history kept
    b_first.refresh_from_db()
    assert b_first.patient_id == b.pk and b_first.status == Alert.STATUS_OPEN
    # nothing re-sent; the only new e-mails are B's own new cumulative crossing (3.0 + 0.5 Gy in 12 weeks)
    new = {" ".join(m["Subject"].split()) for m in smtp_server.messages[mails:]}
    assert len(new) == 1 and new.pop().startswith(
        "[dosereg] Patient cumulative: Cumulative Ka,r (12 weeks) first notification: 3.5 Gy in 84 days ≥ 3 Gy")
    assert Alert.objects.get(rule_key="cum-kar-12w-first", patient=b).status == Alert.STATUS_OPEN


def test_pseudonymisation(settings, tmp_path, import_file):
    settings.PSEUDONYMISE_PATIENTS = True
    settings.PSEUDONYM_SECRET = "s3cret"
    import_file(rf_rdsr(tmp_path, when=D0, kar=2.0, kap=50, patient_id="CLEAR-123", issuer="HOSP", birth_date=dt.date(1980, 6, 15)))
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=3), kar=2.0, kap=50, patient_id="CLEAR-123", issuer="HOSP"))
    (p,) = Patient.objects.all()
    expected = hmac.new(b"s3cret", b"HOSP|CLEAR-123", hashlib.sha256).hexdigest()
    assert p.patient_id == expected and p.pseudonymised
    assert "CLEAR-123" not in p.patient_id and p.name == ""
    assert p.birth_date == dt.date(1980, 1, 1)  # year only
    assert latest_window(p).kar_max_gy == pytest.approx(4.0)  # still linked: cumulative works
    # a different secret gives a different, unlinkable pseudonym
    settings.PSEUDONYM_SECRET = "other"
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=4), kar=0.1, kap=1, patient_id="CLEAR-123", issuer="HOSP"))
    assert Patient.objects.count() == 2
