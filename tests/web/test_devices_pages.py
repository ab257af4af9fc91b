"""The Devices pages (issue 17 item 6, issue 16 item 4): every device with its identity, site, last object,
usual gap and software versions; rename, merge and split for RSOs and admins only (physicists read), at their
sites only, each recorded in the audit trail."""
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.audit.models import AuditEvent
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as B
from dosereg.registry import device_resolution
from dosereg.registry.models import Device, DeviceIdentity, DoseObject, Study
from dosereg.web.services import site_assignment_set, user_create

from .data import PASSWORD

pytestmark = pytest.mark.django_db
SITE_A, SITE_B = "North Clinic", "South Clinic"


@pytest.fixture
def devices(tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return build_devices(tmp_path)


def build_devices(tmp_path) -> dict:
    """Three units: two at site A (one sent 3 objects an hour apart), one at site B; users of every role."""
    device_resolution._DEVICE_CACHE.clear()
    spool = Spool(tmp_path / "spool")
    made: dict[str, list[Study]] = {"a1": [], "a2": [], "b1": []}
    plan = [("a1", SITE_A, "A1-SN", "ANGIO1", "VA10"), ("a1", SITE_A, "A1-SN", "ANGIO1", "VA11"),
            ("a1", SITE_A, "A1-SN", "ANGIO1", "VA11"), ("a2", SITE_A, "A2-SN", "ANGIO2", "2.0"),
            ("b1", SITE_B, "B1-SN", "SOUTHRF", "3.1")]
    for i, (key, site, serial, station, sw) in enumerate(plan):
        spec = B.ProjectionRDSRSpec(
            institution=site, device_serial=serial, station_name=station, software_versions=sw,
            manufacturer="Siemens", model="AXIOM-Artis", patient_id=f"DEV{i:03d}",
            study_datetime=dt.datetime(2026, 3, 2, 9, 30) + dt.timedelta(hours=i),
            events=[B.ProjectionEventSpec(dap_gy_cm2=1.0 + i, dose_rp_gy=0.01)])
        obj, _ = file_import(path=B.write(B.build_projection_rdsr(spec), tmp_path / f"{i}.dcm"), spool=spool)
        assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
        made[key].append(Study.objects.get(pk=obj.study_id))
    # the three objects of a1 were received an hour apart (received_at is set on arrival)
    base = timezone.now() - dt.timedelta(days=1)
    for n, s in enumerate(made["a1"]):
        DoseObject.objects.filter(study=s).update(received_at=base + dt.timedelta(hours=n))
    users = {r: user_create(username=f"d-{r}", password=PASSWORD, role=r) for r in ("rso", "physicist", "admin", "staff")}
    users["rso_b"] = user_create(username="d-rso-b", password=PASSWORD, role="rso")
    site_assignment_set(user=users["rso_b"], sites=[SITE_B])
    ids = {k: v[0].device_id for k, v in made.items()}
    return {"users": users, "ids": ids, "studies": made}


def test_list_shows_identity_site_last_object_gap_and_software(devices, login, django_assert_max_num_queries):
    client = login(devices["users"]["physicist"])
    with django_assert_max_num_queries(14):
        r = client.get(reverse("web:device_list"))
    assert r.status_code == 200
    html = r.content.decode()
    for text in ("A1-SN", "A2-SN", "B1-SN", "ANGIO1", SITE_A, SITE_B, "VA11; VA10", "1 h"):
        assert text in html, text
    row = r.context["rows"][[x.device.pk for x in r.context["rows"]].index(devices["ids"]["a1"])]
    assert row.n_studies == 3 and row.usual_gap_s == pytest.approx(3600.0)
    assert row.last_object == DoseObject.objects.filter(device_id=devices["ids"]["a1"]).latest("received_at").received_at
    # physicists read only: no actions offered
    assert r.context["can_edit"] is False
    detail = client.get(reverse("web:device_detail", args=[devices["ids"]["a1"]]))
    assert detail.status_code == 200 and b"data-merge-form" not in detail.content and b"data-split-form" not in detail.content


def test_query_count_does_not_grow_with_the_number_of_devices(devices, login, tmp_path, django_assert_max_num_queries):
    client = login(devices["users"]["admin"])
    spool = Spool(tmp_path / "more")
    for i in range(6):
        spec = B.ProjectionRDSRSpec(device_serial=f"MORE-{i}", station_name=f"MORE{i}", patient_id=f"M{i}",
                                    events=[B.ProjectionEventSpec(dap_gy_cm2=1.0, dose_rp_gy=0.01)])
        file_import(path=B.write(B.build_projection_rdsr(spec), tmp_path / f"m{i}.dcm"), spool=spool)
    with django_assert_max_num_queries(14):
        r = client.get(reverse("web:device_list"))
    assert len(r.context["rows"]) == 9


@pytest.mark.parametrize("role, status", [("physicist", 403), ("staff", 403)])
def test_physicists_and_others_cannot_act(devices, login, role, status):
    client = login(devices["users"][role])
    a1, a2 = devices["ids"]["a1"], devices["ids"]["a2"]
    for name, data in (("device_rename", {"display_name": "X"}), ("device_merge", {"target": a2, "confirm": "yes"}),
                       ("device_split", {"identities": [1]})):
        assert client.post(reverse(f"web:{name}", args=[a1]), data).status_code == status, name
    assert Device.objects.get(pk=a1).display_name != "X" and Device.objects.get(pk=a1).merged_into_id is None
    assert login(devices["users"]["staff"]).get(reverse("web:device_list")).status_code == 403


def test_rso_renames_with_an_audit_row(devices, login):
    client = login(devices["users"]["rso"])
    a1 = devices["ids"]["a1"]
    r = client.post(reverse("web:device_rename", args=[a1]), {"display_name": "Cath lab 1 (Artis zee)"})
    assert r.status_code == 302
    assert Device.objects.get(pk=a1).display_name == "Cath lab 1 (Artis zee)"
    ev = AuditEvent.objects.get(action=AuditEvent.ACTION_CHANGE, object_type="device", object_id=str(a1))
    assert ev.username == "d-rso" and ev.detail["rename"]["display_name"][1] == "Cath lab 1 (Artis zee)"


def test_merge_needs_confirmation_then_moves_studies_and_is_audited(devices, login, django_capture_on_commit_callbacks):
    client = login(devices["users"]["admin"])
    a1, a2 = devices["ids"]["a1"], devices["ids"]["a2"]
    client.post(reverse("web:device_merge", args=[a2]), {"target": a1})
    assert Device.objects.get(pk=a2).merged_into_id is None  # not confirmed: nothing moved
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(reverse("web:device_merge", args=[a2]), {"target": a1, "confirm": "yes"})
    assert r.status_code == 302 and r["Location"] == reverse("web:device_detail", args=[a1])
    assert Device.objects.get(pk=a2).merged_into_id == a1
    assert Study.objects.filter(device_id=a1).count() == 4
    ev = AuditEvent.objects.get(action=AuditEvent.ACTION_CHANGE, object_type="device", object_id=str(a2))
    assert ev.detail["merge_into"] == a1 and ev.detail["moved"]["studies"] == 1 and ev.detail["n_studies"] == 1
    # the merged device is gone from the list; its page leads to the target
    rows = client.get(reverse("web:device_list")).context["rows"]
    assert a2 not in [x.device.pk for x in rows]
    assert client.get(reverse("web:device_detail", args=[a2]))["Location"] == reverse("web:device_detail", args=[a1])


def test_split_from_the_page_moves_the_chosen_identity(devices, login):
    client = login(devices["users"]["admin"])
    a1, a2 = devices["ids"]["a1"], devices["ids"]["a2"]
    from dosereg.registry.devices import device_merge

    device_merge(source_id=a2, target_id=a1)  # a wrong merge, undone by a split
    ident = DeviceIdentity.objects.get(serial_number="A2-SN")
    r = client.post(reverse("web:device_split", args=[a1]), {"identities": [ident.pk], "display_name": "Angio 2"})
    assert r.status_code == 302
    new = Device.objects.get(display_name="Angio 2")
    assert list(Study.objects.filter(device=new).values_list("pk", flat=True)) == [devices["studies"]["a2"][0].pk]
    ev = AuditEvent.objects.get(action=AuditEvent.ACTION_CHANGE, object_type="device", detail__split_to=new.pk)
    assert ev.detail["identities"] == [ident.pk]


def test_site_scoped_rso_sees_and_acts_on_their_sites_only(devices, login):
    client = login(devices["users"]["rso_b"])
    rows = client.get(reverse("web:device_list")).context["rows"]
    assert [x.device.pk for x in rows] == [devices["ids"]["b1"]]
    a1, b1 = devices["ids"]["a1"], devices["ids"]["b1"]
    assert client.get(reverse("web:device_detail", args=[a1])).status_code == 404
    assert client.post(reverse("web:device_rename", args=[a1]), {"display_name": "X"}).status_code == 404
    # a merge into a device at another site is refused
    client.post(reverse("web:device_merge", args=[b1]), {"target": a1, "confirm": "yes"})
    assert Device.objects.get(pk=b1).merged_into_id is None
    detail = client.get(reverse("web:device_detail", args=[b1]))
    assert detail.status_code == 200 and detail.context["targets"] == []
