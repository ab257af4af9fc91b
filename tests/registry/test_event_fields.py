"""Technique and geometry fields a physicist audits (and the skin-dose estimate needs) are stored per event,
not read and thrown away (issue 16)."""
from __future__ import annotations

import pytest

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.registry.models import IrradiationEvent
from tests.conftest import require


@pytest.mark.django_db
def test_corpus_event_keeps_distances_table_positions_pulses_and_filters(corpus_dir, tmp_path):
    path = corpus_dir / "siemens_axiom-artis-zee_RF.dcm"
    require(path.exists(), str(path))
    obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
    assert obj.status == obj.STATUS_INGESTED, obj.quarantine_reason
    ev = IrradiationEvent.objects.filter(dose_rp_gy__isnull=False).order_by("datetime").first()
    assert ev is not None
    assert ev.distance_source_to_detector_mm == 1200.0
    assert ev.distance_source_to_isocenter_mm == 785.0
    assert (ev.table_longitudinal_position_mm, ev.table_lateral_position_mm, ev.table_height_position_mm) == (
        -25.9, 525.1, 151.8)
    assert ev.pulse_width_ms == 4.2 and ev.number_of_pulses == 24.0
    assert ev.filter_material == "Copper or Copper compound"
