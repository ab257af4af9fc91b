"""Skin dose: compute and store a study's peak skin dose (the engine is pure; this module owns the writes)."""
from __future__ import annotations

import logging

from django.db import transaction

from dosereg.registry.models import IrradiationEvent, Study

from . import engine
from .models import SkinRoomSetting, StudySkinDose
from .render import skin_map_png

log = logging.getLogger(__name__)

_EVENT_FIELDS = (
    "irradiation_event_uid", "event_type", "plane", "dose_rp_gy", "kvp", "positioner_primary_angle_deg",
    "positioner_secondary_angle_deg", "distance_source_to_detector_mm", "distance_source_to_isocenter_mm",
    "table_longitudinal_position_mm", "table_lateral_position_mm", "table_height_position_mm",
    "collimated_field_area_m2", "reference_point_definition", "extra",
)


def room_setting_for(device_id: int | None) -> SkinRoomSetting | None:
    """The active setting of this room, else the active default (no device), else None (engine defaults)."""
    rows = SkinRoomSetting.objects.filter(active=True, device_id__in=[device_id] if device_id else []) \
        .order_by("-version")[:1]
    row = next(iter(rows), None)
    if row is None:
        row = SkinRoomSetting.objects.filter(active=True, device__isnull=True).order_by("-version").first()
    return row


def room_settings(row: SkinRoomSetting | None) -> engine.RoomSettings:
    if row is None:
        return engine.RoomSettings()
    conv = None
    if row.convention:
        c = row.convention
        conv = engine.GeometryConvention(
            source=str(c.get("source") or f"room setting v{row.version}"),
            translation_offset_cm=tuple(float(v) for v in c.get("translation_offset_cm", (0, 0, 0))),  # type: ignore[arg-type]
            translation_direction=tuple(int(v) for v in c.get("translation_direction", (1, 1, 1))),  # type: ignore[arg-type]
            rotation_direction={k: int(v) for k, v in (c.get("rotation_direction") or {}).items()} or
            {k: 1 for k in ("Ap1", "Ap2", "Ap3", "At1", "At2", "At3")},
            detector_side_length_cm=float(c.get("detector_side_length_cm", 40.0)),
        )
    return engine.RoomSettings(
        table_pad_transmission=row.table_pad_transmission, transmission_source=row.transmission_source,
        inherent_filtration_mm_al=row.inherent_filtration_mm_al, table_length_cm=row.table_length_cm,
        table_width_cm=row.table_width_cm, table_thickness_cm=row.table_thickness_cm,
        pad_thickness_cm=row.pad_thickness_cm, phantom=row.phantom, convention=conv,
    )


def study_events(study_id: int) -> list[engine.SkinEvent]:
    rows = IrradiationEvent.objects.filter(study_id=study_id).order_by("datetime", "pk").values(*_EVENT_FIELDS)
    return [engine.skin_event(r["irradiation_event_uid"], r, r["extra"] or {}) for r in rows]


def study_skin_dose_compute(*, study_id: int) -> StudySkinDose | None:
    """Compute (again) and store the study's PSD. A study without any Ka,r gets no result (none is stored)."""
    study = Study.objects.select_related("device").filter(pk=study_id).first()
    if study is None:
        return None
    events = study_events(study_id)
    if not any(e.dose_rp_gy is not None for e in events):
        StudySkinDose.objects.filter(study_id=study_id).delete()
        return None
    device = study.device
    setting = room_setting_for(device.pk if device else None)
    room = room_settings(setting)
    try:
        res = engine.compute(events, manufacturer=device.manufacturer if device else None,
                             model=device.model if device else None, room=room, with_map=True)
        error = ""
    except Exception as exc:  # a defect in the engine must not lose the study's other results; recorded, shown
        log.exception("skin dose of study %s failed", study_id)
        res = engine.SkinDoseResult(computable=False, not_computable_reason=f"computation failed: {exc}",
                                    kar_total_gy=sum(e.dose_rp_gy or 0.0 for e in events))
        error = repr(exc)[:2000]
    png = None
    if res.computable and res.dose_map is not None and res.psd_gy is not None:
        png = skin_map_png(res.dose_map, phantom=res.phantom or room.phantom, psd_gy=res.psd_gy)
    values = {
        "room_setting": setting, "computable": res.computable, "psd_gy": res.psd_gy, "psd_location": res.psd_location,
        "phantom": res.phantom or "", "patient_orientation": res.patient_orientation or "",
        "corrections": res.corrections, "events_used": res.events_used, "events_skipped": res.events_skipped,
        "method": res.method, "uncertainty": res.uncertainty if res.computable else "",
        "assumptions": res.assumptions, "not_computable_reason": res.not_computable_reason or "",
        "kar_total_gy": res.kar_total_gy, "map_png": png, "map_cells": res.dose_map if res.computable else None,
        "error": error,
    }
    with transaction.atomic():
        row, _ = StudySkinDose.objects.update_or_create(study_id=study_id, defaults=values)
    return row


def studies_skin_dose_compute(*, study_ids) -> int:
    """Each study on its own: one study's failure does not stop the others."""
    n = 0
    for sid in study_ids:
        try:
            if study_skin_dose_compute(study_id=sid) is not None:
                n += 1
        except Exception:
            log.exception("skin dose of study %s could not be stored", sid)
    return n
