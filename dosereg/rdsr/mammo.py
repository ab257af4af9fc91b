"""Mammography: TID 10010 items of an X-Ray Radiation Dose SR, MG image headers, and the exposure key that
makes the For Presentation and For Processing copies of one exposure one irradiation event.

Pure (no Django). Called from :mod:`dosereg.rdsr.extract` through small hooks:

* ``event_item(ctx, ev, node)`` for each content item of a TID 10003 Irradiation Event;
* ``accumulated_item(ctx, node)`` for each item of an Accumulated X-Ray Dose container (TID 10005);
* ``image_header(ctx, h, ev)`` for an MG / DX / CR image header;
* ``exposure_event_uid(doc, ev)`` the event key of a DX / CR / MG image.

Codes are matched by (value, scheme), never by meaning (PS3.16 TID 10003/10005, CID 4014, 6022, 10016).

Organ Dose (0040,0316): PS3.3 C.8.7.8 X-Ray Acquisition Dose Module defines it as "Average organ dose value
measured or estimated during exposure procedure in dGy" (with Organ Exposed (0040,0318): BREAST, GONADS,
BONE MARROW, FETUS, LENS). It is therefore read as dGy and stored in mGy (× 100), which is also what OpenREM's
extractor does. For an MG image whose Organ Exposed is BREAST (or absent) it is the average glandular dose.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from . import codes as C
from .reader import Code, Node
from .records import BreastDose, DoseDocument, IrradiationEvent

if TYPE_CHECKING:  # pragma: no cover
    from .extract_context import Header, _Ctx

# --- TID 10003 (mammography rows) and TID 10005 --------------------------------------
AVERAGE_GLANDULAR_DOSE = C.dcm("111631")
ACCUMULATED_AGD = C.dcm("111637")
COMPRESSION_THICKNESS = C.dcm("111633")
COMPRESSION_FORCE = C.dcm("111647")
HALF_VALUE_LAYER = C.dcm("111634")
ANODE_TARGET_MATERIAL = C.dcm("111632")
IMAGE_VIEW = C.dcm("111031")
IMAGE_VIEW_MODIFIER = C.dcm("111032")
LATERALITY = C.sct("272741003")

# CID 6022 (breast) and the generic laterality values some units send
LATERALITIES = {
    C.sct("80248007"): "L",   # Left breast
    C.sct("73056007"): "R",   # Right breast
    C.sct("63762007"): "B",   # Both breasts
    C.sct("7771000"): "L",    # Left
    C.sct("24028007"): "R",   # Right
    C.sct("51440002"): "B",   # Right and left
}
# CID 4014 (subset): the ACR MQCM abbreviations that MG View Position (0018,5101) also uses
VIEWS = {
    C.sct("399162004"): "CC",
    C.sct("399368009"): "MLO",
    C.sct("399260004"): "ML",
    C.sct("399352003"): "LM",
    C.sct("399099002"): "LMO",
    C.sct("399192008"): "XCCL",
    C.sct("399101009"): "XCCM",
    C.sct("399196006"): "FB",
    C.sct("399188001"): "SIO",
    C.sct("441555000"): "ISO",
}
# CID 10016 anode target material
ANODES = {C.sct("71128006"): "molybdenum", C.sct("59801003"): "rhodium", C.sct("26194003"): "tungsten"}

EVENT_CODES = frozenset({AVERAGE_GLANDULAR_DOSE, COMPRESSION_THICKNESS, COMPRESSION_FORCE, HALF_VALUE_LAYER,
                         ANODE_TARGET_MATERIAL, IMAGE_VIEW, LATERALITY})

# --- image header tags ---------------------------------------------------------------------
T_PRESENTATION_INTENT = 0x00080068
T_ANODE = 0x00181191
T_BODY_PART_THICKNESS = 0x001811A0
T_COMPRESSION_FORCE = 0x001811A2
T_VIEW_POSITION = 0x00185101
T_IMAGE_LATERALITY = 0x00200062
T_ORGAN_DOSE_DGY = 0x00400316
T_ORGAN_EXPOSED = 0x00400318
T_HVL = 0x00400314


def event_item(ctx: _Ctx, ev: IrradiationEvent, node: Node) -> bool:
    """Read one mammography row of an irradiation event; False when ``node`` is not one."""
    k = node.key
    if k not in EVENT_CODES:
        return False
    if k == AVERAGE_GLANDULAR_DOSE:
        ev.agd_mgy = num_item(ctx, node, "dose_mgy")
    elif k == COMPRESSION_THICKNESS:
        ev.compression_thickness_mm = num_item(ctx, node, "length_mm")
    elif k == COMPRESSION_FORCE:
        ev.compression_force_n = num_item(ctx, node, "force_n")
    elif k == HALF_VALUE_LAYER:
        hvl = num_item(ctx, node, "length_mm")
        if hvl is not None:
            ev.extra["half_value_layer_mm"] = hvl
    elif k == ANODE_TARGET_MATERIAL and isinstance(node.value, Code):
        ev.anode_target_material = ANODES.get(node.value.key) or node.value.meaning or node.value.value
    elif k == LATERALITY and isinstance(node.value, Code):
        ev.laterality = LATERALITIES.get(node.value.key)
        if ev.laterality is None:
            ctx.warn(f"unknown Laterality {node.value.scheme}:{node.value.value} ({node.value.meaning!r})")
    elif k == IMAGE_VIEW and isinstance(node.value, Code):
        code = node.value
        ev.view = VIEWS.get(code.key) or code.meaning or code.value
        ev.view_code = f"{code.key[1]}:{code.key[0]}"
        mods = [_meaning(m.value) for m in node.children if m.key == IMAGE_VIEW_MODIFIER and isinstance(m.value, Code)]
        if mods:
            ev.extra["view_modifiers"] = mods
    return True


def accumulated_item(ctx: _Ctx, node: Node) -> bool:
    """Accumulated Average Glandular Dose (111637) with its Laterality (TID 10005); False for other items."""
    if node.key != ACCUMULATED_AGD:
        return False
    value = num_item(ctx, node, "dose_mgy")
    lat = None
    for ch in node.children:
        if ch.key == LATERALITY and isinstance(ch.value, Code):
            lat = LATERALITIES.get(ch.value.key)
    if lat is None:
        ctx.warn("Accumulated Average Glandular Dose (111637) without a known Laterality; kept as both breasts (B)")
        lat = "B"
    for b in ctx.doc.breasts:
        if b.laterality == lat:
            if value is not None:
                b.accumulated_agd_mgy = (b.accumulated_agd_mgy or 0.0) + value
            return True
    ctx.doc.breasts.append(BreastDose(laterality=lat, accumulated_agd_mgy=value))
    return True


def image_header(ctx: _Ctx, h: Header, ev: IrradiationEvent, modality: str) -> None:
    """MG/DX/CR header attributes: organ dose (dGy, see the module docstring), thickness, force, anode, view,
    laterality, presentation intent, half value layer."""
    from .extract_context import check_dose

    intent = (h.ascii(T_PRESENTATION_INTENT) or "").upper()
    ev.presentation_intent = intent or None
    lat = (h.ascii(T_IMAGE_LATERALITY) or "").upper()
    ev.laterality = lat if lat in ("L", "R", "B") else None
    view = (h.ascii(T_VIEW_POSITION) or "").upper()
    ev.view = view or None
    thickness = h.number(T_BODY_PART_THICKNESS)
    ev.compression_thickness_mm = thickness if thickness is not None and thickness >= 0 else None
    force = h.number(T_COMPRESSION_FORCE)
    ev.compression_force_n = force if force is not None and force >= 0 else None
    anode = h.ascii(T_ANODE)
    ev.anode_target_material = anode.lower() if anode else None
    hvl = h.number(T_HVL)
    if hvl is not None:
        ev.extra["half_value_layer_mm"] = hvl
    organ_dgy = h.number(T_ORGAN_DOSE_DGY)
    if organ_dgy is not None:
        organ = (h.ascii(T_ORGAN_EXPOSED) or "").upper()
        mgy = check_dose(organ_dgy * 100.0, "dose_mgy", "Organ Dose (0040,0316)", f"{organ_dgy:g} dGy")
        if modality == "MG" and organ in ("", "BREAST"):
            ev.agd_mgy = mgy
            ev.extra["agd_source"] = "(0040,0316) Organ Dose (dGy), Organ Exposed " + (organ or "absent: breast assumed")
        else:
            ev.extra["organ_dose_mgy"] = mgy
            ev.extra["organ_exposed"] = organ or None


def exposure_event_uid(doc: DoseDocument, ev: IrradiationEvent, header_event_uid: str | None, *,
                       acquisition_time_known: bool = True) -> str:
    """The key of the exposure a DX / CR / MG image shows, so that its For Presentation and For Processing copies
    (and any other image of the same exposure) are one irradiation event.

    The header Irradiation Event UID (0008,3010) when sent; else, when the acquisition date-time is known, a key
    derived from what both copies of one exposure share: study, device, acquisition date-time, laterality,
    view and the exposure factors (kVp, µAs, exposure time). Without an acquisition date-time an exposure
    cannot be recognised (a content date-time differs between the copies): the image's SOP Instance UID (one
    event per image)."""
    if header_event_uid:
        return header_event_uid
    if ev.datetime is None or not acquisition_time_known:
        return doc.sop_instance_uid
    d = doc.device

    def r(x: float | None) -> str:
        return "" if x is None else f"{x:.6g}"

    parts = [doc.study_instance_uid or "", d.manufacturer or "", d.model or "", d.serial_number or "",
             d.station_name or "", ev.datetime.isoformat(), ev.laterality or "", ev.view or "", r(ev.kvp),
             r(ev.extra.get("exposure_uas")), r(ev.exposure_time_ms)]
    digest = hashlib.sha1("|".join(parts).encode("utf-8", "replace")).hexdigest()
    return f"exposure-{digest}"


def num_item(ctx: _Ctx, node: Node, quantity: str) -> float | None:
    """A NUM content item's value in ``quantity``'s unit; any other value type is warned about and ignored."""
    if node.vt != "NUM":
        what = (node.concept.meaning or node.concept.value) if node.concept is not None else "value"
        ctx.warn(f"{what}: value type {node.vt or 'missing'} where NUM is expected; ignored")
        return None
    return ctx.num(node, quantity)


def _meaning(code: Code) -> str:
    return code.meaning or code.value
