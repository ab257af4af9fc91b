"""Issue 18 through the real processes: listener subprocess -> spool -> Redis -> Celery worker -> PostgreSQL.
A placeholder date west of UTC, over-length Patient IDs, doses sent as NaN/text, a report over the event
limit and a re-filed report: each ends ingested with its flag or quarantined with its reason, the worker's
follow-up work (exposure, alerts) runs for the poison-date patient, and the pages and the API answer."""
from __future__ import annotations

import pytest

from dosereg.registry.models import DoseObject, IrradiationEvent, Study
from tests.e2e.conftest import dcmtk, pg_url, redis_url, stack, wait_until  # noqa: F401 (fixtures)

from . import objects as O
from .conftest import association
from .test_ingest_bounds import fgi, rewrite, to_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]

SUCCESS = 0x0000


def test_bounded_values_and_identities_through_listener_redis_worker_postgresql(stack, tmp_path, client):
    from dosereg.exposure.models import Alert
    from dosereg.rdsr import builder as B
    from dosereg.web.services import user_create

    stack.env["INGEST_MAX_EVENTS"] = "40"
    stack.start_worker()
    stack.start_listener()

    poison = fgi("STK-POISON")
    poison.StudyDate, poison.StudyTime, poison.TimezoneOffsetFromUTC = "99991231", "230000", "-1400"
    nan = fgi("STK-NAN")
    O._set_numeric(nan, O.DAP, "NaN")
    O._set_numeric(nan, O.DAP_TOTAL, "lots")
    many = B.build_projection_rdsr(B.ProjectionRDSRSpec(
        events=[B.ProjectionEventSpec(dap_gy_cm2=0.1, dose_rp_gy=0.001, irradiation_duration_s=1.0) for _ in range(41)],
        patient_id="STK-MANY"))
    refile = to_bytes(fgi("STK-REFILE"))
    with association(stack.port, tmp_path / "send", calling="MODALITY1") as s:
        sent = {
            "poison": s.send("poison", to_bytes(poison)),
            "long-a": s.send("long-a", to_bytes(fgi("L" * 138 + "A"))),
            "long-b": s.send("long-b", to_bytes(fgi("L" * 138 + "B"))),
            "nan": s.send("nan", to_bytes(nan)),
            "many": s.send("many", B.to_bytes(many)),
            "refile-1": s.send("refile-1", refile),
        }
    assert all(r.status == SUCCESS for r in sent.values()), sent

    def settled(names):
        return DoseObject.objects.filter(sop_instance_uid__in=[sent[n].sop_uid for n in names]).exclude(
            status=DoseObject.STATUS_RECEIVED).count() == len(names)

    assert wait_until(lambda: settled(list(sent)), timeout=120), stack.logs()
    # the re-filed copy after the first is ingested (same SOP Instance UID and events, new Study Instance UID)
    with association(stack.port, tmp_path / "send2", calling="MODALITY1") as s:
        sent["refile-2"] = s.send("refile-2", rewrite(refile, StudyInstanceUID=O._uid("study")))
    assert sent["refile-2"].status == SUCCESS
    assert wait_until(lambda: DoseObject.objects.filter(sop_instance_uid=sent["refile-2"].sop_uid,
                                                        status=DoseObject.STATUS_INGESTED).count() == 2, timeout=60), stack.logs()

    def obj(name):
        return DoseObject.objects.filter(sop_instance_uid=sent[name].sop_uid).order_by("-pk").first()

    p = obj("poison")
    assert p.status == DoseObject.STATUS_INGESTED, p.quarantine_reason
    study = Study.objects.get(pk=p.study_id)
    assert study.study_datetime is None and any("implausible date" in f for f in study.flags)
    # the worker's follow-up ran for that patient: the 3.6 Gy procedure raised its alert
    assert wait_until(lambda: Alert.objects.filter(patient=study.patient, rule_key="fgi-kar-first").exists(),
                      timeout=60), stack.logs()
    for name in ("long-a", "long-b"):
        o = obj(name)
        assert o.status == DoseObject.STATUS_QUARANTINED and "more than the 64 of its VR (LO)" in o.quarantine_reason
    n = obj("nan")
    assert n.status == DoseObject.STATUS_INGESTED
    assert any("unreadable dose value: Dose Area Product 'NaN'" in f for f in Study.objects.get(pk=n.study_id).flags)
    m = obj("many")
    assert m.status == DoseObject.STATUS_QUARANTINED
    assert m.quarantine_reason.startswith("too many irradiation events: 41 in one object, more than the limit of 40")
    r = obj("refile-2")
    refiled = Study.objects.filter(patient=Study.objects.get(pk=r.study_id).patient)
    assert refiled.count() == 1 and refiled.get().event_count == 3
    assert IrradiationEvent.objects.filter(study__in=refiled).count() == 3

    rso = user_create(username="rso-stack", password="x-Secret-123456", role="rso")
    client.force_login(rso)
    for url in ("/patients/", f"/patients/{study.patient_id}/", f"/studies/{study.pk}/", "/api/v1/studies/",
                "/api/v1/patients/"):
        assert client.get(url).status_code == 200, url
    assert stack.listener.poll() is None and all(w.poll() is None for w in stack.workers), stack.logs()
