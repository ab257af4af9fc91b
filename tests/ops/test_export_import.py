"""export_registry -> flush -> import_registry reproduces the registry (natural keys, not primary keys)."""
from __future__ import annotations

import gzip
import json
from io import StringIO

import pytest
from django.core.management import call_command

from dicom_listener.spool import Spool
from dosereg.registry.models import (
    Device,
    DeviceIdentifier,
    DoseObject,
    IrradiationEvent,
    MRExam,
    Participant,
    Patient,
    PlaneTotal,
    Study,
)
from dosereg.registry.selectors import registry_stats
from dosereg.pipeline.flow import file_import

pytestmark = pytest.mark.django_db(transaction=True)

TOTALS = ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s", "dlp_total_mgy_cm", "ctdivol_max_mgy",
          "event_count", "has_ionising_dose", "procedure_modality", "study_datetime")


def snapshot() -> dict:
    def okey(o):
        return (o.sop_instance_uid, o.sha256) if o else None
    return {
        "stats": registry_stats(),
        "totals": {s.study_instance_uid: tuple(getattr(s, f) for f in TOTALS) + (
            (s.patient.issuer, s.patient.patient_id) if s.patient else None,) for s in Study.objects.select_related("patient")},
        "objects": sorted(
            (o.sop_instance_uid, o.sha256, o.status, o.path, o.study.study_instance_uid if o.study else None,
             okey(o.superseded_by), o.received_at.isoformat(), o.dlp_total_mgy_cm, json.dumps(o.warnings))
            for o in DoseObject.objects.select_related("study", "superseded_by")),
        "events": sorted(
            (e.study.study_instance_uid, e.irradiation_event_uid, e.dose_object.sop_instance_uid, e.dap_gy_cm2,
             e.dose_rp_gy, e.ctdivol_mgy, e.dlp_mgy_cm, e.kvp, json.dumps(e.extra, sort_keys=True),
             e.datetime.isoformat() if e.datetime else None)
            for e in IrradiationEvent.objects.select_related("study", "dose_object")),
        "planes": sorted((p.study.study_instance_uid, p.dose_object.sop_instance_uid, p.plane, p.dap_total_gy_cm2,
                          p.dose_rp_total_gy) for p in PlaneTotal.objects.select_related("study", "dose_object")),
        "participants": sorted((p.study.study_instance_uid, p.name, p.role) for p in Participant.objects.select_related("study")),
        "mr": MRExam.objects.count(),
        "devices": sorted((d.manufacturer, d.model, d.serial_number, d.station_name, d.first_seen.isoformat(),
                           tuple(sorted(d.identifiers.values_list("kind", "value")))) for d in Device.objects.all()),
        "patients": sorted((p.issuer, p.patient_id, p.name, p.sex, str(p.birth_date)) for p in Patient.objects.all()),
        # the device identity each study arrived with (registry.DeviceIdentity), and the device that holds it
        "identities": sorted((s.study_instance_uid, s.received_identity.manufacturer, s.received_identity.serial_number,
                              s.received_identity.station_name, s.received_identity.device.serial_number)
                             for s in Study.objects.select_related("received_identity__device")
                             if s.received_identity_id),
    }


def test_round_trip_on_the_corpus(corpus_files, tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    spool = Spool(tmp_path / "spool")
    for f in corpus_files:
        file_import(path=f, spool=spool)
    before = snapshot()
    assert before["stats"]["studies"] > 10 and before["events"]

    out = tmp_path / "registry.jsonl.gz"
    buf = StringIO()
    call_command("export_registry", out=str(out), stdout=buf)
    counts = json.loads(buf.getvalue())["records"]
    assert counts["object"] == len(corpus_files)
    with gzip.open(out, "rt") as fh:
        header = json.loads(fh.readline())
        first = json.loads(fh.readline())
    assert header["format"] == "dosereg-registry" and "id" not in first["f"]

    call_command("flush", interactive=False, verbosity=0)
    assert registry_stats()["studies"] == 0 and not DeviceIdentifier.objects.exists()

    buf = StringIO()
    call_command("import_registry", str(out), stdout=buf)
    result = json.loads(buf.getvalue())
    assert result["created"]["object"] == len(corpus_files)
    after = snapshot()
    for key in before:
        assert after[key] == before[key], key

    # importing the same file again changes nothing
    buf = StringIO()
    call_command("import_registry", str(out), stdout=buf)
    again = json.loads(buf.getvalue())
    assert again["created"] == {}
    assert snapshot() == before


def test_plain_jsonl_and_bad_file(tmp_path, corpus_files, settings):
    from django.core.management.base import CommandError

    settings.CELERY_TASK_ALWAYS_EAGER = True
    spool = Spool(tmp_path / "spool")
    file_import(path=next(f for f in corpus_files if "canon_cxdi_DX.dcm" in f.name), spool=spool)
    out = tmp_path / "r.jsonl"
    call_command("export_registry", out=str(out), stdout=StringIO())
    assert out.read_text().splitlines()[0].startswith('{"format": "dosereg-registry"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": 1}\n')
    with pytest.raises(CommandError, match="not a dosereg registry export"):
        call_command("import_registry", str(bad), stdout=StringIO())
