"""Device identity (issue 16 item 4): observer UID, then serial with manufacturer/model (spellings normalised),
station name last; two units never merge on a shared station name; every study keeps the identity it arrived
with. Builder-made files and the vendor corpus, through the real ingest."""
from __future__ import annotations

import datetime as dt

import pydicom
import pytest

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as B
from dosereg.registry import device_identity as DI
from dosereg.registry import device_resolution
from dosereg.registry.models import Device, DeviceIdentifier, DeviceIdentity, DoseObject, Study
from tests.conftest import require

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool(tmp_path):
    device_resolution._DEVICE_CACHE.clear()
    return Spool(tmp_path / "spool")


def _send(tmp_path, spool, ds, name: str) -> Study:
    path = B.write(ds, tmp_path / f"{name}.dcm")
    obj, _ = file_import(path=path, spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    return Study.objects.select_related("device", "received_identity").get(pk=obj.study_id)


def _rf(**kw) -> pydicom.Dataset:
    spec = B.ProjectionRDSRSpec(events=[B.ProjectionEventSpec(dap_gy_cm2=1.5, dose_rp_gy=0.01, kvp=70.0)], **kw)
    return B.build_projection_rdsr(spec)


# -- normalisation (pure) -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["CANON_MEC", "Canon Medical Systems", "Canon Medical Systems Corporation",
                                      "TOSHIBA_MEC", "Toshiba Medical Systems Corporation", "canon mec"])
def test_canon_medical_spellings_are_one_manufacturer(spelling):
    assert DI.manufacturer_key(spelling) == "canon medical"
    assert DI.manufacturer_display(spelling) == "Canon Medical Systems"


def test_corpus_spellings_of_one_vendor_compare_equal_and_others_do_not():
    assert {DI.manufacturer_key(s) for s in ("SIEMENS", "Siemens", "Siemens Healthineers AG")} == {"siemens"}
    assert {DI.manufacturer_key(s) for s in ("GE Healthcare", "GE Medical Systems", "GE Healthcare Surgery")} == {"ge"}
    assert DI.manufacturer_key("Philips Medical Systems") == DI.manufacturer_key("PHILIPS") == "philips"
    # Canon Inc. (CXDI detectors) is another company than Canon Medical Systems
    assert DI.manufacturer_key("Canon Inc.") == "canon" != DI.manufacturer_key("CANON_MEC")
    assert DI.manufacturer_key("DoseReg Medical") == "dosereg medical"  # unknown: as spelled, normalised


def test_serials_compare_without_case_spaces_or_separators():
    assert DI.serial_key("HRM-021") == DI.serial_key("hrm 021") == DI.serial_key("HRM.021") == "hrm021"
    assert DI.serial_key("HRM-021") != DI.serial_key("HRM-022")


def test_identifiers_in_order_of_strength_station_last():
    r = DI.received("CANON_MEC", "Platinum43", "HRM-021", "RF ROOM 1", "1.2.3")
    assert r.identifiers() == [("observer_uid", "1.2.3"), ("serial", "canon medical|platinum43|hrm021"),
                               ("station", "canon medical|platinum43|rf room 1")]
    assert r.key != DI.received("Canon Medical Systems", "Platinum43", "HRM-021", "RF ROOM 1", "1.2.3").key


def test_identifier_values_of_the_former_rules_are_rewritten_by_the_migration_helper():
    assert DI.identifier_value_renormalised("serial", "canon_mec|platinum43|hrm-021") == "canon medical|platinum43|hrm021"
    assert DI.identifier_value_renormalised("station", "siemens|axiom-artis|artiszee") == "siemens|axiom artis|artiszee"
    assert DI.identifier_value_renormalised("observer_uid", "1.2.3") == "1.2.3"


# -- through the ingest -------------------------------------------------------------------------------------------
def test_corpus_canon_unit_with_manufacturer_and_serial_spelled_two_ways_is_one_device(corpus_dir, spool, tmp_path):
    path = corpus_dir / "canon_ultimax-i-platinum43_RF_mGy-dGycm2.dcm"
    require(path.exists(), str(path))
    first, _ = file_import(path=path, spool=spool)
    assert first.status == DoseObject.STATUS_INGESTED, first.quarantine_reason
    # the same unit after a software update: "Canon Medical Systems", serial "HRM 021", a new observer UID
    ds = pydicom.dcmread(path)
    ds.Manufacturer, ds.DeviceSerialNumber, ds.SoftwareVersions = "Canon Medical Systems", "HRM 021", "1.70.00"
    new_uid = pydicom.uid.generate_uid()
    for item in ds.ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if code == "121012":
            item.UID = new_uid
        elif code == "121014":
            item.TextValue = "Canon Medical Systems"
        elif code == "121016":
            item.TextValue = "HRM 021"
    out = B.write(B.rewrite_uids(ds), tmp_path / "canon-renamed.dcm")
    second, _ = file_import(path=out, spool=spool)
    assert second.status == DoseObject.STATUS_INGESTED, second.quarantine_reason
    assert Device.objects.count() == 1
    device = Device.objects.get()
    assert device.manufacturer == "Canon Medical Systems" and device.model == "Platinum43"
    s1, s2 = (Study.objects.select_related("received_identity").get(pk=o.study_id) for o in (first, second))
    assert s1.pk != s2.pk and s1.device_id == s2.device_id == device.pk
    # each study keeps the identity it arrived with
    assert (s1.received_identity.manufacturer, s1.received_identity.serial_number) == ("CANON_MEC", "HRM-021")
    assert (s2.received_identity.manufacturer, s2.received_identity.serial_number) == ("Canon Medical Systems",
                                                                                         "HRM 021")
    assert s2.received_identity.device_observer_uid == new_uid
    assert set(DeviceIdentity.objects.values_list("device_id", flat=True)) == {device.pk}
    assert set(device.software_history.values_list("software_versions", flat=True)) == {"1.60.04", "1.70.00"}


def test_corpus_artis_zee_is_not_labelled_as_another_unit_sharing_its_station_name(corpus_dir, spool, tmp_path):
    """A biplane Artis icono in the same department was given the station name of the Artis zee ("ArtisZee"):
    two units, two devices, whichever arrives first."""
    icono = _send(tmp_path, spool, _rf(manufacturer="Siemens", model="AXIOM-Artis", device_serial="204711",
                                       station_name="ArtisZee"), "icono")
    Device.objects.filter(pk=icono.device_id).update(display_name="Artis icono biplane")
    path = corpus_dir / "siemens_axiom-artis-zee_RF.dcm"
    require(path.exists(), str(path))
    obj, _ = file_import(path=path, spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    zee = Study.objects.select_related("device").get(pk=obj.study_id).device
    assert zee.pk != icono.device_id
    assert (zee.serial_number, zee.station_name) == ("123456", "ArtisZee") and zee.display_name != "Artis icono biplane"
    assert Device.objects.count() == 2


def test_a_shared_station_name_never_merges_units_with_different_serials(spool, tmp_path):
    a = _send(tmp_path, spool, _rf(device_serial="A-1", station_name="CATH1"), "a")
    b = _send(tmp_path, spool, _rf(device_serial="B-2", station_name="CATH1"), "b")
    assert a.device_id != b.device_id
    # the station identifier belongs to the first unit only; the second is found by its serial next time
    again = _send(tmp_path, spool, _rf(device_serial="B-2", station_name="CATH1"), "b2")
    assert again.device_id == b.device_id


def test_an_observer_uid_copied_between_units_does_not_merge_them(spool, tmp_path):
    uid = "2.25.99887766554433221100"
    a = _send(tmp_path, spool, _rf(device_serial="A-1", device_observer_uid=uid), "a")
    b = _send(tmp_path, spool, _rf(device_serial="B-2", device_observer_uid=uid), "b")
    assert a.device_id != b.device_id
    assert _send(tmp_path, spool, _rf(device_serial="A-1", device_observer_uid=uid), "a2").device_id == a.device_id


def test_the_station_links_headers_without_serial_to_the_unit_but_not_a_second_unit(spool, tmp_path):
    """A DX unit whose image headers carry no serial and no observer UID is found by station (with manufacturer
    and model); a unit with another serial under the same station label is not."""
    header = _send(tmp_path, spool, B.build_dx_image(device_serial="", station_name="DXMOB1"), "h1")
    with_serial = _send(tmp_path, spool, B.build_dx_image(device_serial="M-77", station_name="DXMOB1"), "h2")
    assert with_serial.device_id == header.device_id  # the unit had no serial yet: the same unit
    other = _send(tmp_path, spool, B.build_dx_image(device_serial="M-88", station_name="DXMOB1"), "h3")
    assert other.device_id != header.device_id
    assert _send(tmp_path, spool, B.build_dx_image(device_serial="", station_name="DXMOB1"), "h4").device_id \
        == header.device_id
    assert DeviceIdentity.objects.count() == 3  # (no serial), M-77, M-88 as received


def test_study_datetime_order_does_not_matter_for_identity(spool, tmp_path):
    later = _send(tmp_path, spool, _rf(device_serial="X-1", study_datetime=dt.datetime(2026, 3, 9, 9)), "l")
    earlier = _send(tmp_path, spool, _rf(device_serial="x 1", study_datetime=dt.datetime(2026, 3, 1, 9)), "e")
    assert later.device_id == earlier.device_id
    assert DeviceIdentifier.objects.filter(kind="serial").count() == 1
