"""Issue 18 (values and identity): one object must not poison the registry, join two patients, be counted
twice or leave registry and object state inconsistent. Every test goes through the real ingest service
(``dose_file_import``: spool, register, extract, write) on PostgreSQL, with the on-commit follow-up work
(exposure recompute, alerts, e-mails) run as after a real ingest; the identity test goes through the real
listener (in-process, eager ingest)."""
from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.rdsr import builder as B
from dosereg.rdsr.extract import extract_bytes
from dosereg.registry.models import DoseObject, IrradiationEvent, Patient, Study
from dosereg.pipeline.flow import file_import as dose_file_import
from dosereg.pipeline.flow import objects_reprocess as dose_objects_reprocess

from . import objects as O
from .conftest import association

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::UserWarning")]

RECENT = (timezone.now() - dt.timedelta(days=10)).replace(tzinfo=None, microsecond=0, second=0)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


@pytest.fixture
def rso(db):
    from dosereg.web.services import user_create

    user = user_create(username="rso-bounds", password="x-Secret-123456", role="rso")
    user.email = "rso-bounds@hospital.test"
    user.save(update_fields=["email"])
    return user


@pytest.fixture
def ingest(spool, tmp_path, django_capture_on_commit_callbacks):
    """ingest(bytes) -> DoseObject, through the registry pipeline with its on-commit work executed."""
    counter = iter(range(10_000))

    def run(data: bytes) -> DoseObject:
        path = tmp_path / f"in-{next(counter):04d}.dcm"
        path.write_bytes(data)
        with django_capture_on_commit_callbacks(execute=True):
            obj, _ = dose_file_import(path=path, spool=spool)
        obj.refresh_from_db()
        return obj

    return run


def fgi(patient_id: str, *, kar_gy: float = 3.6, name: str = "Test^Patient", **overrides) -> pydicom.Dataset:
    """A fluoroscopy RDSR whose Ka,r total is ``kar_gy`` (3 events): above the 3 Gy first notification."""
    events = [B.ProjectionEventSpec(dap_gy_cm2=50.0, dose_rp_gy=kar_gy / 3, kvp=80.0, tube_current_ma=10.0,
                                    irradiation_duration_s=60.0) for _ in range(3)]
    fields = dict(patient_id=patient_id, patient_name=name, study_datetime=RECENT, modality="XA",
                  sop_instance_uid=O._uid("sop"), study_instance_uid=O._uid("study"))
    fields.update(overrides)
    return B.build_projection_rdsr(B.ProjectionRDSRSpec(events=events, **fields))


def to_bytes(ds: pydicom.Dataset) -> bytes:
    return B.to_bytes(ds)


def rewrite(data: bytes, **attrs) -> bytes:
    """The same object with some header attributes changed (as a PACS re-filing or a correction would)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for k, v in attrs.items():
        setattr(ds, k, v)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def open_alerts(patient: Patient) -> list:
    from dosereg.exposure.models import Alert

    return list(Alert.objects.filter(patient=patient).exclude(status=Alert.STATUS_WITHDRAWN).order_by("rule_key"))


# ---------------------------------------------------------------------------------------------------------
# 1. bounded values at the door
# ---------------------------------------------------------------------------------------------------------
def test_placeholder_date_west_of_utc_is_stored_null_and_the_patient_stays_usable(ingest, rso, client, tmp_path):
    """StudyDate 99991231 23:00 at -14:00 is year 10000 in UTC (PostgreSQL stores it, Python cannot read it):
    stored null and flagged; the patient's recompute and alerts work like an identical patient's with an
    ordinary date; summaries refresh; pages, API and exports answer."""
    from dosereg.protocols.services import summaries_refresh
    from rest_framework.authtoken.models import Token

    control = ingest(to_bytes(fgi("POISON-CONTROL")))
    poison_ds = fgi("POISON-1")
    poison_ds.StudyDate, poison_ds.StudyTime, poison_ds.TimezoneOffsetFromUTC = "99991231", "230000", "-1400"
    poison = ingest(to_bytes(poison_ds))

    assert poison.status == DoseObject.STATUS_INGESTED, poison.quarantine_reason
    study = Study.objects.get(pk=poison.study_id)  # reads back (a year-10000 value raised here before)
    assert study.study_datetime is None
    assert any("implausible date: Study Date/Time 9999-12-31T23:00:00-14:00 is out of range" in f
               or "Study Date/Time 9999-12-31T23:00:00-14:00 is in the future" in f for f in study.flags), study.flags
    assert study.dose_rp_max_plane_gy == pytest.approx(3.6)
    # the patient's recompute works and raises what an identical patient with an ordinary date gets
    assert {a.rule_key for a in open_alerts(study.patient)} >= {"fgi-kar-first"}
    control_keys = {a.rule_key for a in open_alerts(Study.objects.get(pk=control.study_id).patient)}
    assert {a.rule_key for a in open_alerts(study.patient)} & {"fgi-kar-first"} == control_keys & {"fgi-kar-first"}
    # every study row reads back, summaries refresh without a failure
    assert len(list(Study.objects.all())) == 2
    assert "failed" not in summaries_refresh()

    client.force_login(rso)
    for url in ("/patients/", f"/patients/{study.patient_id}/", f"/studies/{study.pk}/", "/dashboard/"):
        r = client.get(url)
        assert r.status_code == 200, url
    assert "implausible date" in client.get(f"/studies/{study.pk}/").content.decode()
    token, _ = Token.objects.get_or_create(user=rso)
    for url in ("/api/v1/studies/", "/api/v1/patients/", "/api/v1/events/", f"/api/v1/studies/{study.pk}/events/"):
        r = client.get(url, HTTP_AUTHORIZATION=f"Token {token.key}")
        assert r.status_code == 200, (url, r.content[:300])

    out = tmp_path / "export.jsonl"
    call_command("export_registry", out=str(out), stdout=io.StringIO())
    assert sum(1 for line in out.read_text().splitlines() if json.loads(line).get("t") == "study") == 2
    report = io.StringIO()
    call_command("exposure_report", patient="POISON-1", json=True, stdout=report)
    assert json.loads(report.getvalue())["studies"][0]["datetime"] is None


def test_registry_bounds_datetimes_itself_after_time_zone_handling(settings):
    """The services' own bound (whatever the extractor returns): a naive 9999-12-31 23:00 on a server west of
    UTC, or any value outside [1895, now + 1 day] in UTC, becomes null with a flag."""
    from dosereg.rdsr import records as R
    from dosereg.registry.values import _bounded

    settings.TIME_ZONE = "America/Los_Angeles"
    doc = R.DoseDocument(sop_instance_uid="1.2.3", sop_class_uid="1.2", source_kind=R.RDSR)
    assert _bounded(dt.datetime(9999, 12, 31, 23, 0), doc, "Study Date/Time") is None
    west = dt.timezone(-dt.timedelta(hours=14))
    assert _bounded(dt.datetime(9999, 12, 31, 23, 0, tzinfo=west), doc, "Study Date/Time") is None
    assert _bounded(dt.datetime(1894, 12, 31, 23, 0, tzinfo=dt.timezone.utc), doc, "Study Date/Time") is None
    assert len(doc.flags) == 3 and all("stored as null" in f for f in doc.flags)
    ok = _bounded(RECENT, doc, "Study Date/Time")
    assert ok is not None and timezone.is_aware(ok)


def test_a_stored_year_10000_value_does_not_stop_the_export_and_is_repaired_by_the_migration(ingest, tmp_path):
    """A database written before the bound holds year-10000 values: export_registry exports those rows with the
    value null and records each (ops TaskFailure) instead of failing; migration 0005 nulls them."""
    import importlib

    from dosereg.ops.models import TaskFailure

    obj = ingest(to_bytes(fgi("POISON-OLD")))
    with connection.cursor() as cur:
        cur.execute("UPDATE registry_study SET study_datetime = '10000-01-01 13:00:00+00' WHERE id = %s", [obj.study_id])
        cur.execute("UPDATE registry_irradiationevent SET datetime = '10000-01-01 13:00:00+00' WHERE study_id = %s",
                    [obj.study_id])
    with pytest.raises(Exception):
        list(Study.objects.filter(pk=obj.study_id).values_list("study_datetime", flat=True))
    out = tmp_path / "export.jsonl"
    stdout = io.StringIO()
    call_command("export_registry", out=str(out), stdout=stdout)
    records = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    study = next(r for r in records if r["t"] == "study")
    assert study["f"]["study_datetime"] is None and study["f"]["event_count"] == 3
    assert [r["f"]["datetime"] for r in records if r["t"] == "event"] == [None, None, None]
    assert json.loads(stdout.getvalue())["records"]["problems"] == 4
    assert set(TaskFailure.objects.filter(task_name="registry export").values_list("task_id", flat=True)) == {
        f"registry.Study {obj.study_id}",
        *(f"registry.IrradiationEvent {pk}" for pk in IrradiationEvent.objects.filter(study_id=obj.study_id).values_list("pk", flat=True))}
    migration = importlib.import_module("dosereg.registry.migrations.0005_ingest_flags").Migration
    with connection.cursor() as cur:
        for sql in migration.operations[0].sql:
            cur.execute(sql)
    assert Study.objects.get(pk=obj.study_id).study_datetime is None
    assert set(IrradiationEvent.objects.filter(study_id=obj.study_id).values_list("datetime", flat=True)) == {None}


@pytest.mark.parametrize("sent", ["20251399", "ABCDEFGH"])
def test_invalid_study_date_is_flagged_not_silently_nulled(ingest, sent):
    ds = fgi(f"BADDATE-{sent}")
    ds.StudyDate = sent
    obj = ingest(to_bytes(ds))
    assert obj.status == DoseObject.STATUS_INGESTED
    flag = f"invalid Study Date {sent!r} (not a valid YYYYMMDD date); stored as null"
    assert flag in obj.flags and flag in obj.warnings
    assert flag in Study.objects.get(pk=obj.study_id).flags


def test_doses_sent_as_nan_inf_or_text_flag_the_study(ingest, rso, client):
    """850 Gy.cm2 sent as NaN is not "no dose": the object and its study carry the reason, shown on the pages;
    the readable values are kept; a negative dose is still quarantined."""
    ds = fgi("NANDOSE-1")
    O._set_numeric(ds, O.DAP, "NaN")
    O._set_numeric(ds, O.DOSE_RP, "inf", index=1)
    O._set_numeric(ds, O.DAP_TOTAL, "lots")
    obj = ingest(to_bytes(ds))
    assert obj.status == DoseObject.STATUS_INGESTED
    study = Study.objects.get(pk=obj.study_id)
    for text in ("Dose Area Product 'NaN'", "Dose (RP) 'inf'", "Dose Area Product Total 'lots'"):
        assert any(f.startswith("unreadable dose value:") and text in f for f in study.flags), (text, study.flags)
    events = list(IrradiationEvent.objects.filter(study=study).order_by("id"))
    assert [e.dap_gy_cm2 for e in events] == [None, pytest.approx(50.0), pytest.approx(50.0)]
    client.force_login(rso)
    assert "unreadable dose value" in client.get(f"/studies/{study.pk}/").content.decode()

    ds = fgi("NANDOSE-2")
    O._set_numeric(ds, O.DOSE_RP, "-1.2")
    assert ingest(to_bytes(ds)).status == DoseObject.STATUS_QUARANTINED


# ---------------------------------------------------------------------------------------------------------
# 2. identity keys are never truncated
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)  # the listener's threads write through their own connections
def test_over_length_patient_ids_are_quarantined_and_names_are_compared(tmp_path, settings):
    """Two 139-character Patient IDs differing in the last character were one patient: beyond the 64
    characters of LO they are quarantined with the reason (through the real listener); a 64-character ID is
    kept whole; a different name under the same ID is flagged, an equivalent spelling is not."""
    from dicom_listener.server import start_listener
    from dosereg.celery import app
    from tests.e2e.conftest import free_port

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_MIN_FREE_BYTES = 0
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    port = free_port()
    server, _ = start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool", allowed=["BADSCU"])
    base = "P" * 138
    try:
        with association(port, tmp_path / "send") as s:
            long_a = s.send("long-a", to_bytes(fgi(base + "A", name="Alpha^Anna")))
            long_b = s.send("long-b", to_bytes(fgi(base + "B", name="Beta^Bert")))
            exact = s.send("exact-64", to_bytes(fgi("Q" * 63 + "1", name="Gamma^Gus")))
            exact2 = s.send("exact-64b", to_bytes(fgi("Q" * 63 + "2", name="Delta^Dora")))
            first = s.send("name-1", to_bytes(fgi("SAMEID-1", name="Doe^Jane")))
            same = s.send("name-same", to_bytes(fgi("SAMEID-1", name="DOE^JANE^^")))
            other = s.send("name-other", to_bytes(fgi("SAMEID-1", name="Roe^Richard")))
    finally:
        server.shutdown()
        app.conf.task_always_eager = eager
    for sent in (long_a, long_b):
        assert sent.status == 0x0000
        obj = DoseObject.objects.get(sop_instance_uid=sent.sop_uid)
        assert obj.status == DoseObject.STATUS_QUARANTINED
        assert "Patient ID (0010,0020) has 139 characters, more than the 64 of its VR (LO)" in obj.quarantine_reason
    assert not Patient.objects.filter(patient_id__startswith="PPPP").exists()
    pa = Study.objects.get(dose_objects__sop_instance_uid=exact.sop_uid).patient
    pb = Study.objects.get(dose_objects__sop_instance_uid=exact2.sop_uid).patient
    assert pa.patient_id == "Q" * 63 + "1" and pb.patient_id == "Q" * 63 + "2" and pa != pb
    objs = {s.sop_uid: DoseObject.objects.get(sop_instance_uid=s.sop_uid) for s in (first, same, other)}
    assert len({o.study.patient_id for o in objs.values()}) == 1  # linked by ID ...
    assert not any("Patient's Name differs" in f for f in objs[first.sop_uid].flags + objs[same.sop_uid].flags)
    flagged = [f for f in objs[other.sop_uid].flags if "Patient's Name differs" in f]
    assert flagged and "'Roe^Richard' sent, 'Doe^Jane' registered" in flagged[0]  # ... but not silently
    assert flagged[0] in objs[other.sop_uid].study.flags


# ---------------------------------------------------------------------------------------------------------
# 3. re-filed and corrected reports
# ---------------------------------------------------------------------------------------------------------
def test_report_refiled_under_a_new_study_uid_is_one_procedure(ingest, rso, django_capture_on_commit_callbacks):
    """Same SOP Instance UID and Irradiation Event UIDs under a new Study Instance UID: the report stays with the
    study it was first filed under (flagged with the new UID), nothing is counted twice, no false cumulative alert
    (2 x 3.6 Gy would cross the 5 Gy SRDL), no alert raised or e-mailed again; a reprocess keeps it so."""
    from dosereg.notifications.models import Notification

    data = to_bytes(fgi("REFILE-1"))
    first = ingest(data)
    patient = Study.objects.get(pk=first.study_id).patient
    before = {a.rule_key for a in open_alerts(patient)}
    assert "fgi-kar-first" in before
    new_uid = O._uid("study")
    again = ingest(rewrite(data, StudyInstanceUID=new_uid))
    assert again.status == DoseObject.STATUS_INGESTED and again.pk != first.pk
    studies = list(Study.objects.filter(patient=patient))
    assert len(studies) == 1 and studies[0].pk == first.study_id
    assert studies[0].event_count == 3 and studies[0].dose_rp_max_plane_gy == pytest.approx(3.6)
    assert IrradiationEvent.objects.filter(study__patient=patient).count() == 3
    first.refresh_from_db()
    assert first.superseded_by_id == again.pk
    assert any(f.startswith(f"re-filed: this report (same SOP Instance UID) was sent again under Study Instance UID {new_uid}")
               for f in studies[0].flags)
    assert {a.rule_key for a in open_alerts(patient)} == before  # no cumulative SRDL for a doubled 7.2 Gy
    from dosereg.exposure.models import Alert

    alerts, mails = Alert.objects.count(), Notification.objects.count()
    with django_capture_on_commit_callbacks(execute=True):  # recompute after each re-ingest, as in production
        dose_objects_reprocess(inline=True)
    assert list(Study.objects.filter(patient=patient)) == studies and Study.objects.get().event_count == 3
    assert (Alert.objects.count(), Notification.objects.count()) == (alerts, mails)


def test_events_refiled_in_another_report_under_another_study_are_not_counted_twice(ingest):
    """A different SOP Instance UID carrying the same Irradiation Event UIDs, under a new Study UID that
    already holds another report: the earlier copy is replaced there, nothing is counted twice."""
    data = to_bytes(fgi("REFILE-2"))
    first = ingest(data)
    other_study = O._uid("study")
    ingest(to_bytes(fgi("REFILE-2", kar_gy=0.3, study_instance_uid=other_study)))
    copy = ingest(rewrite(data, StudyInstanceUID=other_study, SOPInstanceUID=O._uid("sop")))
    assert copy.status == DoseObject.STATUS_INGESTED
    patient = Patient.objects.get(patient_id="REFILE-2")
    assert not Study.objects.filter(pk=first.study_id).exists()  # its only report moved: no empty procedure left
    study = Study.objects.get(study_instance_uid=other_study)
    assert study.event_count == 6  # 3 of the small report + the 3 re-filed ones, once
    assert IrradiationEvent.objects.filter(study__patient=patient).count() == 6
    assert any("re-filed: replaces report" in f for f in study.flags)


def test_correction_to_another_patient_sends_a_patient_corrected_notice_per_moved_alert(ingest, rso):
    from dosereg.exposure.models import Alert, AlertEvent
    from dosereg.notifications.models import Notification

    data = to_bytes(fgi("WRONG-PAT", name="Wrong^Person"))
    first = ingest(data)
    moved = list(Alert.objects.filter(study_id=first.study_id))
    case_ids = {a.case_link.case_id for a in moved}  # the alerts' RSO case was e-mailed (one e-mail per case level)
    assert moved and any(Notification.objects.filter(dedupe_key__startswith=f"case:{c}:").exists() for c in case_ids)
    ingest(rewrite(data, PatientID="RIGHT-PAT", PatientName="Right^Person"))
    study = Study.objects.get(pk=first.study_id)
    assert study.patient.patient_id == "RIGHT-PAT"
    for a in moved:
        notices = Notification.objects.filter(dedupe_key__startswith=f"exposure-alert:{a.pk}:patient-corrected:")
        assert [n.recipient for n in notices] == ["rso-bounds@hospital.test"], a.rule_key
        n = notices.get()
        assert n.subject.startswith("[dosereg] patient corrected:")
        assert "from patient WRONG-PAT to patient RIGHT-PAT" in n.body
        assert AlertEvent.objects.filter(alert=a, action="patient_corrected").exists()
    # the alerts follow the corrected patient
    assert {a.rule_key for a in open_alerts(study.patient)} >= {"fgi-kar-first"}
    assert not open_alerts(Patient.objects.get(patient_id="WRONG-PAT"))


def test_reprocess_with_a_missing_original_keeps_the_last_good_extraction(ingest):
    """Registry and object state stay consistent: the object stays ingested (and counted) with a warning,
    instead of quarantined while its events and totals stay counted."""
    obj = ingest(to_bytes(fgi("MISSING-1")))
    Path(obj.path).unlink()
    dose_objects_reprocess(queryset=DoseObject.objects.filter(pk=obj.pk), inline=True)
    obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_INGESTED
    assert any(w.startswith("original missing at reprocess") for w in obj.warnings)
    study = Study.objects.get(pk=obj.study_id)
    assert study.event_count == 3 and study.dose_rp_max_plane_gy == pytest.approx(3.6)
    assert IrradiationEvent.objects.filter(dose_object=obj).count() == 3


# ---------------------------------------------------------------------------------------------------------
# 4. bounded ingest memory
# ---------------------------------------------------------------------------------------------------------
def test_more_events_than_the_limit_are_quarantined_with_the_reason(ingest, settings):
    settings.INGEST_MAX_EVENTS = 40
    events = [B.ProjectionEventSpec(dap_gy_cm2=0.1, dose_rp_gy=0.001, irradiation_duration_s=1.0) for _ in range(41)]
    big = B.to_bytes(B.build_projection_rdsr(B.ProjectionRDSRSpec(events=events, patient_id="MANYEV-1",
                                                                   study_datetime=RECENT)))
    obj = ingest(big)
    assert obj.status == DoseObject.STATUS_QUARANTINED
    assert obj.quarantine_reason.startswith("too many irradiation events: 41 in one object, more than the limit of 40")
    assert not Study.objects.filter(patient__patient_id="MANYEV-1").exists()
    ok = ingest(B.to_bytes(B.build_projection_rdsr(B.ProjectionRDSRSpec(events=events[:40], patient_id="MANYEV-2",
                                                                       study_datetime=RECENT))))
    assert ok.status == DoseObject.STATUS_INGESTED
    assert IrradiationEvent.objects.filter(dose_object=ok).count() == 40
    assert len(extract_bytes(big).events) == 41  # the parser itself has no limit unless asked


def test_a_non_finite_dose_in_a_stored_row_does_not_stop_the_protocol_summaries(ingest):
    """PostgreSQL stores NaN and infinity (e.g. from an import file written by an older version): such a value is
    not a dose and is left out of the summaries; the refresh neither fails nor freezes the other buckets."""
    from dosereg.protocols.models import ProtocolSummary, SummaryBucket
    from dosereg.protocols.services import summaries_refresh

    a = ingest(to_bytes(fgi("SUMNAN-1", kar_gy=0.3, manufacturer="NaNCo", station_name="NAN1")))
    b = ingest(to_bytes(fgi("SUMNAN-2", kar_gy=0.3, manufacturer="OkCo", station_name="OK1")))
    Study.objects.filter(pk=a.study_id).update(dap_total_gy_cm2=float("nan"), dose_rp_max_plane_gy=float("inf"))
    res = summaries_refresh()
    assert "failed" not in res and res["dirty_left"] == 0, res
    for obj in (a, b):
        study = Study.objects.get(pk=obj.study_id)
        assert SummaryBucket.objects.get(device_key=study.device_id).n_studies == 1
    assert ProtocolSummary.objects.filter(bucket__device_key=Study.objects.get(pk=b.study_id).device_id).exists()


@pytest.mark.parametrize("sent", ["NaN", "inf", "lots"])
def test_image_header_dose_sent_as_nan_inf_or_text_flags_the_study(ingest, sent):
    from pydicom.dataelem import RawDataElement

    ds = B.build_dx_image(B.DXImageSpec(dap_dgy_cm2=8.5, patient_id=f"HDRNAN-{sent}"))
    raw = sent.encode() + b" " * (len(sent) & 1)
    ds[0x0018115E] = RawDataElement(0x0018115E, "DS", len(raw), raw, 0, False, True)
    obj = ingest(B.to_bytes(ds))
    assert obj.status == DoseObject.STATUS_INGESTED
    flag = f"unreadable dose value: Image and Fluoroscopy Area Dose Product (0018,115E) {sent!r}"
    assert any(f.startswith(flag) for f in Study.objects.get(pk=obj.study_id).flags)
    assert IrradiationEvent.objects.get(dose_object=obj).dap_gy_cm2 is None


def test_a_report_of_another_patient_under_a_study_uid_in_use_is_quarantined_not_joined(ingest):
    """Found by the hostile corpus (tests/hostile): two patients' reports under one placeholder Study Instance
    UID. Filing the second under the study moved the first patient's report (and dose) to the second patient.
    Now the second is quarantined with the reason; a correction (same SOP Instance UID) still moves the study."""
    placeholder = "1.2.3.4"
    first = ingest(to_bytes(fgi("COLLIDE-A", name="Alpha^Ann", study_instance_uid=placeholder)))
    assert first.status == DoseObject.STATUS_INGESTED
    second = ingest(to_bytes(fgi("COLLIDE-B", name="Beta^Bob", study_instance_uid=placeholder)))
    assert second.status == DoseObject.STATUS_QUARANTINED
    assert "already the study of another patient" in second.quarantine_reason
    study = Study.objects.get(study_instance_uid=placeholder)
    assert study.patient.patient_id == "COLLIDE-A"
    assert IrradiationEvent.objects.filter(study=study).count() == 3
    assert not Study.objects.filter(patient__patient_id="COLLIDE-B").exists()
    # the same patient again under that UID (a cumulative report) is still filed with the study
    third = ingest(to_bytes(fgi("COLLIDE-A", name="Alpha^Ann", study_instance_uid=placeholder)))
    assert third.status == DoseObject.STATUS_INGESTED and third.study_id == study.pk
    # a report without a Patient ID under that UID neither joins the procedure nor takes the study from its patient
    nobody = ingest(to_bytes(fgi("", name="", study_instance_uid=placeholder)))
    assert nobody.status == DoseObject.STATUS_QUARANTINED and "names no patient" in nobody.quarantine_reason
    study.refresh_from_db()
    assert study.patient.patient_id == "COLLIDE-A"


@pytest.mark.parametrize("second_report", [False, True])
def test_events_repeating_an_irradiation_event_uid_in_one_report_are_kept_once_each_and_flagged(ingest, second_report):
    """A report whose events repeat an Irradiation Event UID (a vendor or middleware defect) is ingested, not failed
    over and over by the unique (study, event UID) constraint; also when its study already holds another report.
    An exact repeat is counted once; an event with other values under a used UID is kept as its own event."""
    uid, image = O._uid("event"), O._uid("image")
    when = RECENT + dt.timedelta(minutes=1)
    same = dict(dap_gy_cm2=10.0, dose_rp_gy=0.1, kvp=80.0, tube_current_ma=10.0, irradiation_duration_s=60.0,
                irradiation_event_uid=uid, datetime=when, image_sop_instance_uid=image)
    events = [B.ProjectionEventSpec(**same), B.ProjectionEventSpec(**same),  # the same event listed twice
              B.ProjectionEventSpec(**{**same, "dap_gy_cm2": 30.0, "dose_rp_gy": 0.3}),  # another one, same UID
              B.ProjectionEventSpec(dap_gy_cm2=5.0, dose_rp_gy=0.05)]
    study_uid = O._uid("study")
    patient_id = f"DUPEV-{int(second_report) + 1}"
    if second_report:
        ingest(to_bytes(fgi(patient_id, kar_gy=0.3, study_instance_uid=study_uid)))
    ds = B.build_projection_rdsr(B.ProjectionRDSRSpec(
        events=events, patient_id=patient_id, patient_name="Test^Patient", study_datetime=RECENT, modality="XA",
        sop_instance_uid=O._uid("sop"), study_instance_uid=study_uid))
    data = to_bytes(ds)
    obj = ingest(data)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    rows = {e.irradiation_event_uid: e.dap_gy_cm2 for e in IrradiationEvent.objects.filter(dose_object=obj)}
    assert len(rows) == 3 and rows[uid] == pytest.approx(10.0) and rows[f"{uid}#2"] == pytest.approx(30.0)
    assert obj.study.event_count == 3 + (3 if second_report else 0)  # the study's totals count the repeat once
    flags = " ".join(obj.study.flags)
    assert "repeated in this report with the same values" in flags and "kept as separate events" in flags
    # the same report sent again under another SOP Instance UID: recognised by its event UIDs, not counted twice
    again = ingest(rewrite(data, SOPInstanceUID=O._uid("sop")))
    assert again.status == DoseObject.STATUS_INGESTED
    assert IrradiationEvent.objects.filter(study_id=obj.study_id).count() == 3 + (3 if second_report else 0)
