"""Registry rows built from the parsed records: an ``IrradiationEvent`` per event (units converted, text cut to
its column, private items made JSON) and a ``PlaneTotal`` per plane."""
from __future__ import annotations

import math
from dataclasses import asdict
from datetime import date, datetime

from dosereg.rdsr import records as R

from .models import DoseObject, IrradiationEvent, PlaneTotal, Study
from .values import _bounded, _s


def _mas(exposure_uas: float | None) -> float | None:
    return exposure_uas / 1000.0 if exposure_uas is not None else None


def _event_row(ev: R.IrradiationEvent, study: Study | None, obj: DoseObject, doc: R.DoseDocument) -> IrradiationEvent:
    return IrradiationEvent(
        study=study,
        dose_object=obj,
        irradiation_event_uid=ev.irradiation_event_uid or f"{doc.sop_instance_uid}#{id(ev)}",
        event_type=_s(ev.event_type)[:32],
        datetime=_bounded(ev.datetime, doc, "irradiation event DateTime Started"),
        plane=_s(ev.plane)[:8],
        protocol=_s(ev.protocol)[:256],
        dap_gy_cm2=ev.dap_gy_cm2,
        dose_rp_gy=ev.dose_rp_gy,
        reference_point_definition=_s(ev.reference_point_definition)[:256],
        kvp=ev.kvp,
        tube_current_ma=ev.tube_current_ma,
        exposure_time_ms=ev.exposure_time_ms,
        pulse_rate_per_s=ev.pulse_rate_per_s,
        number_of_frames=ev.number_of_frames,
        irradiation_duration_s=ev.irradiation_duration_s,
        fluoro_mode=_s(ev.fluoro_mode)[:16],
        dose_mode=_s(ev.dose_mode)[:64],
        positioner_primary_angle_deg=ev.positioner_primary_angle_deg,
        positioner_secondary_angle_deg=ev.positioner_secondary_angle_deg,
        collimated_field_area_m2=ev.collimated_field_area_m2,
        entrance_exposure_at_rp_mgy=ev.entrance_exposure_at_rp_mgy,
        pulse_width_ms=ev.pulse_width_ms,
        number_of_pulses=ev.number_of_pulses,
        distance_source_to_detector_mm=ev.distance_source_to_detector_mm,
        distance_source_to_isocenter_mm=_float_extra(ev, "distance_source_to_isocenter_mm"),
        table_longitudinal_position_mm=_float_extra(ev, "table_longitudinal_position_mm"),
        table_lateral_position_mm=_float_extra(ev, "table_lateral_position_mm"),
        table_height_position_mm=_float_extra(ev, "table_height_position_mm"),
        filter_material=_s(ev.filter_material)[:128],
        exposure_index=ev.exposure_index,
        target_exposure_index=_float_extra(ev, "target_exposure_index"),
        deviation_index=ev.deviation_index,
        ctdivol_mgy=ev.ctdivol_mgy,
        dlp_mgy_cm=ev.dlp_mgy_cm,
        ctdiw_phantom=_s(ev.ctdiw_phantom)[:16],
        ct_scanning_length_mm=ev.ct_scanning_length_mm,
        ct_pitch_factor=ev.ct_pitch_factor,
        ct_exposure_time_s=ev.ct_exposure_time_s,
        ssde_mgy=ev.ssde_mgy,
        target_region=_s(ev.target_region)[:128],
        target_region_code=_s(ev.target_region_code)[:64],
        dose_check=_jsonable(asdict(ev.dose_check)) if ev.dose_check else None,
        agd_mgy=ev.agd_mgy,
        compression_thickness_mm=ev.compression_thickness_mm,
        compression_force_n=ev.compression_force_n,
        laterality=_s(ev.laterality)[:1],
        view=_s(ev.view)[:64],
        view_code=_s(ev.view_code)[:64],
        anode_target_material=_s(ev.anode_target_material)[:64],
        exposure_mas=_mas(_float_extra(ev, "exposure_uas")),
        presentation_intent=_s(ev.presentation_intent)[:16],
        extra=_jsonable(ev.extra),
    )


def _float_extra(ev: R.IrradiationEvent, key: str) -> float | None:
    value = ev.extra.get(key)
    return float(value) if isinstance(value, (int, float)) else None


_JSON_PLAIN = frozenset({str, int, bool, type(None)})


def _jsonable(value):
    """``value`` as JSON PostgreSQL accepts: NaN and infinity (invalid JSON) become text. Plain values are
    passed through without a call (an event's private items are many small values)."""
    t = type(value)
    if t in _JSON_PLAIN:
        return value
    if t is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k if type(k) is str else str(k): v if type(v) in _JSON_PLAIN else _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _JSON_PLAIN else _jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (str, int)):  # subclasses (bool is an int)
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    return str(value)


def _plane_row(p: R.PlaneTotals, study: Study, obj: DoseObject) -> PlaneTotal:
    return PlaneTotal(
        dose_object=obj, study=study, plane=p.plane,
        dap_total_gy_cm2=p.dap_total_gy_cm2, dose_rp_total_gy=p.dose_rp_total_gy,
        fluoro_dap_total_gy_cm2=p.fluoro_dap_total_gy_cm2, acquisition_dap_total_gy_cm2=p.acquisition_dap_total_gy_cm2,
        fluoro_dose_rp_total_gy=p.fluoro_dose_rp_total_gy, acquisition_dose_rp_total_gy=p.acquisition_dose_rp_total_gy,
        fluoro_time_total_s=p.fluoro_time_total_s, acquisition_time_total_s=p.acquisition_time_total_s,
        total_frames=p.total_frames, reference_point_definition=_s(p.reference_point_definition)[:256],
        reference_point_code=_s(p.reference_point_code)[:64], derived=p.derived,
    )
