"""Projection X-ray: TID 10001 / 10003 (events, accumulated planes), vendor containers (Siemens patient
position, Philips shutters), Siemens Arcadis 99SMS_RADSUM and the Enhanced X-Ray Radiation Dose SR (best effort).
No Django."""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable

from . import codes as C
from . import mammo as M
from . import units as U
from .reader import Code, Node
from .records import IrradiationEvent, Participant, PlaneTotals
from .extract_context import (
    _Ctx,
    _add_participant,
    _code_str,
    _device_fallbacks,
    _person,
    _text_value,
)


# Siemens angiography (AXIOM-Artis, Artis zee/Q) write the patient position of the procedure into a private
# study-level Comment (121106): <Root><PatientPosition><Position SRData="HFS "/>...</Root>. The DICOM patient
# position terms (PS3.3 C.7.3.1.1.2) map to the TID 10003 items: Patient Table Relationship (113745), Patient
# Orientation (113743) and its modifier (113744), written with the same meanings as the standard codes.
_SIEMENS_POSITION = re.compile(r'<PatientPosition>\s*<Position\s+SRData="\s*([A-Z]{3,4})\s*"')
POSITION_TERMS: dict[str, tuple[str, str, str]] = {
    "HFS": ("headfirst", "recumbent", "supine"),
    "HFP": ("headfirst", "recumbent", "prone"),
    "FFS": ("feet-first", "recumbent", "supine"),
    "FFP": ("feet-first", "recumbent", "prone"),
    "HFDR": ("headfirst", "recumbent", "right lateral decubitus"),
    "HFDL": ("headfirst", "recumbent", "left lateral decubitus"),
    "FFDR": ("feet-first", "recumbent", "right lateral decubitus"),
    "FFDL": ("feet-first", "recumbent", "left lateral decubitus"),
}


def _siemens_position(comment: str | None) -> str | None:
    if not comment or "<PatientPosition>" not in comment:
        return None
    m = _SIEMENS_POSITION.search(comment)
    return m.group(1) if m else None


def _vendor_orientation(ctx: _Ctx) -> None:
    """Events without a standard Patient Orientation get the one of the Siemens private comment (source kept)."""
    pos = ctx.siemens_position
    if pos is None:
        return
    terms = POSITION_TERMS.get(pos)
    if terms is None:
        ctx.warn(f"Siemens private comment: patient position {pos!r} not recognised; orientation not set")
        return
    relationship, orientation, modifier = terms
    for ev in ctx.doc.events:
        if ev.extra.get("patient_orientation"):
            continue
        ev.extra["patient_table_relationship"] = ev.extra.get("patient_table_relationship") or relationship
        ev.extra["patient_orientation"] = orientation
        ev.extra["patient_orientation_modifier"] = modifier
        ev.extra["patient_orientation_source"] = f"Siemens private comment (PatientPosition {pos})"


# Philips (99PHI-IXR-XPER) give the collimation as four shutter positions in a private "Wedges and Shutters"
# container, in mm at 1 m from the focal spot (the convention of dosereg.skindose.engine and PySkinDose). With
# the source-to-detector distance they give the collimated field area at the image receptor, which is what
# Collimated Field Area (113790) holds: (left + right) x (top + bottom) x (SID / 1000 mm)^2.
_PHILIPS_SHUTTERS = tuple(f"Wedges and Shutters/{side} Shutter" for side in ("Left", "Right", "Top", "Bottom"))


def _private_mm(private: dict, key: str) -> float | None:
    v = private.get(key)
    if isinstance(v, dict):
        if v.get("unit") not in (None, "mm"):
            return None
        v = v.get("value")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _philips_field_area(ev: IrradiationEvent) -> None:
    if ev.collimated_field_area_m2 is not None:
        return
    private = ev.extra.get("private")
    if not isinstance(private, dict) or _PHILIPS_SHUTTERS[0] not in private:
        return
    shutters = [_private_mm(private, k) for k in _PHILIPS_SHUTTERS]
    sid = ev.distance_source_to_detector_mm or _private_mm(private, "Final Distance Source to Detector")
    if any(v is None for v in shutters) or not sid or sid <= 0:
        return
    left, right, top, bottom = (v or 0.0 for v in shutters)
    scale = sid / 1000.0
    width_mm, height_mm = (left + right) * scale, (top + bottom) * scale
    if width_mm <= 0 or height_mm <= 0:
        return
    ev.collimated_field_area_m2 = width_mm * height_mm / 1e6
    ev.extra["collimated_field_size_mm"] = [round(width_mm, 3), round(height_mm, 3)]
    ev.extra["collimated_field_area_source"] = "Philips private shutters at 1 m, scaled to the source-to-detector distance"


def _projection_modality(ctx: _Ctx, proc: Code | None) -> None:
    doc = ctx.doc
    if proc is not None and proc.key == C.MAMMOGRAPHY:
        doc.procedure_modality = "MG"
        return
    fluoro = any(e.event_type == "fluoroscopy" for e in doc.events) or any(
        (p.fluoro_time_total_s or 0) > 0 or (p.fluoro_dap_total_gy_cm2 or 0) > 0 for p in doc.planes)
    if fluoro:
        doc.procedure_modality = "RF"
    elif any(e.agd_mgy is not None for e in doc.events) or doc.breasts:
        doc.procedure_modality = "MG"
    else:
        doc.procedure_modality = "DX"


# --- TID 10001 ---------------------------------------------------------------------
_PLANE_NUM = {
    C.DAP_TOTAL: ("dap_total_gy_cm2", "dap_gy_cm2"),
    C.DOSE_RP_TOTAL: ("dose_rp_total_gy", "dose_gy"),
    C.FLUORO_DAP_TOTAL: ("fluoro_dap_total_gy_cm2", "dap_gy_cm2"),
    C.ACQ_DAP_TOTAL: ("acquisition_dap_total_gy_cm2", "dap_gy_cm2"),
    C.FLUORO_DOSE_RP_TOTAL: ("fluoro_dose_rp_total_gy", "dose_gy"),
    C.ACQ_DOSE_RP_TOTAL: ("acquisition_dose_rp_total_gy", "dose_gy"),
    C.TOTAL_FLUORO_TIME: ("fluoro_time_total_s", "time_s"),
    C.TOTAL_ACQ_TIME: ("acquisition_time_total_s", "time_s"),
}

_EVENT_NUM = {
    C.DAP: ("dap_gy_cm2", "dap_gy_cm2"),
    C.DOSE_RP: ("dose_rp_gy", "dose_gy"),
    C.ENTRANCE_EXPOSURE_AT_RP: ("entrance_exposure_at_rp_mgy", "dose_mgy"),
    C.KVP: ("kvp", "kv"),
    C.TUBE_CURRENT: ("tube_current_ma", "ma"),
    C.EXPOSURE_TIME: ("exposure_time_ms", "time_ms"),
    C.EXPOSURE_TIME_CT: ("exposure_time_ms", "time_ms"),
    C.PULSE_WIDTH: ("pulse_width_ms", "time_ms"),
    C.PULSE_RATE: ("pulse_rate_per_s", "rate_per_s"),
    C.NUMBER_OF_PULSES: ("number_of_pulses", "count"),
    C.IRRADIATION_DURATION: ("irradiation_duration_s", "time_s"),
    C.POSITIONER_PRIMARY_ANGLE: ("positioner_primary_angle_deg", "angle_deg"),
    C.POSITIONER_SECONDARY_ANGLE: ("positioner_secondary_angle_deg", "angle_deg"),
    C.DISTANCE_SOURCE_TO_DETECTOR: ("distance_source_to_detector_mm", "length_mm"),
    C.COLLIMATED_FIELD_AREA: ("collimated_field_area_m2", "area_m2"),
    C.EXPOSURE_INDEX: ("exposure_index", "count"),
    C.DEVIATION_INDEX: ("deviation_index", "count"),
}
_EVENT_EXTRA_NUM = {
    C.EXPOSURE: ("exposure_uas", "charge_uas"),
    C.AVERAGE_TUBE_CURRENT: ("average_tube_current_ma", "ma"),
    C.TARGET_EXPOSURE_INDEX: ("target_exposure_index", "count"),
    C.FOCAL_SPOT_SIZE: ("focal_spot_size_mm", "length_mm"),
    C.DISTANCE_SOURCE_TO_ISOCENTER: ("distance_source_to_isocenter_mm", "length_mm"),
    C.DISTANCE_SOURCE_TO_RP: ("distance_source_to_rp_mm", "length_mm"),
    C.TABLE_LONGITUDINAL: ("table_longitudinal_position_mm", "length_mm"),
    C.TABLE_LATERAL: ("table_lateral_position_mm", "length_mm"),
    C.TABLE_HEIGHT: ("table_height_position_mm", "length_mm"),
}
_EVENT_EXTRA_CODE = {
    C.XRAY_GRID: "grid",
    C.PATIENT_ORIENTATION: "patient_orientation",
    C.PATIENT_TABLE_RELATIONSHIP: "patient_table_relationship",
}
_SIEMENS_FRAMES = re.compile(r'<NumOfFrames SRData="\s*(\d+)\s*"')
# TID 10003B allows one value per pulse (VM 1-n as repeated items) for these: the event keeps their mean,
# and extra["per_pulse"] keeps mean, minimum, maximum, count and the reported values.
_PER_PULSE = {"kvp", "tube_current_ma", "pulse_width_ms", "exposure_uas"}


def _summarise_per_pulse(ev: IrradiationEvent, per_pulse: dict[str, list[float]]) -> None:
    for attr, values in per_pulse.items():
        mean = sum(values) / len(values)
        if attr == "exposure_uas":  # kept in extra (no column)
            ev.extra[attr] = mean
        else:
            setattr(ev, attr, mean)
        if len(values) > 1:
            ev.extra.setdefault("per_pulse", {})[attr] = {
                "mean": mean, "min": min(values), "max": max(values), "count": len(values), "values": values,
            }


def _plane_of(node: Node) -> str | None:
    for ch in node.children:
        if ch.key == C.ACQUISITION_PLANE and isinstance(ch.value, Code):
            p = C.PLANES.get(ch.value.key)
            if p == "all":
                return "single"
            return p
    return None


def _rp_definition(node: Node) -> tuple[str | None, str | None]:
    v = node.value
    if isinstance(v, Code):
        return (v.meaning or C.RP_DEFINITIONS.get(v.value) or v.value), f"{v.scheme}:{v.value}"
    text = _text_value(node)
    if text:
        for code, meaning in C.RP_DEFINITIONS.items():
            if meaning.lower() == text.lower():
                return text, f"DCM:{code}"
    return text, None


def _extract_projection(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    for ch in root.children:
        k = ch.key
        if k == C.ACCUMULATED_XRAY_DOSE:
            _plane_totals(ctx, ch)
        elif k == C.IRRADIATION_EVENT:
            ev = _projection_event(ctx, ch)
            doc.events.append(ev)
    _complete_planes(ctx)
    if not doc.events and not any(pt.dap_total_gy_cm2 is not None or pt.dose_rp_total_gy is not None
                                  for pt in doc.planes):
        ctx.warn("empty report: no irradiation event and no accumulated dose (DAP or Ka,r) in this X-Ray "
                 "Radiation Dose SR; nothing is recorded for this procedure")


def _plane_totals(ctx: _Ctx, node: Node, plane: str | None = None) -> PlaneTotals:
    plane = plane or _plane_of(node)
    if plane is None:
        plane = "single"
        ctx.warn("Accumulated X-Ray Dose without Acquisition Plane; assumed single plane")
    pt = None
    for existing in ctx.doc.planes:
        if existing.plane == plane:
            pt = existing
            ctx.warn(f"more than one accumulated dose container for plane {plane}; merged")
            break
    if pt is None:
        pt = PlaneTotals(plane=plane)
        ctx.doc.planes.append(pt)
    _fill_plane(ctx, pt, node, 0)
    return pt


def _fill_plane(ctx: _Ctx, pt: PlaneTotals, node: Node, depth: int) -> None:
    for ch in node.children:
        k = ch.key
        spec = _PLANE_NUM.get(k) if k is not None else None
        if spec is not None:
            if ch.vt != "NUM":
                _not_num(ctx, ch)
            elif getattr(pt, spec[0]) is None:
                setattr(pt, spec[0], ctx.num(ch, spec[1]))
                # sent (maybe empty or in an unknown unit): never replaced by a derived value
                ctx.plane_sent.setdefault(pt.plane, set()).add(spec[0])
        elif k == C.TOTAL_FRAMES:
            v = ctx.num(ch, "count")
            pt.total_frames = int(round(v)) if v is not None else None
        elif k == C.REFERENCE_POINT_DEFINITION:
            pt.reference_point_definition, pt.reference_point_code = _rp_definition(ch)
        elif k == M.ACCUMULATED_AGD:
            M.accumulated_item(ctx, ch)  # TID 10005, per breast
        elif ch.vt == "CONTAINER" and k not in (C.CALIBRATION,) and depth < 3:
            # TID 10004/10005/10007 are normally inlined, but tolerate wrapping containers
            _fill_plane(ctx, pt, ch, depth + 1)


def _not_num(ctx: _Ctx, node: Node) -> None:
    what = (node.concept.meaning or node.concept.value) if node.concept is not None else "value"
    ctx.flag(f"{what}: value type {node.vt or 'missing'} where NUM is expected; ignored")


def _flatten_private(ctx: _Ctx, node: Node, out: dict, prefix: str, depth: int) -> None:
    for ch in node.children:
        c = ch.concept
        if c is None:
            continue
        name = prefix + (c.meaning or f"{c.scheme}:{c.value}")
        if ch.vt == "CONTAINER":
            if depth < 3:
                _flatten_private(ctx, ch, out, name + "/", depth + 1)
            continue
        v = ch.value
        if ch.vt == "NUM":
            n = U.parse_number(v) if v is not None else None
            unit = ch.unit.value if ch.unit is not None else None
            out[name] = n if not unit or unit == "1" else {"value": n, "unit": unit}
        elif isinstance(v, Code):
            out[name] = v.meaning or v.value
        else:
            out[name] = v


def _projection_event(ctx: _Ctx, node: Node) -> IrradiationEvent:
    ev = IrradiationEvent()
    extra = ev.extra
    filters: list[dict] = []
    per_pulse: dict[str, list[float]] = {}
    for ch in node.children:
        k = ch.key
        if k is None:
            continue
        if k in M.EVENT_CODES and M.event_item(ctx, ev, ch):  # mammography rows (TID 10010)
            continue
        spec = _EVENT_NUM.get(k)
        if spec is not None:
            if ch.vt == "NUM":
                v = ctx.num(ch, spec[1])
                if spec[0] in _PER_PULSE:
                    if v is not None:
                        per_pulse.setdefault(spec[0], []).append(v)
                elif getattr(ev, spec[0]) is None:
                    setattr(ev, spec[0], v)
            else:
                _not_num(ctx, ch)
            continue
        spec = _EVENT_EXTRA_NUM.get(k)
        if spec is not None:
            if ch.vt == "NUM":
                v = ctx.num(ch, spec[1])
                if v is not None and spec[0] in _PER_PULSE:
                    per_pulse.setdefault(spec[0], []).append(v)
                elif v is not None:
                    extra[spec[0]] = v
            else:
                _not_num(ctx, ch)
            continue
        if k == C.ACQUISITION_PLANE:
            if isinstance(ch.value, Code):
                p = C.PLANES.get(ch.value.key)
                ev.plane = "single" if p == "all" else p
        elif k == C.DATETIME_STARTED:
            ev.datetime = ctx.dt(_text_value(ch), "DateTime Started")
        elif k == C.IRRADIATION_EVENT_TYPE:
            if isinstance(ch.value, Code):
                ev.event_type = C.EVENT_TYPES.get(ch.value.key)
                ev.event_type_code = f"{ch.value.scheme}:{ch.value.value}"
                if ev.event_type is None:
                    ctx.warn(f"unknown Irradiation Event Type {ev.event_type_code} ({ch.value.meaning!r})")
        elif k == C.ACQUISITION_PROTOCOL:
            ev.protocol = _text_value(ch)
        elif k == C.REFERENCE_POINT_DEFINITION:
            ev.reference_point_definition, code = _rp_definition(ch)
            if code:
                extra["reference_point_code"] = code
        elif k == C.IRRADIATION_EVENT_UID or (k == C.IRRADIATION_EVENT_UID_ALT and ev.irradiation_event_uid is None):
            ev.irradiation_event_uid = _text_value(ch)
        elif k == C.FLUORO_MODE:
            if isinstance(ch.value, Code):
                ev.fluoro_mode = C.FLUORO_MODES.get(ch.value.key)
        elif k == C.TARGET_REGION:
            _target_region(ev, ch)
            for mod in ch.children:  # Laterality is a concept modifier of the Target Region (mammography)
                if mod.key == M.LATERALITY:
                    M.event_item(ctx, ev, mod)
        elif k == C.COMMENT:
            ev.comment = _text_value(ch)
            if ev.comment and "<NumOfFrames" in ev.comment and ev.number_of_frames is None:
                m = _SIEMENS_FRAMES.search(ev.comment)
                if m:
                    ev.number_of_frames = int(m.group(1))
        elif k == C.XRAY_FILTERS:
            f: dict[str, Any] = {}
            for fc in ch.children:
                fk = fc.key
                if fk == C.XRAY_FILTER_TYPE:
                    f["type"] = _text_value(fc)
                elif fk == C.XRAY_FILTER_MATERIAL:
                    f["material"] = _text_value(fc)
                elif fk == C.XRAY_FILTER_THICKNESS_MIN:
                    f["thickness_min_mm"] = ctx.num(fc, "length_mm")
                elif fk == C.XRAY_FILTER_THICKNESS_MAX:
                    f["thickness_max_mm"] = ctx.num(fc, "length_mm")
            filters.append(f)
        elif k in _EVENT_EXTRA_CODE:
            extra[_EVENT_EXTRA_CODE[k]] = _text_value(ch)
            if k == C.PATIENT_ORIENTATION:
                for mc in ch.children:
                    extra["patient_orientation_modifier"] = _text_value(mc)
        elif k == C.PERSON_NAME:
            _person(ctx, ch)
        elif k == C.PERFORMING_PHYSICIAN_TEXT or k == C.PHILIPS_PERFORMING_PHYSICIAN:
            name = _text_value(ch)
            if name:
                _add_participant(ctx.doc, Participant(name=name, role="performing_physician", source="event_text"))
        elif k == C.PHILIPS_NUMBER_OF_FRAMES:
            v = U.parse_number(ch.value) if isinstance(ch.value, str) else None
            if v is not None:
                ev.number_of_frames = int(round(v))
        elif k == C.PHILIPS_FLUORO_FLAVOUR:
            ev.dose_mode = _text_value(ch)
        elif k == C.ACQUIRED_IMAGE:
            if ch.value:
                extra.setdefault("acquired_image_uids", []).append(ch.value)
        if k[1].startswith("99"):
            priv = extra.setdefault("private", {})
            if ch.vt == "CONTAINER":
                _flatten_private(ctx, ch, priv, (ch.concept.meaning or k[0]) + "/", 1)  # type: ignore[union-attr]
            else:
                tmp: dict = {}
                holder = Node()
                holder.children = [ch]
                _flatten_private(ctx, holder, tmp, "", 0)
                priv.update(tmp)
    _summarise_per_pulse(ev, per_pulse)
    _philips_field_area(ev)
    if ev.tube_current_ma is None and "average_tube_current_ma" in extra:
        ev.tube_current_ma = extra["average_tube_current_ma"]
    if filters:
        extra["filters"] = filters
        mats = [str(f["material"]) for f in filters if f.get("material")]
        if mats:
            ev.filter_material = "; ".join(mats)
    if ev.plane is None:
        ev.plane = "single"
    if ev.irradiation_event_uid is None:
        ctx.warn("Irradiation event without Irradiation Event UID (113769)")
    return ev


def _target_region(ev: IrradiationEvent, node: Node) -> None:
    v = node.value
    if isinstance(v, Code):
        ev.target_region = v.meaning or v.value
        ev.target_region_code = _code_str(v)
    else:
        ev.target_region = _text_value(node)


def _complete_planes(ctx: _Ctx) -> None:
    """Derive totals from events where the device omitted them."""
    doc = ctx.doc
    by_plane: dict[str, list[IrradiationEvent]] = {}
    for ev in doc.events:
        by_plane.setdefault(ev.plane or "single", []).append(ev)
    sent_planes = {p.plane for p in doc.planes}
    for plane, events in by_plane.items():
        pt = next((p for p in doc.planes if p.plane == plane), None)
        created = pt is None
        if pt is None and plane == "single" and sent_planes & {"A", "B"}:
            # the device's accumulated data name planes A/B while these events say "single plane": a total
            # derived from them would count the same exposure twice. Keep the device's totals; flag the report.
            ctx.warn(f"inconsistent planes: accumulated dose data name plane(s) "
                     f"{', '.join(sorted(sent_planes & {'A', 'B'}))} while {len(events)} irradiation event(s) say "
                     f"single plane; no total derived from those events (it would double count)")
            continue
        if pt is None:
            pt = PlaneTotals(plane=plane)
            doc.planes.append(pt)

        def total(attr: str, sel: Callable[[IrradiationEvent], bool] = lambda e: True) -> float | None:
            vals = [getattr(e, attr) for e in events if sel(e) and getattr(e, attr) is not None]
            return sum(vals) if vals else None

        is_fluoro = (lambda e: e.event_type == "fluoroscopy")
        not_fluoro = (lambda e: e.event_type is not None and e.event_type != "fluoroscopy")
        derived_fields = []
        sent = ctx.plane_sent.get(plane, set())
        for attr, value in (
            ("dap_total_gy_cm2", lambda: total("dap_gy_cm2")),
            ("dose_rp_total_gy", lambda: total("dose_rp_gy")),
        ):
            if getattr(pt, attr) is None and attr not in sent:
                v = value()
                if v is not None:
                    setattr(pt, attr, v)
                    derived_fields.append(attr)
        if created:
            for attr, value in (
                ("fluoro_dap_total_gy_cm2", lambda: total("dap_gy_cm2", is_fluoro)),
                ("acquisition_dap_total_gy_cm2", lambda: total("dap_gy_cm2", not_fluoro)),
                ("fluoro_dose_rp_total_gy", lambda: total("dose_rp_gy", is_fluoro)),
                ("acquisition_dose_rp_total_gy", lambda: total("dose_rp_gy", not_fluoro)),
                ("fluoro_time_total_s", lambda: total("irradiation_duration_s", is_fluoro)),
                ("acquisition_time_total_s", lambda: total("irradiation_duration_s", not_fluoro)),
            ):
                v = value()
                if v is not None:
                    setattr(pt, attr, v)
                    derived_fields.append(attr)
        if pt.reference_point_definition is None:
            defs = Counter(e.reference_point_definition for e in events if e.reference_point_definition)
            if defs:
                pt.reference_point_definition = defs.most_common(1)[0][0]
                codes_ = [e.extra.get("reference_point_code") for e in events
                          if e.reference_point_definition == pt.reference_point_definition]
                pt.reference_point_code = next((c for c in codes_ if c), None)
        if derived_fields:
            pt.derived = True
            ctx.warn(f"plane {plane}: device omitted {', '.join(derived_fields)}; computed from "
                     f"{len(events)} irradiation events (derived)")


# --- Siemens Arcadis 99SMS_RADSUM ---------------------------------------------------
def _extract_radsum(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    doc.template_id = None
    doc.procedure_modality = "RF"
    pt = PlaneTotals(plane="single")
    for ch in root.children:
        what = C.SIEMENS_RADSUM.get(ch.key)  # type: ignore[arg-type]
        if what == "dap":
            pt.dap_total_gy_cm2 = ctx.num(ch, "dap_gy_cm2")
        elif what == "air_kerma":
            pt.dose_rp_total_gy = ctx.num(ch, "dose_gy")
        elif what == "fluoro_time":
            pt.fluoro_time_total_s = ctx.num(ch, "time_s")
        elif what == "start":
            doc.start_of_irradiation = ctx.dt(_text_value(ch), "Start of the examination")
        elif what == "end":
            doc.end_of_irradiation = ctx.dt(_text_value(ch), "End of the examination")
    doc.planes.append(pt)
    ctx.warn("Siemens private Radiation Summary Report (99SMS_RADSUM): accumulated totals only, no events")
    _device_fallbacks(ctx)


# --- Enhanced X-Ray Radiation Dose SR (best effort) ---------------------------------------
def _extract_enhanced(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    accum = [ch for ch in root.children if ch.key in (C.ENH_ACCUMULATED_DOSE, C.ACCUMULATED_XRAY_DOSE)]
    names = ["single"] if len(accum) == 1 else ["A", "B", "C", "D"]
    for i, node in enumerate(accum[:4]):
        plane = _plane_of(node) or names[i]
        _plane_totals(ctx, node, plane)
    for ch in root.children:
        if ch.key in (C.IRRADIATION_EVENT, C.ENH_EVENT_SUMMARY, C.ENH_IRRADIATION_DETAILS):
            ev = _projection_event(ctx, ch)
            # values may sit in nested containers in TID 10043+: search one level down
            for sub in ch.children:
                if sub.vt == "CONTAINER":
                    inner = _projection_event(ctx, sub)
                    for attr in ("dap_gy_cm2", "dose_rp_gy", "kvp", "tube_current_ma", "irradiation_event_uid",
                                 "datetime", "event_type", "event_type_code"):
                        if getattr(ev, attr) is None and getattr(inner, attr) is not None:
                            setattr(ev, attr, getattr(inner, attr))
            doc.events.append(ev)
    _complete_planes(ctx)


