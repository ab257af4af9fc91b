"""Image headers (CT/XA/RF/DX/CR/MG images: one event per image or exposure) and MR headers (no ionising
dose; SAR recorded). No Django."""
from __future__ import annotations


from . import codes as C
from . import mammo as M
from .records import (
    IMAGE_HEADER,
    MR_HEADER,
    IrradiationEvent,
    MRInfo,
    PlaneTotals,
)
from .extract_context import (
    Header,
    T_ACQ_DATE,
    T_ACQ_DATETIME,
    T_ACQ_IMAGE_AREA_DAP,
    T_ACQ_TIME,
    T_ANATOMIC_REGION_SEQ,
    T_B1RMS,
    T_BODY_PART,
    T_CONTENT_DATE,
    T_CONTENT_TIME,
    T_CTDIVOL,
    T_CTDI_PHANTOM_SEQ,
    T_CT_EXPOSURE_SEQ,
    T_DAP,
    T_DBDT,
    T_DI,
    T_DIST_SRC_DET,
    T_EI,
    T_ENTRANCE_DOSE_DGY,
    T_ENTRANCE_DOSE_MGY,
    T_EXPOSURE_MAS,
    T_EXPOSURE_TIME,
    T_EXPOSURE_TIME_US,
    T_EXPOSURE_UAS,
    T_FIELD_STRENGTH,
    T_FILTER_MATERIAL,
    T_GRADIENT_OUTPUT,
    T_GRADIENT_OUTPUT_TYPE,
    T_IRRADIATION_EVENT_UID,
    T_KVP,
    T_MR_TIMING_SEQ,
    T_NUMBER_OF_FRAMES,
    T_OPERATING_MODE,
    T_OPERATING_MODE_SEQ,
    T_OPERATING_MODE_TYPE,
    T_PERFRAME_FG,
    T_PRIMARY_ANGLE,
    T_PROTOCOL,
    T_RADIATION_MODE,
    T_RADIATION_SETTING,
    T_SAR,
    T_SAR_DEFINITION,
    T_SAR_SEQ,
    T_SAR_VALUE,
    T_SECONDARY_ANGLE,
    T_SERIES_DESC,
    T_SHARED_FG,
    T_TARGET_EI,
    T_TOTAL_FLUORO_TIME,
    T_TUBE_CURRENT,
    T_TUBE_CURRENT_UA,
    _BINARY,
    _Ctx,
    check_dose,
)


# ---------------------------------------------------------------------------
# Image headers
# ---------------------------------------------------------------------------
def _extract_image(ctx: _Ctx, h: Header, modality_hint: str) -> None:
    doc = ctx.doc
    doc.source_kind = IMAGE_HEADER
    mod = (doc.modality or modality_hint).upper()
    doc.procedure_modality = {"CR": "DX", "DX": "DX", "PX": "DX", "IO": "DX", "MG": "MG", "CT": "CT",
                              "XA": "XA", "RF": "RF"}.get(mod, modality_hint if modality_hint != "CR" else "DX")
    ev = IrradiationEvent(irradiation_event_uid=doc.sop_instance_uid)
    extra = ev.extra
    hdr_uid = h.ascii(T_IRRADIATION_EVENT_UID)
    if hdr_uid:
        extra["header_irradiation_event_uid"] = hdr_uid
    ev.datetime = ctx.dt(h.ascii(T_ACQ_DATETIME), "Acquisition DateTime") if h.ascii(T_ACQ_DATETIME) else None
    if ev.datetime is None:
        ev.datetime = ctx.da_tm(h.ascii(T_ACQ_DATE), h.ascii(T_ACQ_TIME), "Acquisition Date") or ctx.da_tm(
            h.ascii(T_CONTENT_DATE), h.ascii(T_CONTENT_TIME))
    ev.protocol = h.text(T_PROTOCOL) or h.text(T_SERIES_DESC)
    ev.plane = "single"
    for tag, label in ((T_DAP, "Image and Fluoroscopy Area Dose Product (0018,115E)"),
                       (T_ACQ_IMAGE_AREA_DAP, "Acquired Image Area Dose Product (0018,9473)"),
                       (T_ENTRANCE_DOSE_MGY, "Entrance Dose in mGy (0040,8302)"),
                       (T_ENTRANCE_DOSE_DGY, "Entrance Dose (0040,0302)"), (T_CTDIVOL, "CTDIvol (0018,9345)")):
        raw = h._bytes(tag)
        if raw and raw.strip(b" \x00") and h.number(tag) is None:  # NaN, infinity or text where a dose was sent
            shown = raw.strip(b" \x00")[:40].decode("latin-1") if tag not in _BINARY else "non-finite number"
            ctx.flag(f"unreadable dose value: {label} {shown!r}; stored as null, the study's dose is incomplete")

    dap = h.number(T_DAP)
    if dap is not None:
        ev.dap_gy_cm2 = check_dose(dap * 0.1, "dap_gy_cm2", "Image and Fluoroscopy Area Dose Product (0018,115E)",
                                   f"{dap:g} dGy.cm2")  # dGy.cm2 -> Gy.cm2
    elif h.number(T_ACQ_IMAGE_AREA_DAP) is not None:
        ev.dap_gy_cm2 = check_dose(h.number(T_ACQ_IMAGE_AREA_DAP) * 0.1,  # type: ignore[operator]
                                   "dap_gy_cm2", "Acquired Image Area Dose Product (0018,9473)")
    ed_mgy = check_dose(h.number(T_ENTRANCE_DOSE_MGY), "dose_mgy", "Entrance Dose in mGy (0040,8302)")
    if ed_mgy is not None:
        ev.entrance_exposure_at_rp_mgy = ed_mgy
        extra["entrance_dose_source"] = "(0040,8302) Entrance Dose in mGy"
    else:
        ed_dgy = h.number(T_ENTRANCE_DOSE_DGY)
        if ed_dgy is not None:
            ev.entrance_exposure_at_rp_mgy = check_dose(ed_dgy * 100.0, "dose_mgy", "Entrance Dose (0040,0302)",
                                                        f"{ed_dgy:g} dGy")
            extra["entrance_dose_source"] = "(0040,0302) Entrance Dose (dGy)"
    ev.kvp = h.number(T_KVP)
    tc = h.number(T_TUBE_CURRENT)
    if tc is None and h.number(T_TUBE_CURRENT_UA) is not None:
        tc = h.number(T_TUBE_CURRENT_UA) / 1000.0  # type: ignore[operator]
    ev.tube_current_ma = tc
    et = h.number(T_EXPOSURE_TIME)
    if et is None and h.number(T_EXPOSURE_TIME_US) is not None:
        et = h.number(T_EXPOSURE_TIME_US) / 1000.0  # type: ignore[operator]
    ev.exposure_time_ms = et
    uas = h.number(T_EXPOSURE_UAS)
    if uas is None and h.number(T_EXPOSURE_MAS) is not None:
        uas = h.number(T_EXPOSURE_MAS) * 1000.0  # type: ignore[operator]
    if uas is not None:
        extra["exposure_uas"] = uas
    ev.exposure_index = h.number(T_EI)
    ev.deviation_index = h.number(T_DI)
    tei = h.number(T_TARGET_EI)
    if tei is not None:
        extra["target_exposure_index"] = tei
    ev.distance_source_to_detector_mm = h.number(T_DIST_SRC_DET)
    ev.positioner_primary_angle_deg = h.number(T_PRIMARY_ANGLE)
    ev.positioner_secondary_angle_deg = h.number(T_SECONDARY_ANGLE)
    ev.filter_material = h.text(T_FILTER_MATERIAL)
    nf = h.number(T_NUMBER_OF_FRAMES)
    ev.number_of_frames = int(nf) if nf is not None else None
    code = h.code(T_ANATOMIC_REGION_SEQ)
    if code is not None:
        ev.target_region = code[2] or code[0]
        ev.target_region_code = C.canon_str(code[0], code[1]) if code[0] else None
    else:
        ev.target_region = h.text(T_BODY_PART)
    rm = (h.ascii(T_RADIATION_MODE) or "").upper()
    if rm in ("CONTINUOUS", "PULSED"):
        ev.fluoro_mode = rm.lower()
    setting = (h.ascii(T_RADIATION_SETTING) or "").upper()
    if mod == "CT":
        ctdi = h.number(T_CTDIVOL)
        if ctdi is None:
            for fg in h.seq(T_SHARED_FG) + h.seq(T_PERFRAME_FG)[:1]:
                for ce in fg.seq(T_CT_EXPOSURE_SEQ):
                    ctdi = ce.number(T_CTDIVOL)
                    if ctdi is not None:
                        break
                if ctdi is not None:
                    break
        ev.ctdivol_mgy = check_dose(ctdi, "dose_mgy", "CTDIvol (0018,9345)")
        ph = h.code(T_CTDI_PHANTOM_SEQ)
        if ph is not None:
            ev.ctdiw_phantom = C.PHANTOMS.get(C.canon(ph[0], ph[1]))
        ev.ct_exposure_time_s = (et / 1000.0) if et is not None else None
    elif mod in ("XA", "RF"):
        if setting == "SC":
            ev.event_type = "fluoroscopy"
        elif setting == "GR":
            ev.event_type = "stationary"
    elif mod in ("DX", "CR", "MG", "PX", "IO"):
        ev.event_type = "stationary"
        # mammography / radiography header items, and one event per exposure (For Presentation and For
        # Processing copies share it): see dosereg.rdsr.mammo
        M.image_header(ctx, h, ev, doc.procedure_modality or mod)
        ev.irradiation_event_uid = M.exposure_event_uid(
            doc, ev, hdr_uid, acquisition_time_known=bool(h.ascii(T_ACQ_DATETIME) or h.ascii(T_ACQ_TIME)))
        extra["image_sop_instance_uid"] = doc.sop_instance_uid
    tft = h.number(T_TOTAL_FLUORO_TIME)
    if tft is not None:
        extra["total_time_of_fluoroscopy_s"] = tft
    doc.events.append(ev)
    if mod != "CT" and ev.dap_gy_cm2 is not None:
        doc.planes.append(PlaneTotals(plane="single", dap_total_gy_cm2=ev.dap_gy_cm2,
                                      fluoro_time_total_s=tft, derived=True))
        ctx.warn("plane totals derived from a single image header (one event per image; do not sum images "
                 "of the same irradiation event)")
    if dap is None and ev.ctdivol_mgy is None and ev.entrance_exposure_at_rp_mgy is None and ev.agd_mgy is None:
        ctx.warn("image header carries no dose attribute (no DAP (0018,115E), Entrance Dose, Organ Dose or CTDIvol)")


# ---------------------------------------------------------------------------
# MR headers
# ---------------------------------------------------------------------------
def _extract_mr(ctx: _Ctx, h: Header) -> None:
    doc = ctx.doc
    doc.source_kind = MR_HEADER
    doc.procedure_modality = "MR"
    mr = MRInfo()
    mr.field_strength_t = h.number(T_FIELD_STRENGTH)
    mr.sar_w_kg = h.number(T_SAR)
    if mr.sar_w_kg is not None:
        mr.sar_definition = "IEC_WHOLE_BODY"  # (0018,1316) is the whole-body SAR by definition
    mr.db_dt_t_s = h.number(T_DBDT)
    mr.b1rms_ut = h.number(T_B1RMS)
    mr.protocol = h.text(T_PROTOCOL) or h.text(T_SERIES_DESC)

    # Enhanced MR: MR Timing and Related Parameters (top level, shared or first per-frame group)
    scopes = [h]
    for fg in h.seq(T_SHARED_FG) + h.seq(T_PERFRAME_FG)[:1]:
        scopes.append(fg)
        scopes.extend(fg.seq(T_MR_TIMING_SEQ))
    sars: list[tuple[str | None, float]] = []
    modes: list[str] = []
    for sc in scopes:
        for it in sc.seq(T_SAR_SEQ):
            v = it.number(T_SAR_VALUE)
            if v is not None:
                sars.append((it.ascii(T_SAR_DEFINITION), v))
        for it in sc.seq(T_OPERATING_MODE_SEQ):
            t, m = it.ascii(T_OPERATING_MODE_TYPE), it.ascii(T_OPERATING_MODE)
            if t or m:
                s = f"{t or '?'}:{m or '?'}"
                if s not in modes:
                    modes.append(s)
        if mr.db_dt_t_s is None and (sc.ascii(T_GRADIENT_OUTPUT_TYPE) or "").upper() == "DB_DT":
            mr.db_dt_t_s = sc.number(T_GRADIENT_OUTPUT)
    if sars and mr.sar_w_kg is None:
        whole = [s for s in sars if (s[0] or "").upper() == "IEC_WHOLE_BODY"]
        chosen = whole[0] if whole else sars[0]
        mr.sar_definition, mr.sar_w_kg = chosen
    if modes:
        mr.operating_mode = "; ".join(modes)
    if all(v is None for v in (mr.sar_w_kg, mr.db_dt_t_s, mr.field_strength_t, mr.b1rms_ut)):
        ctx.warn("MR image header carries no SAR, dB/dt, B1rms or field strength")
    doc.mr = mr

