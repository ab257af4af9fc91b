"""CT: TID 10011 / 10013 (events, CTDIvol, DLP, SSDE, technique) and TID 10015 Dose Check. No Django."""
from __future__ import annotations

from typing import Any

from . import codes as C
from . import units as U
from .reader import Code, Node
from .records import DoseCheck, IrradiationEvent
from .extract_context import (
    _Ctx,
    _person,
    _text_value,
    _yes_no,
)
from .extract_projection import (
    _target_region,
)


# --- TID 10011 CT -----------------------------------------------------------------------
def _extract_ct(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    for ch in root.children:
        k = ch.key
        if k == C.CT_ACCUMULATED:
            for ac in ch.children:
                ak = ac.key
                if ak == C.CT_TOTAL_EVENTS:
                    v = ctx.num(ac, "count")
                    doc.ct_total_events = int(round(v)) if v is not None else None
                elif ak == C.CT_DLP_TOTAL:
                    doc.dlp_total_mgy_cm = ctx.num(ac, "dlp_mgy_cm")
        elif k == C.CT_ACQUISITION:
            doc.events.append(_ct_event(ctx, ch))
    if doc.dlp_total_mgy_cm is None and doc.events:
        vals = [e.dlp_mgy_cm for e in doc.events if e.dlp_mgy_cm is not None]
        if vals:
            doc.dlp_total_mgy_cm = sum(vals)
            ctx.warn(f"CT Dose Length Product Total missing; computed from {len(vals)} events (derived)")
    if doc.ct_total_events is not None and doc.ct_total_events != len(doc.events):
        ctx.warn(f"Total Number of Irradiation Events says {doc.ct_total_events} but "
                 f"{len(doc.events)} CT Acquisition containers are present")


def _ct_event(ctx: _Ctx, node: Node) -> IrradiationEvent:
    ev = IrradiationEvent()
    extra = ev.extra
    sources: list[dict] = []
    for ch in node.children:
        k = ch.key
        if k == C.ACQUISITION_PROTOCOL:
            ev.protocol = _text_value(ch)
        elif k == C.TARGET_REGION:
            _target_region(ev, ch)
        elif k == C.CT_ACQUISITION_TYPE and isinstance(ch.value, Code):
            ev.event_type = C.EVENT_TYPES.get(ch.value.key)
            ev.event_type_code = f"{ch.value.scheme}:{ch.value.value}"
            if ev.event_type is None:
                ctx.warn(f"unknown CT Acquisition Type {ev.event_type_code} ({ch.value.meaning!r})")
        elif k == C.IRRADIATION_EVENT_UID:
            ev.irradiation_event_uid = _text_value(ch)
        elif k == C.DATETIME_STARTED:
            ev.datetime = ctx.dt(_text_value(ch), "DateTime Started")
        elif k == C.COMMENT:
            ev.comment = _text_value(ch)
        elif k == C.CT_MODULATION_TYPE:
            extra["xray_modulation_type"] = _text_value(ch)
        elif k == C.PERSON_NAME:
            _person(ctx, ch)
        elif k == C.CT_ACQ_PARAMETERS:
            for pc in ch.children:
                pk = pc.key
                if pk in (C.EXPOSURE_TIME_CT, C.EXPOSURE_TIME):
                    ev.ct_exposure_time_s = ctx.num(pc, "time_s")
                elif pk == C.CT_SCANNING_LENGTH:
                    ev.ct_scanning_length_mm = ctx.num(pc, "length_mm")
                elif pk == C.CT_PITCH:
                    ev.ct_pitch_factor = ctx.num(pc, "count")
                elif pk == C.CT_SINGLE_COLLIMATION:
                    extra["nominal_single_collimation_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_TOTAL_COLLIMATION:
                    extra["nominal_total_collimation_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_EXPOSED_RANGE:
                    extra["exposed_range_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_RECONSTRUCTABLE_LENGTH:
                    extra["reconstructable_length_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_NUMBER_OF_SOURCES:
                    v = ctx.num(pc, "count")
                    extra["number_of_xray_sources"] = int(round(v)) if v is not None else None
                elif pk == C.CT_SOURCE_PARAMETERS:
                    src: dict[str, Any] = {}
                    for sc in pc.children:
                        sk = sc.key
                        if sk == C.CT_SOURCE_ID:
                            src["id"] = _text_value(sc)
                        elif sk == C.KVP:
                            src["kvp"] = ctx.num(sc, "kv")
                        elif sk == C.TUBE_CURRENT:
                            src["tube_current_ma"] = ctx.num(sc, "ma")
                        elif sk == C.CT_MAX_TUBE_CURRENT:
                            src["max_tube_current_ma"] = ctx.num(sc, "ma")
                        elif sk == C.CT_ROTATION_TIME:
                            src["rotation_time_s"] = ctx.num(sc, "time_s")
                    sources.append(src)
        elif k == C.CT_DOSE:
            _ct_dose(ctx, ev, ch)
        elif k in (C.DOSE_CHECK_ALERT, C.DOSE_CHECK_NOTIFICATION):
            _dose_check(ctx, ev, ch)
    if sources:
        ev.kvp = sources[0].get("kvp")
        ev.tube_current_ma = sources[0].get("tube_current_ma")
        if len(sources) > 1:
            extra["sources"] = sources
        elif sources[0].get("max_tube_current_ma") is not None:
            extra["max_tube_current_ma"] = sources[0]["max_tube_current_ma"]
        if sources[0].get("rotation_time_s") is not None:
            extra["rotation_time_s"] = sources[0]["rotation_time_s"]
    if ev.irradiation_event_uid is None:
        ctx.warn("CT Acquisition without Irradiation Event UID (113769)")
    return ev


def _ct_dose(ctx: _Ctx, ev: IrradiationEvent, node: Node) -> None:
    for ch in node.children:
        k = ch.key
        if k == C.CT_MEAN_CTDIVOL:
            ev.ctdivol_mgy = ctx.num(ch, "dose_mgy")
        elif k == C.CT_DLP:
            ev.dlp_mgy_cm = ctx.num(ch, "dlp_mgy_cm")
        elif k == C.CT_SSDE:
            ev.ssde_mgy = ctx.num(ch, "dose_mgy")
        elif k == C.CT_PHANTOM_TYPE and isinstance(ch.value, Code):
            ev.ctdiw_phantom = C.PHANTOMS.get(ch.value.key)
        elif k == C.CT_EFFECTIVE_DOSE:
            if ch.value is not None:
                ev.extra["effective_dose_msv"] = U.parse_number(ch.value)
        elif k in (C.DOSE_CHECK_ALERT, C.DOSE_CHECK_NOTIFICATION):
            _dose_check(ctx, ev, ch)


def _dose_check(ctx: _Ctx, ev: IrradiationEvent, node: Node) -> None:
    dc = ev.dose_check or DoseCheck()
    ev.dose_check = dc
    for ch in node.children:
        k = ch.key
        if k in C.DC_FIELDS_BOOL:
            setattr(dc, C.DC_FIELDS_BOOL[k], _yes_no(ch))
        elif k in C.DC_FIELDS_NUM:
            attr, q = C.DC_FIELDS_NUM[k]
            setattr(dc, attr, ctx.num(ch, q))
        elif k == C.DC_REASON:
            dc.reason_for_proceeding = _text_value(ch)
        elif k == C.PERSON_NAME:
            dc.authorizing_person = _text_value(ch)
            if dc.authorizing_person:
                _person(ctx, ch)


