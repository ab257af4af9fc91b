"""Merge and split devices (issue 16 item 4): what moves, where later objects go, and the follow-up refresh of
what depends on the device (protocol summary buckets)."""
from __future__ import annotations

import datetime as dt

import pytest

from dicom_listener.spool import Spool
from dosereg.pipeline import flow
from dosereg.protocols.models import SummaryBucket
from dosereg.protocols.services import summaries_refresh
from dosereg.rdsr import builder as B
from dosereg.registry import device_resolution
from dosereg.registry.devices import DeviceChangeError, device_rename
from dosereg.registry.models import Device, DeviceIdentifier, DeviceIdentity, DeviceSoftwareVersion, DoseObject, Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool(tmp_path):
    device_resolution._DEVICE_CACHE.clear()
    return Spool(tmp_path / "spool")


def _send(tmp_path, spool, name: str, **kw) -> Study:
    spec = B.ProjectionRDSRSpec(events=[B.ProjectionEventSpec(dap_gy_cm2=2.0, dose_rp_gy=0.02, kvp=75.0)],
                                study_datetime=dt.datetime(2026, 3, 2, 9, 30), **kw)
    obj, _ = flow.file_import(path=B.write(B.build_projection_rdsr(spec), tmp_path / f"{name}.dcm"), spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    return Study.objects.get(pk=obj.study_id)


def test_merge_moves_studies_identities_and_identifiers_and_later_objects_follow(spool, tmp_path,
                                                                                 django_capture_on_commit_callbacks):
    # one unit seen as two devices: its serial was re-entered by service ("RM-1" -> "RM-100")
    a = _send(tmp_path, spool, "a", device_serial="RM-1", station_name="ROOM1", patient_id="P1")
    b = _send(tmp_path, spool, "b", device_serial="RM-100", station_name="ROOM1B", patient_id="P2")
    assert a.device_id != b.device_id
    summaries_refresh()
    assert not SummaryBucket.objects.filter(dirty=True).exists()
    with django_capture_on_commit_callbacks(execute=True):
        change = flow.device_merge(source_id=a.device_id, target_id=b.device_id)
    assert change.device_id == b.device_id and change.study_ids == (a.pk,)
    assert change.moved["studies"] == 1 and change.moved["identities"] == 1
    assert set(Study.objects.values_list("device_id", flat=True)) == {b.device_id}
    assert set(DeviceIdentity.objects.values_list("device_id", flat=True)) == {b.device_id}
    assert set(DeviceIdentifier.objects.values_list("device_id", flat=True)) == {b.device_id}
    assert Device.objects.get(pk=a.device_id).merged_into_id == b.device_id
    # the study keeps the identity it arrived with
    assert Study.objects.select_related("received_identity").get(pk=a.pk).received_identity.serial_number == "RM-1"
    # the follow-up marked the moved study's buckets (old and new device) dirty for the protocol summaries
    dirty = set(SummaryBucket.objects.filter(dirty=True).values_list("device_key", flat=True))
    assert dirty == {a.device_id, b.device_id}
    # a later object with the merged-away identity goes to the target
    c = _send(tmp_path, spool, "c", device_serial="RM-1", station_name="ROOM1", patient_id="P3")
    assert c.device_id == b.device_id


def test_merge_refuses_itself_and_merged_devices(spool, tmp_path):
    a = _send(tmp_path, spool, "a", device_serial="S-1")
    b = _send(tmp_path, spool, "b", device_serial="S-2")
    with pytest.raises(DeviceChangeError):
        flow.device_merge(source_id=a.device_id, target_id=a.device_id)
    flow.device_merge(source_id=a.device_id, target_id=b.device_id)
    with pytest.raises(DeviceChangeError):
        flow.device_merge(source_id=b.device_id, target_id=a.device_id)


def test_split_moves_the_studies_of_chosen_identities_to_a_new_device(spool, tmp_path):
    # image headers without serial or observer UID from station "DXMOB1", then headers with a serial under the
    # same label: taken for the same unit (it had no serial yet). They were two units: split the serial off.
    studies = []
    for name, serial in (("h1", ""), ("h2", "M-77")):
        ds = B.build_dx_image(device_serial=serial, station_name="DXMOB1")
        obj, _ = flow.file_import(path=B.write(ds, tmp_path / f"{name}.dcm"), spool=spool)
        assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
        studies.append(Study.objects.get(pk=obj.study_id))
    s1, s2 = studies
    assert s1.device_id == s2.device_id
    device_id = s1.device_id
    ids = dict(DeviceIdentity.objects.filter(device_id=device_id).values_list("serial_number", "pk"))
    assert set(ids) == {"", "M-77"}
    change = flow.device_split(device_id=device_id, identity_ids=[ids["M-77"]], display_name="Mobile 2")
    new = Device.objects.get(pk=change.device_id)
    assert new.display_name == "Mobile 2" and new.pk != device_id and new.serial_number == "M-77"
    assert Study.objects.get(pk=s2.pk).device_id == new.pk and Study.objects.get(pk=s1.pk).device_id == device_id
    assert change.study_ids == (s2.pk,)
    # the serial identifier went with the identity; the station label shared by both stays with the device
    assert set(DeviceIdentifier.objects.filter(device_id=new.pk).values_list("kind", flat=True)) == {"serial"}
    assert DeviceIdentifier.objects.filter(device_id=device_id, kind="station").exists()
    device_resolution._DEVICE_CACHE.clear()
    for name, serial, expected in (("h3", "M-77", new.pk), ("h4", "", device_id)):
        ds = B.build_dx_image(device_serial=serial, station_name="DXMOB1")
        obj, _ = flow.file_import(path=B.write(ds, tmp_path / f"{name}.dcm"), spool=spool)
        assert Study.objects.get(pk=obj.study_id).device_id == expected, name  # later objects follow


def test_split_refuses_every_identity_or_a_foreign_one(spool, tmp_path):
    a = _send(tmp_path, spool, "a", device_serial="S-1")
    b = _send(tmp_path, spool, "b", device_serial="S-2")
    mine = list(DeviceIdentity.objects.filter(device_id=a.device_id).values_list("pk", flat=True))
    theirs = list(DeviceIdentity.objects.filter(device_id=b.device_id).values_list("pk", flat=True))
    with pytest.raises(DeviceChangeError):
        flow.device_split(device_id=a.device_id, identity_ids=mine)
    with pytest.raises(DeviceChangeError):
        flow.device_split(device_id=a.device_id, identity_ids=theirs)


def test_rename_reports_what_changed(spool, tmp_path):
    a = _send(tmp_path, spool, "a", device_serial="S-1")
    before = Device.objects.get(pk=a.device_id).display_name
    assert device_rename(device_id=a.device_id, display_name=" Cath lab 2 ") == {"display_name": (before, "Cath lab 2")}
    assert Device.objects.get(pk=a.device_id).display_name == "Cath lab 2"
    assert device_rename(device_id=a.device_id, display_name="Cath lab 2") == {}


@pytest.mark.django_db(transaction=True)  # on-commit: the resolution is remembered as in a worker
def test_a_worker_that_remembers_the_merged_device_files_to_the_target(spool, tmp_path):
    a = _send(tmp_path, spool, "a", device_serial="W-1", patient_id="W1")
    b = _send(tmp_path, spool, "b", device_serial="W-2", patient_id="W2")
    remembered = dict(device_resolution._DEVICE_CACHE)
    assert any(dev.pk == a.device_id for _, dev, _ in remembered.values())
    flow.device_merge(source_id=a.device_id, target_id=b.device_id)
    device_resolution._DEVICE_CACHE.update(remembered)  # another worker process still remembers the source device
    c = _send(tmp_path, spool, "c", device_serial="W-1", patient_id="W3")
    assert c.device_id == b.device_id


def test_merge_moves_other_apps_rows_that_point_at_the_device(spool, tmp_path):
    """An alert route for the room (exposure app; a foreign key without a reverse name) follows the merge."""
    from dosereg.exposure.models import AlertRoute

    a = _send(tmp_path, spool, "a", device_serial="R-1")
    b = _send(tmp_path, spool, "b", device_serial="R-2")
    route = AlertRoute.objects.create(name="cath lab physicist", device_id=a.device_id, emails="p@example.org")
    change = flow.device_merge(source_id=a.device_id, target_id=b.device_id)
    route.refresh_from_db()
    assert route.device_id == b.device_id and change.moved["exposure.AlertRoute"] == 1 and change.left == []


# --- software-version history (a split moves exactly what belongs to the moved reports; a merge combines) ------
def _dx(tmp_path, spool, name: str, serial: str, software: str) -> DoseObject:
    ds = B.build_dx_image(device_serial=serial, station_name="DXMOB1", software_versions=software,
                          patient_id=f"P-{name}")
    obj, _ = flow.file_import(path=B.write(ds, tmp_path / f"{name}.dcm"), spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    return obj


def _history(device_id: int) -> dict[str, dt.datetime]:
    return dict(DeviceSoftwareVersion.objects.filter(device_id=device_id).values_list("software_versions", "first_seen"))


def test_split_moves_exactly_the_software_history_of_the_moved_reports(spool, tmp_path):
    # one station label, two units: the serial-less one ran "A-1" then "S-9"; the one with serial M-77 ran
    # "B-2" then "S-9" too (the same release installed on both)
    h1 = _dx(tmp_path, spool, "h1", "", "A-1")
    h2 = _dx(tmp_path, spool, "h2", "M-77", "B-2")
    h3 = _dx(tmp_path, spool, "h3", "M-77", "S-9")
    h4 = _dx(tmp_path, spool, "h4", "", "S-9")
    device_id = h1.device_id
    assert {h2.device_id, h3.device_id, h4.device_id} == {device_id}
    assert DoseObject.objects.get(pk=h2.pk).software_versions == "B-2"  # as the report carried it
    assert set(_history(device_id)) == {"A-1", "B-2", "S-9"}
    before = _history(device_id)
    ident = DeviceIdentity.objects.get(device_id=device_id, serial_number="M-77")

    change = flow.device_split(device_id=device_id, identity_ids=[ident.pk])

    new_id = change.device_id
    # "B-2" only the moved reports carried: the row moved (same first sighting); "S-9" reports of both carried:
    # each device has it, the new one dated by its own first report; "A-1" no moved report carried: it stays
    assert set(_history(new_id)) == {"B-2", "S-9"}
    assert set(_history(device_id)) == {"A-1", "S-9"}
    # the moved row is dated by its first report's receipt (the history row was written at its ingest, just after)
    assert _history(new_id)["B-2"] == DoseObject.objects.get(pk=h2.pk).received_at <= before["B-2"]
    assert _history(new_id)["S-9"] == DoseObject.objects.get(pk=h3.pk).received_at
    assert before["S-9"] < DoseObject.objects.get(pk=h4.pk).received_at  # first seen on h3, which moved
    assert _history(device_id)["S-9"] == DoseObject.objects.get(pk=h4.pk).received_at  # now: its own first report
    assert change.moved["software versions"] == 1 and change.moved["software versions shared"] == 1
    assert change.left == []
    # each device's current version is the one its latest report carried
    assert Device.objects.get(pk=new_id).software_versions == "S-9"
    assert Device.objects.get(pk=device_id).software_versions == "S-9"


def test_split_of_reports_without_a_recorded_version_says_so_and_moves_no_history(spool, tmp_path):
    _dx(tmp_path, spool, "h1", "", "A-1")
    h2 = _dx(tmp_path, spool, "h2", "M-77", "B-2")
    DoseObject.objects.filter(pk=h2.pk).update(software_versions=None)  # ingested before versions were recorded
    ident = DeviceIdentity.objects.get(device_id=h2.device_id, serial_number="M-77")
    change = flow.device_split(device_id=h2.device_id, identity_ids=[ident.pk])
    assert _history(change.device_id) == {}
    assert set(_history(h2.device_id)) == {"A-1", "B-2"}  # not attributable: stays
    assert change.moved["software versions"] == 0
    assert len(change.left) == 1 and "1 moved report(s)" in change.left[0] and "reprocess" in change.left[0]


def test_merge_combines_the_software_history(spool, tmp_path):
    a1 = _send(tmp_path, spool, "a1", device_serial="RM-1", station_name="ROOM1", patient_id="P1",
               software_versions="VA10")
    a2 = _send(tmp_path, spool, "a2", device_serial="RM-1", station_name="ROOM1", patient_id="P2",
               software_versions="VB20")
    b = _send(tmp_path, spool, "b", device_serial="RM-100", station_name="ROOM1B", patient_id="P3",
              software_versions="VB20")
    assert a1.device_id == a2.device_id != b.device_id
    source_first = _history(a1.device_id)["VB20"]
    target_first = _history(b.device_id)["VB20"]
    assert source_first < target_first
    change = flow.device_merge(source_id=a1.device_id, target_id=b.device_id)
    # "VA10" moved; "VB20", which both had, is one row dated by the earlier sighting; the source keeps none
    assert _history(b.device_id) == {"VA10": _history(b.device_id)["VA10"], "VB20": source_first}
    assert _history(a1.device_id) == {}
    assert change.moved["software versions"] == 1 and change.moved["software versions combined"] == 1


def test_split_keeps_the_date_of_a_shared_version_when_the_device_has_unrecorded_reports(spool, tmp_path):
    h1 = _dx(tmp_path, spool, "h1", "", "S-9")
    h2 = _dx(tmp_path, spool, "h2", "M-77", "S-9")
    h3 = _dx(tmp_path, spool, "h3", "", "S-9")
    DoseObject.objects.filter(pk=h1.pk).update(software_versions=None)  # the device's first report: not recorded
    before = _history(h1.device_id)["S-9"]
    ident = DeviceIdentity.objects.get(device_id=h2.device_id, serial_number="M-77")
    change = flow.device_split(device_id=h2.device_id, identity_ids=[ident.pk])
    # S-9 is shared (h2 moved, h3 stayed); h1 may have been its first sighting: the device's date stays
    assert _history(h1.device_id) == {"S-9": before}
    assert _history(change.device_id) == {"S-9": DoseObject.objects.get(pk=h2.pk).received_at}
    assert DoseObject.objects.get(pk=h3.pk).received_at > before
