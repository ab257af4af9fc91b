"""Mammography RDSRs and MG images, Radiopharmaceutical Radiation Dose SRs, Patient Radiation Dose SRs and NM
images (issue 16). No Django imports."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from .core import (
    ACQ_DEVICE_TYPES,
    CONTAINS,
    C_ACCUMULATED,
    C_ACQ_DEVICE_TYPE,
    C_ACQ_PLANE,
    C_ACQ_PROTOCOL,
    C_AUTOMATED_DATA_COLLECTION,
    C_COMMENT,
    C_DATETIME_STARTED,
    C_EVENT,
    C_EVENT_TYPE,
    C_EVENT_UID,
    C_EXPOSURE_TIME,
    C_KVP,
    C_REF_POINT_DEF,
    C_SOURCE_OF_DOSE_INFO,
    C_TARGET_REGION,
    C_XRAY_FILTERS,
    C_XRAY_FILTER_MATERIAL,
    C_XRAY_FILTER_THICKNESS_MAX,
    C_XRAY_FILTER_THICKNESS_MIN,
    C_XRAY_FILTER_TYPE,
    Code,
    EVENT_TYPES,
    FILTER_TYPES,
    HAS_CONCEPT_MOD,
    PLANES,
    U_KV,
    U_MGY,
    U_MM,
    U_MS,
    U_S,
    _CommonSpec,
    _ITEM,
    _children,
    _code,
    _code_ds,
    _coerce,
    _container,
    _datetime,
    _fmt_dt,
    _fmt_num,
    _item,
    _num,
    _observer_context,
    _patient_study_equipment,
    _pixels,
    _procedure_reported,
    _resolve_uids,
    _scope,
    _sr_document,
    _text,
    _uidref,
    deterministic_uid,
)

__all__ = [
    "MammoEventSpec",
    "MammoRDSRSpec",
    "MGImageSpec",
    "RadiopharmaceuticalSpec",
    "RRDSRSpec",
    "build_mammo_rdsr",
    "build_mg_image",
    "build_rrdsr",
    "build_patient_dose_sr",
    "NMImageSpec",
    "build_nm_image",
]


# ---------------------------------------------------------------------------
# Mammography (TID 10001 with Procedure reported = Mammography: TID 10005 accumulated AGD per breast,
# TID 10003 mammography rows), MG images, Radiopharmaceutical Radiation Dose SR (TID 10021/10022) and
# Patient Radiation Dose SR (TID 10030)  -- issue 16
# ---------------------------------------------------------------------------
C_MAMMOGRAPHY: Code = ("71651007", "SCT", "Mammography")
C_BREAST: Code = ("76752008", "SCT", "Breast")
C_LATERALITY: Code = ("272741003", "SCT", "Laterality")
BREASTS: dict[str, Code] = {"L": ("80248007", "SCT", "Left breast"), "R": ("73056007", "SCT", "Right breast"),
                            "B": ("63762007", "SCT", "Both breasts")}
C_IMAGE_VIEW: Code = ("111031", "DCM", "Image View")
MG_VIEWS: dict[str, Code] = {"CC": ("399162004", "SCT", "cranio-caudal"),
                             "MLO": ("399368009", "SCT", "medio-lateral oblique"),
                             "ML": ("399260004", "SCT", "medial-lateral"),
                             "LM": ("399352003", "SCT", "latero-medial")}
C_AGD: Code = ("111631", "DCM", "Average Glandular Dose")
C_ACCUMULATED_AGD: Code = ("111637", "DCM", "Accumulated Average Glandular Dose")
C_ENTRANCE_EXPOSURE_RP: Code = ("111636", "DCM", "Entrance Exposure at RP")
C_COMPRESSION_THICKNESS: Code = ("111633", "DCM", "Compression Thickness")
C_COMPRESSION_FORCE: Code = ("111647", "DCM", "Compression Force")
C_HVL: Code = ("111634", "DCM", "Half Value Layer")
C_ANODE: Code = ("111632", "DCM", "Anode Target Material")
ANODES: dict[str, Code] = {"molybdenum": ("71128006", "SCT", "Molybdenum"), "rhodium": ("59801003", "SCT", "Rhodium"),
                           "tungsten": ("26194003", "SCT", "Tungsten")}
MG_FILTER_MATERIALS: dict[str, Code] = {"molybdenum": ("71128006", "SCT", "Molybdenum"),
                                        "rhodium": ("59801003", "SCT", "Rhodium"),
                                        "silver": ("41967008", "SCT", "Silver"),
                                        "aluminum": ("12503006", "SCT", "Aluminum")}
C_EXPOSURE_UAS: Code = ("113736", "DCM", "Exposure")
RP_BREAST_SUPPORT: Code = ("113865", "DCM", "4.2cm above Breast Support Surface")
U_N: Code = ("N", "UCUM", "Newton")
U_UAS: Code = ("uA.s", "UCUM", "uA.s")
MG_IMAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
MG_IMAGE_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
RADIOPHARMACEUTICAL_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.68"
PATIENT_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.73"


@dataclass(kw_only=True)
class MammoEventSpec:
    """One mammography exposure (TID 10003 rows for mammography). Doses in mGy."""

    datetime: dt.datetime | None = None
    laterality: str = "L"                 # 'L' | 'R' | 'B'
    view: str = "CC"                      # key of MG_VIEWS
    protocol: str | None = None
    agd_mgy: float | None = None
    entrance_exposure_at_rp_mgy: float | None = None
    compression_thickness_mm: float | None = None
    compression_force_n: float | None = None
    half_value_layer_mm: float | None = None
    kvp: float | None = None
    exposure_uas: float | None = None
    exposure_time_ms: float | None = None
    anode: str | None = "tungsten"        # key of ANODES
    filter_material: str | None = "rhodium"  # key of MG_FILTER_MATERIALS
    filter_thickness_mm: float = 0.05
    irradiation_event_uid: str | None = None


@dataclass(kw_only=True)
class MammoRDSRSpec(_CommonSpec):
    """A mammography X-Ray Radiation Dose SR. ``accumulated_agd_mgy``: per breast ('L'/'R'); None: the sum of the
    events' AGD per breast (what a conformant unit reports); {}: omitted."""

    manufacturer: str = "DoseReg Medical"
    model: str = "Synth Mammo"
    patient_sex: str | None = "F"
    events: list[MammoEventSpec] = field(default_factory=list)
    accumulated_agd_mgy: dict[str, float] | None = None


def _mammo_event(e: MammoEventSpec, when: dt.datetime, uid: str) -> bytes:
    if e.laterality not in BREASTS:
        raise ValueError(f"laterality must be one of {sorted(BREASTS)}, got {e.laterality!r}")
    items = [
        _code(HAS_CONCEPT_MOD, C_ACQ_PLANE, PLANES["single"]),
        _uidref(CONTAINS, C_EVENT_UID, uid),
        _datetime(CONTAINS, C_DATETIME_STARTED, when),
        _code(CONTAINS, C_EVENT_TYPE, EVENT_TYPES["stationary"]),
    ]
    if e.protocol:
        items.append(_text(CONTAINS, C_ACQ_PROTOCOL, e.protocol))
    items.append(_code(CONTAINS, C_TARGET_REGION, C_BREAST,
                       [_code(HAS_CONCEPT_MOD, C_LATERALITY, BREASTS[e.laterality])]))
    items.append(_code(CONTAINS, C_IMAGE_VIEW, MG_VIEWS[e.view]))
    items.append(_code(CONTAINS, C_REF_POINT_DEF, RP_BREAST_SUPPORT))
    for concept, value, unit in ((C_ENTRANCE_EXPOSURE_RP, e.entrance_exposure_at_rp_mgy, U_MGY),
                                 (C_AGD, e.agd_mgy, U_MGY),
                                 (C_COMPRESSION_THICKNESS, e.compression_thickness_mm, U_MM),
                                 (C_COMPRESSION_FORCE, e.compression_force_n, U_N),
                                 (C_HVL, e.half_value_layer_mm, U_MM),
                                 (C_KVP, e.kvp, U_KV),
                                 (C_EXPOSURE_UAS, e.exposure_uas, U_UAS),
                                 (C_EXPOSURE_TIME, e.exposure_time_ms, U_MS)):
        if value is not None:
            items.append(_num(CONTAINS, concept, value, unit))
    if e.anode:
        items.append(_code(CONTAINS, C_ANODE, ANODES[e.anode]))
    if e.filter_material:
        items.append(_container(CONTAINS, C_XRAY_FILTERS, [
            _code(CONTAINS, C_XRAY_FILTER_TYPE, FILTER_TYPES["flat"]),
            _code(CONTAINS, C_XRAY_FILTER_MATERIAL, MG_FILTER_MATERIALS[e.filter_material]),
            _num(CONTAINS, C_XRAY_FILTER_THICKNESS_MIN, e.filter_thickness_mm, U_MM),
            _num(CONTAINS, C_XRAY_FILTER_THICKNESS_MAX, e.filter_thickness_mm, U_MM),
        ]))
    return _container(CONTAINS, C_EVENT, items)


def build_mammo_rdsr(spec: MammoRDSRSpec) -> Dataset:
    """A mammography X-Ray Radiation Dose SR (TID 10001, Procedure reported Mammography; TID 10005 accumulated
    AGD per breast; TID 10003 mammography rows)."""
    study_uid, series_uid, sop_uid, observer_uid = _resolve_uids(spec)
    times = [e.datetime or spec.study_datetime + dt.timedelta(minutes=i) for i, e in enumerate(spec.events)]
    content_dt = (max(times) if times else spec.study_datetime) + dt.timedelta(seconds=30)
    items = [_procedure_reported(C_MAMMOGRAPHY, "diagnostic", False)]
    items += _observer_context(spec, observer_uid)
    items.append(_scope(study_uid))
    items.append(_code(CONTAINS, C_ACQ_DEVICE_TYPE, ACQ_DEVICE_TYPES["integrated"]))
    accumulated = spec.accumulated_agd_mgy
    if accumulated is None:
        accumulated = {}
        for e in spec.events:
            if e.agd_mgy is not None and e.laterality in ("L", "R"):
                accumulated[e.laterality] = accumulated.get(e.laterality, 0.0) + e.agd_mgy
    acc_items = [_code(HAS_CONCEPT_MOD, C_ACQ_PLANE, PLANES["single"])]
    for lat in sorted(accumulated):
        acc_items.append(_num_with(C_ACCUMULATED_AGD, accumulated[lat], U_MGY,
                                   [_code(HAS_CONCEPT_MOD, C_LATERALITY, BREASTS[lat])]))
    items.append(_container(CONTAINS, C_ACCUMULATED, acc_items))
    for e, t in zip(spec.events, times):
        items.append(_mammo_event(e, t, e.irradiation_event_uid or generate_uid()))
    items.append(_code(CONTAINS, C_SOURCE_OF_DOSE_INFO, C_AUTOMATED_DATA_COLLECTION))
    ds = Dataset()
    _patient_study_equipment(ds, spec, study_uid, series_uid, sop_uid, content_dt)
    _sr_document(ds, "10001", b"".join(items), None)
    return ds


def _num_with(concept: Code, value: float, unit: Code, children: list[bytes]) -> bytes:
    """A NUM content item with children (e.g. Accumulated AGD with its Laterality)."""
    body = _num(CONTAINS, concept, value, unit)
    return _with_children(body, children)


def _with_children(item: bytes, children: list[bytes]) -> bytes:
    """Re-encode a single content item (as made by ``_num``/``_code``) with a ContentSequence of ``children``."""
    # an item is: item tag, length, body; append the children's sequence to the body
    assert item[:4] == _ITEM
    body = item[8:]
    return _item(body + _children(children))


@dataclass(kw_only=True)
class MGImageSpec(_CommonSpec):
    """A tiny MG image whose header carries the dose (units without RDSR). ``organ_dose_dgy`` is (0040,0316) in
    dGy as PS3.3 defines it (the AGD for Organ Exposed BREAST)."""

    manufacturer: str = "DoseReg Medical"
    model: str = "Synth Mammo"
    patient_sex: str | None = "F"
    presentation_intent: str = "FOR PRESENTATION"   # or "FOR PROCESSING" (SOP class follows)
    acquisition_datetime: dt.datetime | None = None  # default study_datetime
    laterality: str | None = "L"                     # (0020,0062)
    view_position: str | None = "CC"                 # (0018,5101)
    organ_dose_dgy: float | None = 0.0125            # (0040,0316) dGy -> 1.25 mGy
    organ_exposed: str | None = "BREAST"             # (0040,0318)
    entrance_dose_mgy: float | None = 5.9            # (0040,8302)
    body_part_thickness_mm: float | None = 52.0      # (0018,11A0)
    compression_force_n: float | None = 110.0        # (0018,11A2)
    anode_target_material: str | None = "TUNGSTEN"   # (0018,1191)
    filter_material: str | None = "RHODIUM"          # (0018,7050)
    kvp: float | None = 29.0
    exposure_uas: int | None = 85000                 # (0018,1153)
    exposure_time_ms: int | None = 950
    half_value_layer_mm: float | None = None         # (0040,0314)
    irradiation_event_uid: str | None = None         # (0008,3010): omitted when None (many MG units)


def build_mg_image(spec: MGImageSpec | None = None, **overrides: Any) -> Dataset:
    """A tiny MG image (For Presentation or For Processing) whose header carries AGD, thickness, force, anode,
    filter, view and laterality."""
    s: MGImageSpec = _coerce(MGImageSpec, spec, overrides)
    study_uid, series_uid, sop_uid, _ = _resolve_uids(s)
    acq = s.acquisition_datetime or s.study_datetime
    ds = Dataset()
    _patient_study_equipment(ds, s, study_uid, series_uid, sop_uid, acq)
    processing = s.presentation_intent.upper() == "FOR PROCESSING"
    ds.SOPClassUID = MG_IMAGE_FOR_PROCESSING if processing else MG_IMAGE_FOR_PRESENTATION
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = "MG"
    ds.PresentationIntentType = s.presentation_intent.upper()
    ds.AcquisitionDateTime = _fmt_dt(acq)
    ds.AcquisitionDate = acq.strftime("%Y%m%d")
    ds.AcquisitionTime = acq.strftime("%H%M%S")
    if s.irradiation_event_uid:
        ds.IrradiationEventUID = s.irradiation_event_uid
    ds.BodyPartExamined = "BREAST"
    if s.kvp is not None:
        ds.KVP = _fmt_num(s.kvp)
    if s.body_part_thickness_mm is not None:
        ds.BodyPartThickness = _fmt_num(s.body_part_thickness_mm)
    if s.compression_force_n is not None:
        ds.CompressionForce = _fmt_num(s.compression_force_n)
    if s.exposure_time_ms is not None:
        ds.ExposureTime = int(s.exposure_time_ms)
    if s.exposure_uas is not None:
        ds.ExposureInuAs = int(s.exposure_uas)
    if s.anode_target_material:
        ds.AnodeTargetMaterial = s.anode_target_material
    if s.filter_material:
        ds.FilterMaterial = s.filter_material
    if s.view_position:
        ds.ViewPosition = s.view_position
    if s.laterality:
        ds.ImageLaterality = s.laterality
    if s.entrance_dose_mgy is not None:
        ds.EntranceDoseInmGy = _fmt_num(s.entrance_dose_mgy)
    if s.organ_dose_dgy is not None:
        ds.OrganDose = _fmt_num(s.organ_dose_dgy)
    if s.organ_exposed:
        ds.OrganExposed = s.organ_exposed
    if s.half_value_layer_mm is not None:
        ds.HalfValueLayer = _fmt_num(s.half_value_layer_mm)
    ds.PatientOrientation = ["A", "R"]
    ds.BurnedInAnnotation = "NO"
    ds.ImagerPixelSpacing = ["0.1", "0.1"]
    ds.AcquisitionNumber = 1
    _pixels(ds, len(sop_uid))
    return ds


@dataclass(kw_only=True)
class RadiopharmaceuticalSpec:
    """One administration (TID 10022)."""

    agent: Code = ("35321007", "SCT", "Fluorodeoxyglucose F^18^")
    radionuclide: Code = ("77004003", "SCT", "^18^Fluorine")
    half_life_s: float | None = 6586.2
    administered_activity_mbq: float | None = 250.0
    activity_unit: Code = ("MBq", "UCUM", "MBq")     # the value is converted into this unit
    start: dt.datetime | None = None                  # default study_datetime - 60 min
    stop: dt.datetime | None = None
    route: Code | None = ("47625008", "SCT", "Intravenous route")
    volume_ml: float | None = None
    event_uid: str | None = None                      # auto if None
    comment: str | None = None


@dataclass(kw_only=True)
class RRDSRSpec(_CommonSpec):
    """A Radiopharmaceutical Radiation Dose SR (TID 10021). Weight and height also go into TID 10023 Patient
    Characteristics (``report_weight_kg`` / ``report_height_cm``), as units that leave the header empty do."""

    manufacturer: str = "DoseReg Medical"
    model: str = "Synth Activimeter"
    administrations: list[RadiopharmaceuticalSpec] = field(default_factory=lambda: [RadiopharmaceuticalSpec()])
    report_weight_kg: float | None = None
    report_height_cm: float | None = None


C_RRDSR_ROOT: Code = ("113500", "DCM", "Radiopharmaceutical Radiation Dose Report")
C_ADMINISTRATION: Code = ("113502", "DCM", "Radiopharmaceutical Administration")
C_AGENT: Code = ("349358000", "SCT", "Radiopharmaceutical agent")
C_RADIONUCLIDE: Code = ("89457008", "SCT", "Radionuclide")
C_HALF_LIFE: Code = ("304283002", "SCT", "Radionuclide physical half-life")
C_ADMIN_EVENT_UID: Code = ("113503", "DCM", "Radiopharmaceutical Administration Event UID")
C_RP_START: Code = ("123003", "DCM", "Radiopharmaceutical Start DateTime")
C_RP_STOP: Code = ("123004", "DCM", "Radiopharmaceutical Stop DateTime")
C_ADMINISTERED_ACTIVITY: Code = ("113507", "DCM", "Administered activity")
C_RP_VOLUME: Code = ("123005", "DCM", "Radiopharmaceutical Volume")
C_ROUTE: Code = ("410675002", "SCT", "Route of administration")
C_PATIENT_CHARACTERISTICS: Code = ("121118", "DCM", "Patient Characteristics")
C_BODY_WEIGHT: Code = ("29463-7", "LN", "Body weight")
C_BODY_HEIGHT: Code = ("8302-2", "LN", "Body height")
C_PRDSR_ROOT: Code = ("128401", "DCM", "Patient Radiation Dose Report")
_ACTIVITY_FROM_MBQ = {"MBq": 1.0, "Bq": 1e6, "kBq": 1e3, "GBq": 1e-3, "mCi": 1 / 37.0}


def build_rrdsr(spec: RRDSRSpec) -> Dataset:
    """A Radiopharmaceutical Radiation Dose SR (SOP 1.2.840.10008.5.1.4.1.1.88.68, TID 10021, root 113500).

    No HAS OBS CONTEXT items under the root container: PS3.3 Table A.35.14-2 (as DCMTK's checker implements it)
    does not allow them from a CONTAINER in this IOD; the device is identified by the header."""
    study_uid, series_uid, sop_uid, _ = _resolve_uids(spec)
    items: list[bytes] = []
    for i, a in enumerate(spec.administrations):
        start = a.start or spec.study_datetime - dt.timedelta(minutes=60 - i)
        sub = [_code(CONTAINS, C_AGENT, a.agent), _code(CONTAINS, C_RADIONUCLIDE, a.radionuclide)]
        if a.half_life_s is not None:
            sub.append(_num(CONTAINS, C_HALF_LIFE, a.half_life_s, U_S))
        sub.append(_uidref(CONTAINS, C_ADMIN_EVENT_UID, a.event_uid or generate_uid()))
        sub.append(_datetime(CONTAINS, C_RP_START, start))
        if a.stop is not None:
            sub.append(_datetime(CONTAINS, C_RP_STOP, a.stop))
        if a.administered_activity_mbq is not None:
            factor = _ACTIVITY_FROM_MBQ[a.activity_unit[0]]
            sub.append(_num(CONTAINS, C_ADMINISTERED_ACTIVITY, a.administered_activity_mbq * factor, a.activity_unit))
        if a.volume_ml is not None:
            sub.append(_num(CONTAINS, C_RP_VOLUME, a.volume_ml, ("cm3", "UCUM", "cm3")))
        if a.route is not None:
            sub.append(_code(CONTAINS, C_ROUTE, a.route))
        if a.comment:
            sub.append(_text(CONTAINS, C_COMMENT, a.comment))
        items.append(_container(CONTAINS, C_ADMINISTRATION, sub))
    chars = []
    if spec.report_weight_kg is not None:
        chars.append(_num(CONTAINS, C_BODY_WEIGHT, spec.report_weight_kg, ("kg", "UCUM", "kg")))
    if spec.report_height_cm is not None:
        chars.append(_num(CONTAINS, C_BODY_HEIGHT, spec.report_height_cm, ("cm", "UCUM", "cm")))
    if chars:
        items.append(_container(CONTAINS, C_PATIENT_CHARACTERISTICS, chars))
    ds = Dataset()
    _patient_study_equipment(ds, spec, study_uid, series_uid, sop_uid, spec.study_datetime)
    _sr_document(ds, "10021", b"".join(items), None)
    ds.SOPClassUID = RADIOPHARMACEUTICAL_RADIATION_DOSE_SR
    ds.ConceptNameCodeSequence = Sequence([_code_ds(C_RRDSR_ROOT)])
    ds.SeriesDescription = "Radiopharmaceutical Radiation Dose"
    return ds


def build_patient_dose_sr(spec: _CommonSpec | None = None, **overrides: Any) -> Dataset:
    """A minimal Patient Radiation Dose SR (SOP 1.2.840.10008.5.1.4.1.1.88.73, TID 10030, root 128401): observer
    context and scope only (dosereg records it; it uses none of its estimates)."""
    s: _CommonSpec = _coerce(_CommonSpec, spec, overrides)
    study_uid, series_uid, sop_uid, observer_uid = _resolve_uids(s)
    items = _observer_context(s, observer_uid) + [_scope(study_uid)]
    ds = Dataset()
    _patient_study_equipment(ds, s, study_uid, series_uid, sop_uid, s.study_datetime)
    _sr_document(ds, "10030", b"".join(items), None)
    ds.SOPClassUID = PATIENT_RADIATION_DOSE_SR
    ds.ConceptNameCodeSequence = Sequence([_code_ds(C_PRDSR_ROOT)])
    ds.SeriesDescription = "Patient Radiation Dose"
    return ds


PET_IMAGE = "1.2.840.10008.5.1.4.1.1.128"
NM_IMAGE = "1.2.840.10008.5.1.4.1.1.20"


@dataclass(kw_only=True)
class NMImageSpec(_CommonSpec):
    """A tiny PET (or NM) image whose Radiopharmaceutical Information Sequence (0054,0016) carries the
    administration (units without RRDSR). ``total_dose_bq``: Radionuclide Total Dose (0018,1074), in Bq."""

    modality: str = "PT"                           # 'PT' | 'NM' (SOP class follows)
    model: str = "Synth PET"
    agent: Code | None = ("35321007", "SCT", "Fluorodeoxyglucose F^18^")
    agent_text: str | None = "FDG"                 # (0018,0031)
    radionuclide: Code | None = ("77004003", "SCT", "^18^Fluorine")
    total_dose_bq: float | None = 251.3e6
    half_life_s: float | None = 6586.2
    start: dt.datetime | None = None                # default study_datetime - 60 min, as (0018,1078)
    start_as_time_only: bool = False                # (0018,1072) TM instead of (0018,1078) DT
    route: str | None = "Intravenous route"
    instance_number: int = 1


def build_nm_image(spec: NMImageSpec | None = None, **overrides: Any) -> Dataset:
    s: NMImageSpec = _coerce(NMImageSpec, spec, overrides)
    study_uid, series_uid, sop_uid, _ = _resolve_uids(s)
    start = s.start or s.study_datetime - dt.timedelta(minutes=60)
    ds = Dataset()
    _patient_study_equipment(ds, s, study_uid, series_uid, sop_uid, s.study_datetime)
    ds.SOPClassUID = PET_IMAGE if s.modality == "PT" else NM_IMAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = s.modality
    ds.AcquisitionDate = s.study_datetime.strftime("%Y%m%d")
    ds.AcquisitionTime = s.study_datetime.strftime("%H%M%S")
    item = Dataset()
    if s.agent_text:
        item.Radiopharmaceutical = s.agent_text
    if s.route:
        item.RadiopharmaceuticalRoute = s.route
    if s.start_as_time_only:
        item.RadiopharmaceuticalStartTime = start.strftime("%H%M%S")
    else:
        item.RadiopharmaceuticalStartDateTime = _fmt_dt(start)
    if s.total_dose_bq is not None:
        item.RadionuclideTotalDose = _fmt_num(s.total_dose_bq)
    if s.half_life_s is not None:
        item.RadionuclideHalfLife = _fmt_num(s.half_life_s)
    if s.radionuclide is not None:
        item.RadionuclideCodeSequence = Sequence([_code_ds(s.radionuclide)])
    if s.agent is not None:
        item.RadiopharmaceuticalCodeSequence = Sequence([_code_ds(s.agent)])
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.Units = "BQML"
    ds.DecayCorrection = "START"
    ds.CorrectedImage = ["DECY", "ATTN"]
    ds.FrameOfReferenceUID = deterministic_uid("for", study_uid)
    ds.ImagePositionPatient = ["0", "0", str(s.instance_number)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["4", "4"]
    ds.SliceThickness = "3"
    _pixels(ds, len(sop_uid))
    return ds
