"""The study page and the studies API show the device identity as the reports carried it (manufacturer, model,
serial, station, observer UID, Software Versions, calling AE title) beside the resolved device (issue 16), with
a query count that does not grow with the number of studies or reports."""
from __future__ import annotations

import datetime as dt
import time

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pynetdicom import AE, build_context

from dicom_listener import server as listener
from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as B
from dosereg.registry import device_resolution
from dosereg.registry.models import DoseObject, Study
from dosereg.web.services import user_create
from tests.e2e.conftest import free_port

from .data import PASSWORD

UNIT = dict(manufacturer="CANON_MEC", model="Alphenix Biplane", device_serial="AX-9", station_name="ANGIO2")


def _rdsr(study_uid: str, software: str, n: int):
    return B.build_projection_rdsr(B.ProjectionRDSRSpec(
        events=[B.ProjectionEventSpec(dap_gy_cm2=1.5 + n, dose_rp_gy=0.01, kvp=80.0)], study_instance_uid=study_uid,
        study_datetime=dt.datetime(2026, 3, 2, 9, 30 + n), software_versions=software, patient_id="RI-1", **UNIT))


@pytest.fixture
def running(tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_MIN_FREE_BYTES = 0
    device_resolution._DEVICE_CACHE.clear()
    port = free_port()
    server, _ = listener.start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool",
                                        allowed=["CATHLAB2"])
    yield port
    server.shutdown()


def _store(port: int, ds, calling: str, tmp_path) -> DoseObject:
    ds = pydicom.dcmread(B.write(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm"))  # with its file meta, as sent
    ae = AE(ae_title=calling)
    ae.requested_contexts = [build_context(ds.SOPClassUID)]
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    assert assoc.is_established
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    obj = DoseObject.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    deadline = time.monotonic() + 60  # the listener's in-process worker ingests after the answer
    while obj.status == DoseObject.STATUS_RECEIVED and time.monotonic() < deadline:
        time.sleep(0.05)
        obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    return obj


@pytest.mark.django_db(transaction=True)
def test_study_page_and_api_show_the_identity_as_received_through_the_listener(running, client, tmp_path):
    uid = B.deterministic_uid("received-identity")
    _store(running, _rdsr(uid, "V8.1", 0), "CATHLAB2", tmp_path)
    _store(running, _rdsr(uid, "V8.2 SP1", 1), "CATHLAB2", tmp_path)  # a second report, after a software update
    study = Study.objects.select_related("device").get(study_instance_uid=uid)
    assert study.device.manufacturer == "Canon Medical Systems"  # resolved: the alias normalised
    client.force_login(user_create(username="ri-phys", password=PASSWORD, role="physicist"))

    html = client.get(reverse("web:study_detail", kwargs={"pk": study.pk})).content.decode()
    section = html[html.index("data-received-identity"):html.index("Received objects")]
    # as received (CANON_MEC, as the object spelled it) beside the resolved device's name for the maker
    assert "<th scope=\"row\">Manufacturer</th><td>CANON_MEC <span class=\"badge badge-info\"" in section
    assert "<td>Canon Medical Systems</td>" in section
    assert "<th scope=\"row\">Serial number</th><td>AX-9</td><td>AX-9</td>" in section
    assert "<th scope=\"row\">Station name</th><td>ANGIO2</td><td>ANGIO2</td>" in section
    assert "V8.1 · V8.2 SP1" in section  # both reports' versions, in order received
    assert "<td class=\"mono\">CATHLAB2</td>" in section
    assert f"href=\"{reverse('web:device_detail', kwargs={'pk': study.device_id})}\"" in section

    data = client.get(reverse("web:api_study", kwargs={"pk": study.pk})).json()
    assert data["device_id"] == study.device_id
    assert data["received_identity"] == {
        "manufacturer": "CANON_MEC", "model": "Alphenix Biplane", "serial_number": "AX-9", "station_name": "ANGIO2",
        "device_observer_uid": study.received_identity.device_observer_uid,
        "software_versions": ["V8.1", "V8.2 SP1"], "software_versions_not_recorded": 0,
        "calling_ae_titles": ["CATHLAB2"]}
    assert data["received_identity"]["device_observer_uid"]  # the builder's RDSR carries one


def _import(tmp_path, spool, uid: str, software: str, n: int) -> DoseObject:
    obj, _ = file_import(path=B.write(_rdsr(uid, software, n), tmp_path / f"{uid}-{n}.dcm"), spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    return obj


def _count(client, url) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
    assert resp.status_code == 200
    return len(ctx.captured_queries), resp.json()


def test_api_list_query_count_does_not_grow_and_patients_do_not_get_it(web_data, client, tmp_path):
    spool = Spool(tmp_path / "spool")
    device_resolution._DEVICE_CACHE.clear()
    _import(tmp_path, spool, B.deterministic_uid("ri-a"), "V1", 0)
    client.force_login(web_data.users["physicist"])
    url = reverse("web:api_studies") + "?page_size=1000"
    before, data = _count(client, url)
    n_before = len(data["results"])
    for i in range(6):  # more studies, each with two reports
        uid = B.deterministic_uid(f"ri-more-{i}")
        _import(tmp_path, spool, uid, "V1", 0)
        _import(tmp_path, spool, uid, "V2", 1)
    after, data = _count(client, url)
    assert len(data["results"]) == n_before + 6
    assert after == before, (before, after)
    row = next(r for r in data["results"] if r["study_instance_uid"] == B.deterministic_uid("ri-more-0"))
    assert row["received_identity"]["software_versions"] == ["V1", "V2"]
    assert row["received_identity"]["serial_number"] == "AX-9"
    assert row["received_identity"]["calling_ae_titles"] == ["import"]  # imported from files (flow.file_import)
    # a report ingested before versions were recorded is counted, not guessed
    DoseObject.objects.filter(study__study_instance_uid=B.deterministic_uid("ri-more-0"), software_versions="V1").update(
        software_versions=None)
    data = client.get(reverse("web:api_study", kwargs={"pk": row["id"]})).json()
    assert data["received_identity"]["software_versions"] == ["V2"]
    assert data["received_identity"]["software_versions_not_recorded"] == 1
    # a patient reading their own studies does not get the unit's identity or the network's AE titles
    client.force_login(web_data.users["patient"])
    data = client.get(reverse("web:api_studies")).json()
    assert data["results"] and all("received_identity" not in r for r in data["results"])


def test_study_page_query_count_is_unchanged_by_the_identity(web_data, client, tmp_path, django_assert_max_num_queries):
    spool = Spool(tmp_path / "spool")
    device_resolution._DEVICE_CACHE.clear()
    uid = B.deterministic_uid("ri-page")
    _import(tmp_path, spool, uid, "V1", 0)
    _import(tmp_path, spool, uid, "V2", 1)
    study = Study.objects.get(study_instance_uid=uid)
    client.force_login(web_data.users["physicist"])
    url = reverse("web:study_detail", kwargs={"pk": study.pk})
    with CaptureQueriesContext(connection) as ctx:
        html = client.get(url).content.decode()
    assert "V1 · V2" in html and "data-received-identity" in html
    from .test_pages import MAX_QUERIES

    assert len(ctx.captured_queries) <= MAX_QUERIES["study_detail"]
