"""The vendor containers' values are stored in the registry's own fields (issue 16): Philips private shutters
as the event's collimated field area, the Siemens private patient position as its orientation."""
from __future__ import annotations

import pytest

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.registry.models import IrradiationEvent
from tests.conftest import require

pytestmark = pytest.mark.django_db


def _import(corpus_dir, tmp_path, name):
    path = corpus_dir / name
    require(path.exists(), str(path))
    obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
    assert obj.status == obj.STATUS_INGESTED, obj.quarantine_reason
    return list(IrradiationEvent.objects.filter(study_id=obj.study_id).order_by("datetime", "pk"))


def test_philips_shutters_are_stored_as_collimated_field_area(corpus_dir, tmp_path):
    events = _import(corpus_dir, tmp_path, "philips_allura-xper_RF.dcm")
    assert len(events) == 3
    for ev in events:
        assert ev.collimated_field_area_m2 == pytest.approx(329.0 * 262.0 * 1.194 ** 2 / 1e6)
        assert ev.extra["collimated_field_area_source"].startswith("Philips private shutters")


def test_siemens_patient_position_is_stored_as_orientation(corpus_dir, tmp_path):
    events = _import(corpus_dir, tmp_path, "siemens_axiom-artis-zee_RF.dcm")
    assert len(events) == 8
    assert {(e.extra.get("patient_table_relationship"), e.extra.get("patient_orientation"),
             e.extra.get("patient_orientation_modifier")) for e in events} == {("headfirst", "recumbent", "supine")}
