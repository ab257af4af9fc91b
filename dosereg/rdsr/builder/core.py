"""The project's own RDSR builder, core: codes, the SR content encoder, specs, projection X-ray, CT, image
headers, output and UIDs (``dosereg.rdsr.builder`` re-exports it with the demo data and the mammography / NM
parts).

The project's own X-Ray Radiation Dose SR builder (tests, demo data, benchmarks).

Dataclass specs go in; a pydicom ``Dataset`` (or Part-10 bytes, or a file)
comes out. The trees follow PS3.16 TID 10001 (projection X-ray) and TID 10011
(CT), mirroring the layout of real vendor RDSRs; see
``/work/shared/reference/dose-standards.md`` sections 1-2.

Speed matters here (demo data and the 1M-event benchmark build ~100k
documents), and pydicom costs ~70 us per NUM content item. So the SR content
tree is encoded straight to Explicit VR Little Endian bytes and attached to the
returned ``Dataset`` as a *raw* (deferred) ContentSequence element, exactly as
``dcmread`` leaves an unparsed element. Accessing ``ds.ContentSequence`` parses
it lazily into ordinary pydicom objects; ``to_bytes``/``write`` copy it
verbatim. The header modules are ordinary pydicom elements.

No Django imports here (``dosereg.rdsr`` is a pure package).
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import io
import random
import struct
from collections.abc import Iterable
from collections.abc import Sequence as AbcSequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

__all__ = [
    "Code",
    "ProjectionEventSpec",
    "PlaneTotalsSpec",
    "ParticipantSpec",
    "ProjectionRDSRSpec",
    "CTDoseCheckSpec",
    "CTEventSpec",
    "CTRDSRSpec",
    "DXImageSpec",
    "MRImageSpec",
    "build_projection_rdsr",
    "compute_plane_totals",
    "build_ct_rdsr",
    "build_dx_image",
    "build_mr_image",
    "to_bytes",
    "write",
    "rewrite_uids",
    "deterministic_uid",
    "ANATOMY",
    "X_RAY_RADIATION_DOSE_SR",
]

# A code is a plain (value, scheme, meaning) tuple; matched on value+scheme.
Code = tuple[str, str, str]

X_RAY_RADIATION_DOSE_SR = "1.2.840.10008.5.1.4.1.1.88.67"
DX_IMAGE_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
DX_IMAGE_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
XA_IMAGE = "1.2.840.10008.5.1.4.1.1.12.1"
RF_IMAGE = "1.2.840.10008.5.1.4.1.1.12.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
_IMAGE_SOP_CLASS = {"XA": XA_IMAGE, "RF": RF_IMAGE, "DX": DX_IMAGE_FOR_PRESENTATION}

# ---------------------------------------------------------------------------
# Codes (PS3.16; checked against pydicom's concept dictionary)
# ---------------------------------------------------------------------------
C_REPORT: Code = ("113701", "DCM", "X-Ray Radiation Dose Report")
C_PROCEDURE_REPORTED: Code = ("121058", "DCM", "Procedure reported")
C_PROJECTION_XRAY: Code = ("113704", "DCM", "Projection X-Ray")
C_OBSERVER_TYPE: Code = ("121005", "DCM", "Observer Type")
C_DEVICE: Code = ("121007", "DCM", "Device")
C_DEVICE_OBSERVER_UID: Code = ("121012", "DCM", "Device Observer UID")
C_DEVICE_OBSERVER_NAME: Code = ("121013", "DCM", "Device Observer Name")
C_DEVICE_OBSERVER_MANUFACTURER: Code = ("121014", "DCM", "Device Observer Manufacturer")
C_DEVICE_OBSERVER_MODEL: Code = ("121015", "DCM", "Device Observer Model Name")
C_DEVICE_OBSERVER_SERIAL: Code = ("121016", "DCM", "Device Observer Serial Number")
C_DEVICE_OBSERVER_LOCATION: Code = (
    "121017", "DCM", "Device Observer Physical Location During Observation")
C_SCOPE: Code = ("113705", "DCM", "Scope of Accumulation")
C_STUDY: Code = ("113014", "DCM", "Study")
C_STUDY_INSTANCE_UID: Code = ("110180", "DCM", "Study Instance UID")
C_SOURCE_OF_DOSE_INFO: Code = ("113854", "DCM", "Source of Dose Information")
C_AUTOMATED_DATA_COLLECTION: Code = ("113856", "DCM", "Automated Data Collection")
C_ACQ_DEVICE_TYPE: Code = ("122142", "DCM", "Acquisition Device Type")
ACQ_DEVICE_TYPES: dict[str, Code] = {
    "fluoroscopy_guided": ("113957", "DCM", "Fluoroscopy-Guided Projection Radiography System"),
    "integrated": ("113958", "DCM", "Integrated Projection Radiography System"),
    "cassette_based": ("113959", "DCM", "Cassette-based Projection Radiography System"),
}
C_MECHANICAL_DATA_AVAILABLE: Code = ("113944", "DCM", "X-Ray Mechanical Data Available")
C_COMMENT: Code = ("121106", "DCM", "Comment")
C_ACCUMULATED: Code = ("113702", "DCM", "Accumulated X-Ray Dose Data")
C_ACQ_PLANE: Code = ("113764", "DCM", "Acquisition Plane")
PLANES: dict[str, Code] = {
    "single": ("113622", "DCM", "Single Plane"),
    "A": ("113620", "DCM", "Plane A"),
    "B": ("113621", "DCM", "Plane B"),
}
C_DAP_TOTAL: Code = ("113722", "DCM", "Dose Area Product Total")
C_DOSE_RP_TOTAL: Code = ("113725", "DCM", "Dose (RP) Total")
C_FLUORO_DAP_TOTAL: Code = ("113726", "DCM", "Fluoro Dose Area Product Total")
C_ACQ_DAP_TOTAL: Code = ("113727", "DCM", "Acquisition Dose Area Product Total")
C_FLUORO_DOSE_RP_TOTAL: Code = ("113728", "DCM", "Fluoro Dose (RP) Total")
C_ACQ_DOSE_RP_TOTAL: Code = ("113729", "DCM", "Acquisition Dose (RP) Total")
C_TOTAL_FLUORO_TIME: Code = ("113730", "DCM", "Total Fluoro Time")
C_TOTAL_ACQ_TIME: Code = ("113855", "DCM", "Total Acquisition Time")
C_TOTAL_FRAMES: Code = ("113731", "DCM", "Total Number of Radiographic Frames")
C_REF_POINT_DEF: Code = ("113780", "DCM", "Reference Point Definition")
RP_ISOCENTER_15CM: Code = ("113860", "DCM", "15cm from Isocenter toward Source")
RP_IMAGE_INPUT_30CM: Code = ("113861", "DCM", "30cm in Front of Image Input Surface")
C_EVENT: Code = ("113706", "DCM", "Irradiation Event X-Ray Data")
C_DATETIME_STARTED: Code = ("111526", "DCM", "DateTime Started")
C_EVENT_TYPE: Code = ("113721", "DCM", "Irradiation Event Type")
C_ACQ_PROTOCOL: Code = ("125203", "DCM", "Acquisition Protocol")
C_TARGET_REGION: Code = ("123014", "DCM", "Target Region")
C_EVENT_UID: Code = ("113769", "DCM", "Irradiation Event UID")
C_DAP: Code = ("122130", "DCM", "Dose Area Product")
C_DOSE_RP: Code = ("113738", "DCM", "Dose (RP)")
C_PRIMARY_ANGLE: Code = ("112011", "DCM", "Positioner Primary Angle")
C_SECONDARY_ANGLE: Code = ("112012", "DCM", "Positioner Secondary Angle")
C_SOURCE_TO_DETECTOR: Code = ("113750", "DCM", "Distance Source to Detector")
C_FLUORO_MODE: Code = ("113732", "DCM", "Fluoro Mode")
FLUORO_MODES: dict[str, Code] = {
    "continuous": ("113630", "DCM", "Continuous"),
    "pulsed": ("113631", "DCM", "Pulsed"),
}
C_PULSE_RATE: Code = ("113791", "DCM", "Pulse Rate")
C_NUMBER_OF_PULSES: Code = ("113768", "DCM", "Number of Pulses")
C_KVP: Code = ("113733", "DCM", "KVP")
C_TUBE_CURRENT: Code = ("113734", "DCM", "X-Ray Tube Current")
C_EXPOSURE_TIME: Code = ("113735", "DCM", "Exposure Time")
C_PULSE_WIDTH: Code = ("113793", "DCM", "Pulse Width")
C_IRRADIATION_DURATION: Code = ("113742", "DCM", "Irradiation Duration")
C_EXPOSURE_INDEX: Code = ("113845", "DCM", "Exposure Index")
C_TARGET_EXPOSURE_INDEX: Code = ("113846", "DCM", "Target Exposure Index")
C_DEVIATION_INDEX: Code = ("113847", "DCM", "Deviation Index")
C_ACQUIRED_IMAGE: Code = ("113795", "DCM", "Acquired Image")
C_PERSON_NAME: Code = ("113870", "DCM", "Person Name")
C_PERSON_ID: Code = ("113871", "DCM", "Person ID")
C_PERSON_ROLE: Code = ("113875", "DCM", "Person Role in Procedure")
ROLES: dict[str, Code] = {
    # CID 7453. The classic trap: 113850 is AUTHORIZING, 113851 ADMINISTERING.
    "authorizing": ("113850", "DCM", "Irradiation Authorizing"),
    "administering": ("113851", "DCM", "Irradiation Administering"),
}
EVENT_TYPES: dict[str, Code] = {
    "fluoroscopy": ("44491008", "SCT", "Fluoroscopy"),
    "stationary": ("113611", "DCM", "Stationary Acquisition"),
    "stepping": ("113612", "DCM", "Stepping Acquisition"),
    "rotational": ("113613", "DCM", "Rotational Acquisition"),
}
INTENTS: dict[str, Code] = {
    "diagnostic": ("261004008", "SCT", "Diagnostic Intent"),
    "therapeutic": ("262202000", "SCT", "Therapeutic Intent"),
    "combined": ("371931008", "SCT", "Combined Diagnostic and Therapeutic Procedure"),
}
C_HAS_INTENT: Code = ("363703001", "SCT", "Has Intent")
C_YES: Code = ("373066001", "SCT", "Yes")
C_NO: Code = ("373067005", "SCT", "No")

# CT (TID 10011 / 10012 / 10013 / 10015)
C_CT_XRAY: Code = ("77477000", "SCT", "Computed Tomography X-Ray")
C_START_IRRADIATION: Code = ("113809", "DCM", "Start of X-Ray Irradiation")
C_END_IRRADIATION: Code = ("113810", "DCM", "End of X-Ray Irradiation")
C_CT_ACCUMULATED: Code = ("113811", "DCM", "CT Accumulated Dose Data")
C_CT_TOTAL_EVENTS: Code = ("113812", "DCM", "Total Number of Irradiation Events")
C_CT_DLP_TOTAL: Code = ("113813", "DCM", "CT Dose Length Product Total")
C_CT_ACQUISITION: Code = ("113819", "DCM", "CT Acquisition")
C_CT_ACQ_TYPE: Code = ("113820", "DCM", "CT Acquisition Type")
CT_ACQ_TYPES: dict[str, Code] = {
    "spiral": ("116152004", "SCT", "Spiral Acquisition"),
    "sequenced": ("113804", "DCM", "Sequenced Acquisition"),
    "constant_angle": ("113805", "DCM", "Constant Angle Acquisition"),
    "stationary": ("113806", "DCM", "Stationary Acquisition"),
    "free": ("113807", "DCM", "Free Acquisition"),
}
C_CT_ACQ_PARAMS: Code = ("113822", "DCM", "CT Acquisition Parameters")
C_CT_EXPOSURE_TIME: Code = ("113824", "DCM", "Exposure Time")
C_CT_SCANNING_LENGTH: Code = ("113825", "DCM", "Scanning Length")
C_CT_SINGLE_COLLIMATION: Code = ("113826", "DCM", "Nominal Single Collimation Width")
C_CT_TOTAL_COLLIMATION: Code = ("113827", "DCM", "Nominal Total Collimation Width")
C_CT_PITCH: Code = ("113828", "DCM", "Pitch Factor")
C_CT_NUMBER_OF_SOURCES: Code = ("113823", "DCM", "Number of X-Ray Sources")
C_CT_SOURCE_PARAMS: Code = ("113831", "DCM", "CT X-Ray Source Parameters")
C_CT_SOURCE_ID: Code = ("113832", "DCM", "Identification of the X-Ray Source")
C_CT_MAX_TUBE_CURRENT: Code = ("113833", "DCM", "Maximum X-Ray Tube Current")
C_CT_ROTATION_TIME: Code = ("113834", "DCM", "Exposure Time per Rotation")
C_CT_DOSE: Code = ("113829", "DCM", "CT Dose")
C_CT_CTDIVOL: Code = ("113830", "DCM", "Mean CTDIvol")
C_CT_PHANTOM: Code = ("113835", "DCM", "CTDIw Phantom Type")
CT_PHANTOMS: dict[str, Code] = {
    "head": ("113690", "DCM", "IEC Head Dosimetry Phantom"),
    "body": ("113691", "DCM", "IEC Body Dosimetry Phantom"),
}
C_CT_DLP: Code = ("113838", "DCM", "DLP")
C_CT_SSDE: Code = ("113930", "DCM", "Size Specific Dose Estimation")
C_DC_ALERT: Code = ("113900", "DCM", "Dose Check Alert Details")
C_DC_DLP_ALERT_CONFIGURED: Code = ("113901", "DCM", "DLP Alert Value Configured")
C_DC_CTDI_ALERT_CONFIGURED: Code = ("113902", "DCM", "CTDIvol Alert Value Configured")
C_DC_DLP_ALERT: Code = ("113903", "DCM", "DLP Alert Value")
C_DC_CTDI_ALERT: Code = ("113904", "DCM", "CTDIvol Alert Value")
C_DC_ACC_DLP_FWD: Code = ("113905", "DCM", "Accumulated DLP Forward Estimate")
C_DC_ACC_CTDI_FWD: Code = ("113906", "DCM", "Accumulated CTDIvol Forward Estimate")
C_DC_REASON: Code = ("113907", "DCM", "Reason for Proceeding")
C_DC_NOTIFICATION: Code = ("113908", "DCM", "Dose Check Notification Details")
C_DC_DLP_NOTIF_CONFIGURED: Code = ("113909", "DCM", "DLP Notification Value Configured")
C_DC_CTDI_NOTIF_CONFIGURED: Code = ("113910", "DCM", "CTDIvol Notification Value Configured")
C_DC_DLP_NOTIF: Code = ("113911", "DCM", "DLP Notification Value")
C_DC_CTDI_NOTIF: Code = ("113912", "DCM", "CTDIvol Notification Value")
C_DC_DLP_FWD: Code = ("113913", "DCM", "DLP Forward Estimate")
C_DC_CTDI_FWD: Code = ("113914", "DCM", "CTDIvol Forward Estimate")

# Anatomy (SCT, with the legacy SRT code used by pre-2019 devices).
ANATOMY: dict[str, Code] = {
    "chest": ("51185008", "SCT", "Chest"),
    "abdomen": ("113345001", "SCT", "Abdomen"),
    "pelvis": ("12921003", "SCT", "Pelvis"),
    "head": ("69536005", "SCT", "Head"),
    "entire_body": ("38266002", "SCT", "Entire body"),
    "heart": ("80891009", "SCT", "Heart"),
    "coronary_artery": ("41801008", "SCT", "Coronary artery"),
    "hip": ("24136001", "SCT", "Hip joint"),
    "knee": ("72696002", "SCT", "Knee"),
    "lumbar_spine": ("122496007", "SCT", "Lumbar spine"),
    "cervical_spine": ("122494005", "SCT", "Cervical spine"),
    "wrist": ("74670003", "SCT", "Wrist joint"),
    "ankle": ("70258002", "SCT", "Ankle joint"),
    "femur": ("71341001", "SCT", "Femur"),
    "shoulder": ("16982005", "SCT", "Shoulder"),
    "hand": ("85562004", "SCT", "Hand"),
    "brain": ("12738006", "SCT", "Brain"),
    "neck": ("45048000", "SCT", "Neck"),
    "kidney": ("64033007", "SCT", "Kidney"),
    "liver": ("10200004", "SCT", "Liver"),
    "lower_leg": ("30021000", "SCT", "Lower leg"),
    "chest_abdomen_pelvis": ("416775004", "SCT", "Chest, Abdomen and Pelvis"),
}

# SCT -> legacy SRT (for ``legacy_codes=True``), from pydicom's SNOMED map.
_SCT_TO_SRT: dict[str, str] = {
    "44491008": "P5-06000", "363703001": "G-C0E8", "261004008": "R-408C3",
    "262202000": "R-41531", "371931008": "R-002E9", "373066001": "R-0038D",
    "373067005": "R-00339", "77477000": "P5-08000", "116152004": "P5-08001",
    "51185008": "T-D3000", "113345001": "T-D4000", "12921003": "T-D6000",
    "69536005": "T-D1100", "38266002": "T-D0010", "80891009": "T-32000",
    "41801008": "T-43000", "24136001": "T-15710", "72696002": "T-D9200",
    "122496007": "T-11503", "122494005": "T-11501", "74670003": "T-15460",
    "70258002": "T-15750", "71341001": "T-12710", "16982005": "T-D2220",
    "85562004": "T-D8700", "12738006": "T-A0100", "45048000": "T-D1600",
    "64033007": "T-71000", "10200004": "T-62000", "30021000": "T-D9400",
    "416775004": "R-FAB56",
}

# Units: (code value, scheme, meaning)
U_GY_M2: Code = ("Gy.m2", "UCUM", "Gy.m2")
U_GY: Code = ("Gy", "UCUM", "Gy")
U_MGY: Code = ("mGy", "UCUM", "mGy")
U_DGY_CM2: Code = ("dGy.cm2", "UCUM", "dGy.cm2")
U_GYM2_SIEMENS: Code = ("Gym2", "UCUM", "Gym2")
U_MGY_CM: Code = ("mGy.cm", "UCUM", "mGy.cm")
U_MGYCM_SIEMENS: Code = ("mGycm", "UCUM", "mGycm")
U_S: Code = ("s", "UCUM", "s")
U_MS: Code = ("ms", "UCUM", "ms")
U_MM: Code = ("mm", "UCUM", "mm")
U_KV: Code = ("kV", "UCUM", "kV")
U_MA: Code = ("mA", "UCUM", "mA")
U_DEG: Code = ("deg", "UCUM", "deg")
U_PULSE_PER_S: Code = ("{pulse}/s", "UCUM", "pulse/s")
U_ONE: Code = ("1", "UCUM", "no units")
U_RATIO: Code = ("{ratio}", "UCUM", "ratio")
U_EVENTS: Code = ("{events}", "UCUM", "events")
U_SOURCES: Code = ("{X-Ray sources}", "UCUM", "X-Ray sources")
U_M2: Code = ("m2", "UCUM", "m2")
# TID 10003A/10003B geometry and filtration
C_SOURCE_TO_ISOCENTER: Code = ("113748", "DCM", "Distance Source to Isocenter")
C_TABLE_LONGITUDINAL: Code = ("113751", "DCM", "Table Longitudinal Position")
C_TABLE_LATERAL: Code = ("113752", "DCM", "Table Lateral Position")
C_TABLE_HEIGHT: Code = ("113753", "DCM", "Table Height Position")
C_COLLIMATED_FIELD_AREA: Code = ("113790", "DCM", "Collimated Field Area")
C_XRAY_FILTERS: Code = ("113771", "DCM", "X-Ray Filters")
C_XRAY_FILTER_TYPE: Code = ("113772", "DCM", "X-Ray Filter Type")
C_XRAY_FILTER_MATERIAL: Code = ("113757", "DCM", "X-Ray Filter Material")
C_XRAY_FILTER_THICKNESS_MIN: Code = ("113758", "DCM", "X-Ray Filter Thickness Minimum")
C_XRAY_FILTER_THICKNESS_MAX: Code = ("113773", "DCM", "X-Ray Filter Thickness Maximum")
FILTER_TYPES: dict[str, Code] = {"strip": ("113650", "DCM", "Strip filter"), "flat": ("113653", "DCM", "Flat filter")}
FILTER_MATERIALS: dict[str, Code] = {"copper": ("C-127A00", "SRT", "Copper or Copper compound"),
                                     "aluminum": ("C-120F9", "SRT", "Aluminum or Aluminum compound")}

UNITS_DIALECTS = ("ucum", "canon", "siemens")


def _as_code(c: AbcSequence[str]) -> Code:
    """A (value, scheme, meaning) triple from any 3-item sequence (specs may hold lists)."""
    value, scheme, meaning = c
    return (value, scheme, meaning)


def _legacy(code: Code, legacy: bool) -> Code:
    """Swap an SCT code for its legacy SRT equivalent when asked to."""
    if legacy and code[1] == "SCT":
        srt = _SCT_TO_SRT.get(code[0])
        if srt is not None:
            return (srt, "SRT", code[2])
    return code


# ---------------------------------------------------------------------------
# Minimal Explicit VR Little Endian encoder for SR content items
# ---------------------------------------------------------------------------
_H = struct.Struct("<H").pack
_I = struct.Struct("<I").pack
_ITEM = b"\xfe\xff\x00\xe0"


def _tag(group: int, elem: int) -> bytes:
    return struct.pack("<HH", group, elem)


def _short(tag: bytes, vr: bytes, value: bytes) -> bytes:
    return tag + vr + _H(len(value)) + value


def _long(tag: bytes, vr: bytes, value: bytes) -> bytes:
    return tag + vr + b"\x00\x00" + _I(len(value)) + value


def _txt(value: str) -> bytes:
    b = value.encode("utf-8")
    return b + b" " if len(b) & 1 else b


def _uid(value: str) -> bytes:
    b = value.encode("ascii")
    return b + b"\x00" if len(b) & 1 else b


def _item(body: bytes) -> bytes:
    return _ITEM + _I(len(body)) + body


def _sq(tag: bytes, items: bytes) -> bytes:
    return tag + b"SQ\x00\x00" + _I(len(items)) + items


T_CODE_VALUE = _tag(0x0008, 0x0100)
T_CODING_SCHEME = _tag(0x0008, 0x0102)
T_CODE_MEANING = _tag(0x0008, 0x0104)
T_REF_SOP_CLASS = _tag(0x0008, 0x1150)
T_REF_SOP_INSTANCE = _tag(0x0008, 0x1155)
T_REF_SERIES_SEQ = _tag(0x0008, 0x1115)
T_REF_SOP_SEQ = _tag(0x0008, 0x1199)
T_STUDY_UID = _tag(0x0020, 0x000D)
T_SERIES_UID = _tag(0x0020, 0x000E)
T_UNITS_SEQ = _tag(0x0040, 0x08EA)
T_REL_TYPE = _tag(0x0040, 0xA010)
T_VALUE_TYPE = _tag(0x0040, 0xA040)
T_CONCEPT_NAME = _tag(0x0040, 0xA043)
T_CONTINUITY = _tag(0x0040, 0xA050)
T_DATETIME = _tag(0x0040, 0xA120)
T_PERSON_NAME = _tag(0x0040, 0xA123)
T_UID = _tag(0x0040, 0xA124)
T_TEXT_VALUE = _tag(0x0040, 0xA160)
T_CONCEPT_CODE = _tag(0x0040, 0xA168)
T_MEASURED_VALUE = _tag(0x0040, 0xA300)
T_NUMERIC_VALUE = _tag(0x0040, 0xA30A)
T_CONTENT_SEQ = _tag(0x0040, 0xA730)

TAG_CONTENT_SEQUENCE = BaseTag(0x0040A730)
TAG_EVIDENCE_SEQUENCE = BaseTag(0x0040A375)  # CurrentRequestedProcedureEvidenceSequence

CONTAINS = "CONTAINS"
HAS_CONCEPT_MOD = "HAS CONCEPT MOD"
HAS_OBS_CONTEXT = "HAS OBS CONTEXT"
HAS_PROPERTIES = "HAS PROPERTIES"
INFERRED_FROM = "INFERRED FROM"


@functools.lru_cache(maxsize=None)
def _head(rel: str, value_type: str, concept: Code) -> bytes:
    """RelationshipType + ValueType + ConceptNameCodeSequence, cached."""
    return (
        _short(T_REL_TYPE, b"CS", _txt(rel))
        + _short(T_VALUE_TYPE, b"CS", _txt(value_type))
        + _sq(T_CONCEPT_NAME, _code_item(concept))
    )


@functools.lru_cache(maxsize=None)
def _code_item(code: Code) -> bytes:
    value, scheme, meaning = code
    return _item(
        _short(T_CODE_VALUE, b"SH", _txt(value))
        + _short(T_CODING_SCHEME, b"SH", _txt(scheme))
        + _short(T_CODE_MEANING, b"LO", _txt(meaning))
    )


@functools.lru_cache(maxsize=None)
def _concept_code_seq(code: Code) -> bytes:
    return _sq(T_CONCEPT_CODE, _code_item(code))


@functools.lru_cache(maxsize=None)
def _units_seq(unit: Code) -> bytes:
    return _sq(T_UNITS_SEQ, _code_item(unit))


def _ds(x: float) -> bytes:
    """Format a number as a DICOM DS (max 16 chars), even-padded."""
    if isinstance(x, int) or float(x).is_integer() and abs(x) < 1e15:
        s = str(int(x))
    else:
        s = f"{x:.8g}"
        if len(s) > 16:
            s = f"{x:.6g}"
    b = s.encode("ascii")
    return b + b" " if len(b) & 1 else b


def _children(children: Iterable[bytes] | None) -> bytes:
    if not children:
        return b""
    return _sq(T_CONTENT_SEQ, b"".join(children))


def _num(rel: str, concept: Code, value: float | None, unit: Code) -> bytes:
    if value is None:  # empty MeasuredValueSequence (Canon CXDI / Carestream quirk)
        return _item(_head(rel, "NUM", concept) + _sq(T_MEASURED_VALUE, b""))
    mv = _item(_units_seq(unit) + _short(T_NUMERIC_VALUE, b"DS", _ds(value)))
    return _item(_head(rel, "NUM", concept) + _sq(T_MEASURED_VALUE, mv))


def _code(rel: str, concept: Code, value: Code, children: list[bytes] | None = None) -> bytes:
    return _item(_head(rel, "CODE", concept) + _concept_code_seq(value) + _children(children))


def _text(rel: str, concept: Code, value: str, children: list[bytes] | None = None) -> bytes:
    return _item(
        _head(rel, "TEXT", concept) + _long(T_TEXT_VALUE, b"UT", _txt(value)) + _children(children)
    )


def _uidref(rel: str, concept: Code, value: str, children: list[bytes] | None = None) -> bytes:
    return _item(_head(rel, "UIDREF", concept) + _short(T_UID, b"UI", _uid(value)) + _children(children))


def _fmt_dt(value: dt.datetime) -> str:
    s = value.strftime("%Y%m%d%H%M%S")
    if value.microsecond:
        s += f".{value.microsecond:06d}"
    return s


def _datetime(rel: str, concept: Code, value: dt.datetime) -> bytes:
    return _item(_head(rel, "DATETIME", concept) + _short(T_DATETIME, b"DT", _txt(_fmt_dt(value))))


def _pname(rel: str, concept: Code, value: str, children: list[bytes] | None = None) -> bytes:
    if not value:
        # DCMTK rejects an empty PNAME value (type 1); never emit one.
        raise ValueError("person name must not be empty")
    return _item(
        _head(rel, "PNAME", concept) + _short(T_PERSON_NAME, b"PN", _txt(value)) + _children(children)
    )


def _container(rel: str, concept: Code, children: list[bytes]) -> bytes:
    return _item(
        _head(rel, "CONTAINER", concept)
        + _short(T_CONTINUITY, b"CS", b"SEPARATE")
        + _children(children)
    )


def _image(rel: str, concept: Code, sop_class: str, sop_instance: str) -> bytes:
    ref = _item(
        _short(T_REF_SOP_CLASS, b"UI", _uid(sop_class))
        + _short(T_REF_SOP_INSTANCE, b"UI", _uid(sop_instance))
    )
    # (0008,1199) sorts before (0040,A010): it must come first in the item.
    return _item(_sq(T_REF_SOP_SEQ, ref) + _head(rel, "IMAGE", concept))


def _raw_sq(tag: BaseTag, items: bytes) -> RawDataElement:
    return RawDataElement(tag, "SQ", len(items), items, 0, False, True)


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------
@dataclass(kw_only=True)
class ParticipantSpec:
    """TID 1020 Person Participant. role: 'authorizing' | 'administering'."""

    name: str
    role: str = "administering"
    person_id: str | None = None


ParticipantLike = Union[ParticipantSpec, tuple]


@dataclass(kw_only=True)
class _CommonSpec:
    """Patient, study and device fields shared by every builder."""

    patient_id: str = "DR000001"
    issuer_of_patient_id: str | None = "DOSEREG"
    patient_name: str | None = "Test^Patient"
    patient_sex: str | None = "O"          # M / F / O / None
    birth_date: dt.date | None = None
    patient_age: str | None = None         # e.g. "045Y"; derived from birth_date if None
    weight_kg: float | None = None
    size_m: float | None = None
    pregnancy_status: int | None = None    # (0010,21C0): 1 not, 2 possible, 3 definite, 4 unknown
    study_instance_uid: str | None = None  # auto if None
    sop_instance_uid: str | None = None    # auto if None
    series_instance_uid: str | None = None  # auto if None
    study_datetime: dt.datetime = dt.datetime(2026, 3, 2, 9, 30)
    accession: str | None = None
    study_description: str | None = None
    study_id: str | None = "1"
    manufacturer: str = "DoseReg Medical"
    model: str = "Synth 1"
    station_name: str | None = "SYNTH01"
    device_serial: str = "SN0001"
    device_observer_uid: str | None = None  # auto if None
    device_observer_location: str | None = None
    software_versions: str = "1.0"
    institution: str | None = "Northfield General Hospital"
    department: str | None = None
    operators_name: str | None = None
    performing_physician_name: str | None = None
    series_number: int = 990
    instance_number: int = 1


@dataclass(kw_only=True)
class ProjectionEventSpec:
    """One TID 10003 irradiation event. Doses in Gy*cm2 / Gy regardless of dialect."""

    datetime: dt.datetime | None = None  # None: study_datetime + 1 min * index
    plane: str = "single"                # 'single' | 'A' | 'B'
    event_type: str = "fluoroscopy"      # 'fluoroscopy'|'stationary'|'stepping'|'rotational'
    protocol: str | None = None
    dap_gy_cm2: float | None = None
    dose_rp_gy: float | None = None
    kvp: float | None = None
    tube_current_ma: float | None = None
    pulse_rate: float | None = None      # pulses/s; fluoro with a rate is 'pulsed'
    pulse_width_ms: float | None = None
    fluoro_mode: str | None = None       # 'pulsed' | 'continuous'; derived if None
    number_of_frames: int | None = None  # emitted as 113768 Number of Pulses
    irradiation_duration_s: float | None = None
    exposure_time_ms: float | None = None
    positioner_primary_angle_deg: float | None = None
    positioner_secondary_angle_deg: float | None = None
    distance_source_to_detector_mm: float | None = None
    target_region: Code | None = ANATOMY["chest"]
    irradiation_event_uid: str | None = None  # auto if None
    exposure_index: float | None = None
    target_exposure_index: float | None = None
    deviation_index: float | None = None
    comment: str | None = None
    image_sop_instance_uid: str | None = None  # acquisition image reference (auto if None)
    # TID 10003B per-pulse values (one NUM item per pulse, as some units send): used instead of kvp,
    # tube_current_ma and pulse_width_ms when given
    kvp_per_pulse: list[float] | None = None
    tube_current_ma_per_pulse: list[float] | None = None
    pulse_width_ms_per_pulse: list[float] | None = None
    # TID 10003A/B geometry (skin dose): None values are omitted
    distance_source_to_isocenter_mm: float | None = None
    table_longitudinal_position_mm: float | None = None
    table_lateral_position_mm: float | None = None
    table_height_position_mm: float | None = None
    collimated_field_area_m2: float | None = None
    filters: list[tuple[str, float]] | None = None   # (material: 'copper' | 'aluminum', thickness mm), flat filters


@dataclass(kw_only=True)
class PlaneTotalsSpec:
    """TID 10002 accumulated data for one plane (None values are omitted)."""

    plane: str = "single"
    dap_total_gy_cm2: float | None = None
    dose_rp_total_gy: float | None = None
    fluoro_dap_total_gy_cm2: float | None = None
    acquisition_dap_total_gy_cm2: float | None = None
    fluoro_dose_rp_total_gy: float | None = None
    acquisition_dose_rp_total_gy: float | None = None
    fluoro_time_total_s: float | None = None
    acquisition_time_total_s: float | None = None
    total_frames: int | None = None


@dataclass(kw_only=True)
class ProjectionRDSRSpec(_CommonSpec):
    """A TID 10001 projection X-ray RDSR (RF, XA, DX, mobile C-arm)."""

    modality: str = "RF"                       # what was done: 'RF' | 'XA' | 'DX'
    acquisition_device_type: str | None = None  # key of ACQ_DEVICE_TYPES; derived from modality
    procedure_intent: str | None = "diagnostic"
    events: list[ProjectionEventSpec] = field(default_factory=list)
    participants: list[ParticipantLike] = field(default_factory=list)
    planes: list[PlaneTotalsSpec] | None = None  # None: computed; []: omit accumulated data
    reference_point_definition: Code | None = RP_ISOCENTER_15CM
    ref_point_as_text: str | None = None  # free TEXT instead of a code (Philips/GE quirk)
    units_dialect: str = "ucum"           # 'ucum' | 'canon' | 'siemens'
    legacy_codes: bool = False            # SRT (P5-06000, G-C0E8, T-D3000...) instead of SCT
    omit_template_id: bool = False        # no ContentTemplateSequence (GE OEC quirk)
    empty_dap: bool = False               # empty MeasuredValueSequence for DAP (Canon CXDI quirk)
    mechanical_data_available: bool | None = None  # 113944 Yes/No
    include_image_refs: bool = True       # IMAGE 113795 for acquisition events
    comment: str | None = None


@dataclass(kw_only=True)
class CTDoseCheckSpec:
    """TID 10015. A value that is not None is 'configured'."""

    dlp_alert_value_mgy_cm: float | None = None
    ctdivol_alert_value_mgy: float | None = None
    accumulated_dlp_forward_estimate_mgy_cm: float | None = None
    accumulated_ctdivol_forward_estimate_mgy: float | None = None
    reason_for_proceeding: str | None = None
    authorizing_person: str | None = None
    authorizing_person_id: str | None = None
    dlp_notification_value_mgy_cm: float | None = None
    ctdivol_notification_value_mgy: float | None = None
    dlp_forward_estimate_mgy_cm: float | None = None
    ctdivol_forward_estimate_mgy: float | None = None


@dataclass(kw_only=True)
class CTEventSpec:
    """One TID 10013 CT acquisition."""

    datetime: dt.datetime | None = None
    protocol: str | None = None
    acquisition_type: str = "spiral"  # key of CT_ACQ_TYPES
    target_region: Code | None = ANATOMY["chest"]
    ctdivol_mgy: float | None = None
    dlp_mgy_cm: float | None = None
    phantom: str | None = "body"      # 'head' | 'body' (also 'head_16cm'/'body_32cm')
    scanning_length_mm: float | None = None
    pitch_factor: float | None = None
    kvp: float | None = 120.0
    tube_current_ma: float | None = None
    max_tube_current_ma: float | None = None
    exposure_time_s: float | None = None
    rotation_time_s: float | None = None
    single_collimation_mm: float | None = None
    total_collimation_mm: float | None = None
    ssde_mgy: float | None = None
    irradiation_event_uid: str | None = None
    dose_check: CTDoseCheckSpec | None = None
    comment: str | None = None


@dataclass(kw_only=True)
class CTRDSRSpec(_CommonSpec):
    """A TID 10011 CT RDSR. DLP total is computed unless given."""

    manufacturer: str = "DoseReg Medical"
    model: str = "SynthCT 64"
    procedure_intent: str | None = "diagnostic"
    events: list[CTEventSpec] = field(default_factory=list)
    participants: list[ParticipantLike] = field(default_factory=list)
    dlp_total_mgy_cm: float | None = None
    start_of_irradiation: dt.datetime | None = None
    end_of_irradiation: dt.datetime | None = None
    units_dialect: str = "ucum"  # 'ucum' | 'siemens' (mGycm)
    legacy_codes: bool = False
    omit_template_id: bool = False
    comment: str | None = None


@dataclass(kw_only=True)
class DXImageSpec(_CommonSpec):
    """A small DX image (8x8 pixels) carrying dose in its header."""

    modality: str = "DX"
    model: str = "Synth DR"
    acquisition_datetime: dt.datetime | None = None  # default study_datetime
    dap_dgy_cm2: float | None = 0.85    # (0018,115E) ImageAndFluoroscopyAreaDoseProduct
    entrance_dose_mgy: float | None = 0.12  # (0040,8302)
    kvp: float | None = 110.0
    exposure_mas: int | None = 2        # (0018,1152) IS, mAs
    exposure_time_ms: int | None = 12   # (0018,1150) IS
    tube_current_ma: int | None = 200   # (0018,1151) IS
    exposure_index: float | None = 420.0
    target_exposure_index: float | None = 400.0
    deviation_index: float | None = 0.2
    distance_source_to_detector_mm: float | None = 1800.0
    body_part_examined: str | None = "CHEST"
    view_position: str | None = "PA"
    protocol_name: str | None = "Chest PA"
    irradiation_event_uid: str | None = None
    omit_irradiation_event_uid: bool = False        # no (0008,3010) (many units)
    presentation_intent: str = "FOR PRESENTATION"   # or "FOR PROCESSING" (SOP class follows)


@dataclass(kw_only=True)
class MRImageSpec(_CommonSpec):
    """A small MR image (8x8 pixels) carrying SAR / dB/dt in its header."""

    manufacturer: str = "DoseReg Medical"
    model: str = "Synth MR 1.5T IMRIS"
    acquisition_datetime: dt.datetime | None = None
    field_strength_t: float = 1.5       # (0018,0087)
    sar_w_kg: float | None = 1.2        # (0018,1316)
    db_dt_t_s: float | None = 42.0      # (0018,1318)
    b1rms_ut: float | None = 1.8        # (0018,1320) FL
    protocol_name: str | None = "Intraop T1 MPRAGE"
    series_description: str | None = "T1 MPRAGE intraop"
    body_part_examined: str | None = "HEAD"
    repetition_time_ms: float = 2300.0
    echo_time_ms: float = 2.98


# ---------------------------------------------------------------------------
# Header (pydicom) helpers
# ---------------------------------------------------------------------------
def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{max((on - birth).days, 0):03d}D"


def _fmt_num(x: float) -> str:
    return _ds(x).decode("ascii").strip()


def _code_ds(code: Code) -> Dataset:
    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = code
    return ds


def _resolve_uids(spec: _CommonSpec) -> tuple[str, str, str, str]:
    study = spec.study_instance_uid or generate_uid()
    series = spec.series_instance_uid or generate_uid()
    sop = spec.sop_instance_uid or generate_uid()
    observer = spec.device_observer_uid or deterministic_uid(
        "device", spec.manufacturer, spec.model, spec.device_serial)
    return study, series, sop, observer


def _patient_study_equipment(ds: Dataset, spec: _CommonSpec, study_uid: str,
                             series_uid: str, sop_uid: str, content_dt: dt.datetime) -> None:
    """Patient, General Study, Patient Study, General Equipment, SOP Common."""
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = content_dt.strftime("%Y%m%d")
    ds.InstanceCreationTime = content_dt.strftime("%H%M%S")
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = spec.study_datetime.strftime("%Y%m%d")
    ds.SeriesDate = content_dt.strftime("%Y%m%d")
    ds.ContentDate = content_dt.strftime("%Y%m%d")
    ds.StudyTime = spec.study_datetime.strftime("%H%M%S")
    ds.SeriesTime = content_dt.strftime("%H%M%S")
    ds.ContentTime = content_dt.strftime("%H%M%S")
    ds.AccessionNumber = spec.accession or ""
    ds.Manufacturer = spec.manufacturer
    if spec.institution:
        ds.InstitutionName = spec.institution
    ds.ReferringPhysicianName = ""
    if spec.station_name:
        ds.StationName = spec.station_name
    if spec.study_description:
        ds.StudyDescription = spec.study_description
    if spec.department:
        ds.InstitutionalDepartmentName = spec.department
    if spec.performing_physician_name:
        ds.PerformingPhysicianName = spec.performing_physician_name
    if spec.operators_name:
        ds.OperatorsName = spec.operators_name
    ds.ManufacturerModelName = spec.model
    ds.PatientName = spec.patient_name or ""
    ds.PatientID = spec.patient_id
    if spec.issuer_of_patient_id:
        ds.IssuerOfPatientID = spec.issuer_of_patient_id
    ds.PatientBirthDate = spec.birth_date.strftime("%Y%m%d") if spec.birth_date else ""
    ds.PatientSex = spec.patient_sex or ""
    age = spec.patient_age or (
        _age(spec.birth_date, spec.study_datetime.date()) if spec.birth_date else None)
    if age:
        ds.PatientAge = age
    if spec.size_m is not None:
        ds.PatientSize = _fmt_num(spec.size_m)
    if spec.weight_kg is not None:
        ds.PatientWeight = _fmt_num(spec.weight_kg)
    if spec.pregnancy_status is not None:
        if spec.pregnancy_status not in (1, 2, 3, 4):
            raise ValueError("pregnancy_status must be 1..4 or None")
        ds.PregnancyStatus = spec.pregnancy_status
    ds.DeviceSerialNumber = spec.device_serial
    ds.SoftwareVersions = spec.software_versions
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = spec.study_id or ""
    ds.SeriesNumber = spec.series_number
    ds.InstanceNumber = spec.instance_number


def _sr_document(ds: Dataset, template_id: str | None, content: bytes,
                 evidence: bytes | None) -> None:
    """SR Document General + Content modules (root container 113701)."""
    ds.SOPClassUID = X_RAY_RADIATION_DOSE_SR
    ds.Modality = "SR"
    ds.SeriesDescription = "Radiation Dose Information"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code_ds(C_REPORT)])
    ds.ContinuityOfContent = "SEPARATE"
    ds.PerformedProcedureCodeSequence = Sequence()
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    if template_id is not None:
        tpl = Dataset()
        tpl.MappingResource = "DCMR"
        tpl.TemplateIdentifier = template_id
        ds.ContentTemplateSequence = Sequence([tpl])
    ds[TAG_CONTENT_SEQUENCE] = _raw_sq(TAG_CONTENT_SEQUENCE, content)
    if evidence:
        ds[TAG_EVIDENCE_SEQUENCE] = _raw_sq(TAG_EVIDENCE_SEQUENCE, evidence)
    # Mark the dataset as if read as Explicit VR LE UTF-8, so the raw (deferred)
    # elements are copied verbatim on write and re-encoded for other syntaxes.
    ds.set_original_encoding(False, True, ds._character_set)


def _observer_context(spec: _CommonSpec, observer_uid: str) -> list[bytes]:
    items = [
        _code(HAS_OBS_CONTEXT, C_OBSERVER_TYPE, C_DEVICE),
        _uidref(HAS_OBS_CONTEXT, C_DEVICE_OBSERVER_UID, observer_uid),
    ]
    if spec.station_name:
        items.append(_text(HAS_OBS_CONTEXT, C_DEVICE_OBSERVER_NAME, spec.station_name))
    items.append(_text(HAS_OBS_CONTEXT, C_DEVICE_OBSERVER_MANUFACTURER, spec.manufacturer))
    items.append(_text(HAS_OBS_CONTEXT, C_DEVICE_OBSERVER_MODEL, spec.model))
    items.append(_text(HAS_OBS_CONTEXT, C_DEVICE_OBSERVER_SERIAL, spec.device_serial))
    if spec.device_observer_location:
        items.append(_text(HAS_OBS_CONTEXT, C_DEVICE_OBSERVER_LOCATION,
                           spec.device_observer_location))
    return items


def _procedure_reported(procedure: Code, intent: str | None, legacy: bool) -> bytes:
    children = None
    if intent:
        if intent not in INTENTS:
            raise ValueError(f"unknown procedure_intent {intent!r}")
        children = [_code(HAS_CONCEPT_MOD, _legacy(C_HAS_INTENT, legacy),
                          _legacy(INTENTS[intent], legacy))]
    return _code(HAS_CONCEPT_MOD, C_PROCEDURE_REPORTED, _legacy(procedure, legacy), children)


def _scope(study_uid: str) -> bytes:
    return _code(HAS_OBS_CONTEXT, C_SCOPE, C_STUDY,
                 [_uidref(HAS_PROPERTIES, C_STUDY_INSTANCE_UID, study_uid)])


def _participant(p: ParticipantLike) -> bytes:
    if not isinstance(p, ParticipantSpec):
        p = ParticipantSpec(name=p[0], role=p[1], person_id=p[2] if len(p) > 2 else None)
    if p.role not in ROLES:
        raise ValueError(f"participant role must be one of {sorted(ROLES)}, got {p.role!r}")
    props = [_code(HAS_PROPERTIES, C_PERSON_ROLE, ROLES[p.role])]
    if p.person_id:
        props.append(_text(HAS_PROPERTIES, C_PERSON_ID, p.person_id))
    return _pname(CONTAINS, C_PERSON_NAME, p.name, props)


def _evidence(study_uid: str, series_uid: str, refs: list[tuple[str, str]]) -> bytes:
    """CurrentRequestedProcedureEvidenceSequence (type 1C when images are referenced)."""
    sops = b"".join(
        _item(_short(T_REF_SOP_CLASS, b"UI", _uid(c)) + _short(T_REF_SOP_INSTANCE, b"UI", _uid(i)))
        for c, i in refs
    )
    series = _item(_sq(T_REF_SOP_SEQ, sops) + _short(T_SERIES_UID, b"UI", _uid(series_uid)))
    return _item(_sq(T_REF_SERIES_SEQ, series) + _short(T_STUDY_UID, b"UI", _uid(study_uid)))


# ---------------------------------------------------------------------------
# Projection (TID 10001)
# ---------------------------------------------------------------------------
def _dap_unit(dialect: str) -> tuple[Code, float]:
    """(unit, factor from Gy*cm2)"""
    if dialect == "ucum":
        return U_GY_M2, 1e-4
    if dialect == "siemens":
        return U_GYM2_SIEMENS, 1e-4
    if dialect == "canon":
        return U_DGY_CM2, 10.0
    raise ValueError(f"units_dialect must be one of {UNITS_DIALECTS}, got {dialect!r}")


def _dose_unit(dialect: str) -> tuple[Code, float]:
    """(unit, factor from Gy)"""
    if dialect == "canon":
        return U_MGY, 1000.0
    return U_GY, 1.0


def _sum(values: list[float | None]) -> float | None:
    """Sum of known values; 0.0 for no contributors; None if all are unknown."""
    if not values:
        return 0.0
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def compute_plane_totals(spec: ProjectionRDSRSpec) -> list[PlaneTotalsSpec]:
    """Per-plane sums of the events (what a conformant device would report).

    Fluoro time is the sum of fluoroscopy irradiation durations, acquisition
    time the sum of the other events' durations, and the frame total counts
    acquisition (non-fluoro) frames.
    """
    order = {"single": 0, "A": 1, "B": 2}
    planes = sorted({e.plane for e in spec.events} or {"single"}, key=order.__getitem__)
    dx = spec.modality == "DX"
    out = []
    for plane in planes:
        evs = [e for e in spec.events if e.plane == plane]
        fl = [e for e in evs if e.event_type == "fluoroscopy"]
        acq = [e for e in evs if e.event_type != "fluoroscopy"]
        frames = [e.number_of_frames for e in acq]
        totals = PlaneTotalsSpec(
            plane=plane,
            dap_total_gy_cm2=_sum([e.dap_gy_cm2 for e in evs]),
            dose_rp_total_gy=_sum([e.dose_rp_gy for e in evs]),
        )
        if not dx:
            totals.fluoro_dap_total_gy_cm2 = _sum([e.dap_gy_cm2 for e in fl])
            totals.fluoro_dose_rp_total_gy = _sum([e.dose_rp_gy for e in fl])
            totals.fluoro_time_total_s = _sum([e.irradiation_duration_s for e in fl])
            totals.acquisition_dap_total_gy_cm2 = _sum([e.dap_gy_cm2 for e in acq])
            totals.acquisition_dose_rp_total_gy = _sum([e.dose_rp_gy for e in acq])
            totals.acquisition_time_total_s = _sum([e.irradiation_duration_s for e in acq])
            known_frames = [f for f in frames if f is not None]
            totals.total_frames = sum(known_frames) if known_frames or not frames else None
        out.append(totals)
    return out


def _ref_point(spec: ProjectionRDSRSpec) -> bytes | None:
    if spec.ref_point_as_text is not None:
        return _text(CONTAINS, C_REF_POINT_DEF, spec.ref_point_as_text)
    if spec.reference_point_definition is not None:
        return _code(CONTAINS, C_REF_POINT_DEF, spec.reference_point_definition)
    return None


def _accumulated(spec: ProjectionRDSRSpec, t: PlaneTotalsSpec, rp: bytes | None) -> bytes:
    dap_u, dap_f = _dap_unit(spec.units_dialect)
    dose_u, dose_f = _dose_unit(spec.units_dialect)
    if t.plane not in PLANES:
        raise ValueError(f"plane must be one of {sorted(PLANES)}, got {t.plane!r}")
    items = [_code(HAS_CONCEPT_MOD, C_ACQ_PLANE, PLANES[t.plane])]

    def dap(concept: Code, v: float | None) -> None:
        if spec.empty_dap:
            items.append(_num(CONTAINS, concept, None, dap_u))
        elif v is not None:
            items.append(_num(CONTAINS, concept, v * dap_f, dap_u))

    def dose(concept: Code, v: float | None) -> None:
        if v is not None:
            items.append(_num(CONTAINS, concept, v * dose_f, dose_u))

    dap(C_DAP_TOTAL, t.dap_total_gy_cm2)
    dose(C_DOSE_RP_TOTAL, t.dose_rp_total_gy)
    if t.fluoro_dap_total_gy_cm2 is not None:
        dap(C_FLUORO_DAP_TOTAL, t.fluoro_dap_total_gy_cm2)
    dose(C_FLUORO_DOSE_RP_TOTAL, t.fluoro_dose_rp_total_gy)
    if t.fluoro_time_total_s is not None:
        items.append(_num(CONTAINS, C_TOTAL_FLUORO_TIME, t.fluoro_time_total_s, U_S))
    if t.acquisition_dap_total_gy_cm2 is not None:
        dap(C_ACQ_DAP_TOTAL, t.acquisition_dap_total_gy_cm2)
    dose(C_ACQ_DOSE_RP_TOTAL, t.acquisition_dose_rp_total_gy)
    if t.acquisition_time_total_s is not None:
        items.append(_num(CONTAINS, C_TOTAL_ACQ_TIME, t.acquisition_time_total_s, U_S))
    if t.total_frames is not None:
        items.append(_num(CONTAINS, C_TOTAL_FRAMES, t.total_frames, U_ONE))
    if rp is not None:
        items.append(rp)
    return _container(CONTAINS, C_ACCUMULATED, items)


def _projection_event(spec: ProjectionRDSRSpec, e: ProjectionEventSpec, when: dt.datetime,
                      uid: str, rp: bytes | None, image: tuple[str, str] | None) -> bytes:
    legacy = spec.legacy_codes
    if e.plane not in PLANES:
        raise ValueError(f"plane must be one of {sorted(PLANES)}, got {e.plane!r}")
    if e.event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {sorted(EVENT_TYPES)}, got {e.event_type!r}")
    dap_u, dap_f = _dap_unit(spec.units_dialect)
    dose_u, dose_f = _dose_unit(spec.units_dialect)
    items = [
        _code(HAS_CONCEPT_MOD, C_ACQ_PLANE, PLANES[e.plane]),
        _datetime(CONTAINS, C_DATETIME_STARTED, when),
        _code(CONTAINS, C_EVENT_TYPE, _legacy(EVENT_TYPES[e.event_type], legacy)),
    ]
    if e.protocol:
        items.append(_text(CONTAINS, C_ACQ_PROTOCOL, e.protocol))
    if e.target_region is not None:
        items.append(_code(CONTAINS, C_TARGET_REGION, _legacy(_as_code(e.target_region), legacy)))
    if rp is not None:
        items.append(rp)
    items.append(_uidref(CONTAINS, C_EVENT_UID, uid))
    if e.comment:
        items.append(_text(CONTAINS, C_COMMENT, e.comment))
    if image is not None:
        items.append(_image(CONTAINS, C_ACQUIRED_IMAGE, image[0], image[1]))
    if spec.empty_dap:
        items.append(_num(CONTAINS, C_DAP, None, dap_u))
    elif e.dap_gy_cm2 is not None:
        items.append(_num(CONTAINS, C_DAP, e.dap_gy_cm2 * dap_f, dap_u))
    if e.dose_rp_gy is not None:
        items.append(_num(CONTAINS, C_DOSE_RP, e.dose_rp_gy * dose_f, dose_u))
    if e.exposure_index is not None:
        items.append(_num(CONTAINS, C_EXPOSURE_INDEX, e.exposure_index, U_ONE))
    if e.target_exposure_index is not None:
        items.append(_num(CONTAINS, C_TARGET_EXPOSURE_INDEX, e.target_exposure_index, U_ONE))
    if e.deviation_index is not None:
        items.append(_num(CONTAINS, C_DEVIATION_INDEX, e.deviation_index, U_ONE))
    if e.positioner_primary_angle_deg is not None:
        items.append(_num(CONTAINS, C_PRIMARY_ANGLE, e.positioner_primary_angle_deg, U_DEG))
    if e.positioner_secondary_angle_deg is not None:
        items.append(_num(CONTAINS, C_SECONDARY_ANGLE, e.positioner_secondary_angle_deg, U_DEG))
    if e.distance_source_to_detector_mm is not None:
        items.append(_num(CONTAINS, C_SOURCE_TO_DETECTOR, e.distance_source_to_detector_mm, U_MM))
    for concept, value in ((C_SOURCE_TO_ISOCENTER, e.distance_source_to_isocenter_mm),
                           (C_TABLE_LONGITUDINAL, e.table_longitudinal_position_mm),
                           (C_TABLE_LATERAL, e.table_lateral_position_mm),
                           (C_TABLE_HEIGHT, e.table_height_position_mm)):
        if value is not None:
            items.append(_num(CONTAINS, concept, value, U_MM))
    if e.collimated_field_area_m2 is not None:
        items.append(_num(CONTAINS, C_COLLIMATED_FIELD_AREA, e.collimated_field_area_m2, U_M2))
    for material, thickness_mm in e.filters or []:
        items.append(_container(CONTAINS, C_XRAY_FILTERS, [
            _code(CONTAINS, C_XRAY_FILTER_TYPE, FILTER_TYPES["flat"]),
            _code(CONTAINS, C_XRAY_FILTER_MATERIAL, FILTER_MATERIALS[material]),
            _num(CONTAINS, C_XRAY_FILTER_THICKNESS_MIN, thickness_mm, U_MM),
            _num(CONTAINS, C_XRAY_FILTER_THICKNESS_MAX, thickness_mm, U_MM),
        ]))
    # TID 10003B source data
    fluoro = e.event_type == "fluoroscopy"
    if fluoro:
        mode = e.fluoro_mode or ("pulsed" if e.pulse_rate else "continuous")
        items.append(_code(CONTAINS, C_FLUORO_MODE, FLUORO_MODES[mode]))
    if e.pulse_rate is not None:
        items.append(_num(CONTAINS, C_PULSE_RATE, e.pulse_rate, U_PULSE_PER_S))
    pulses: float | None = e.number_of_frames
    if pulses is None and fluoro and e.pulse_rate and e.irradiation_duration_s is not None:
        pulses = round(e.pulse_rate * e.irradiation_duration_s)
    if pulses is not None:
        items.append(_num(CONTAINS, C_NUMBER_OF_PULSES, pulses, U_ONE))
    for value in (e.kvp_per_pulse if e.kvp_per_pulse is not None else [e.kvp] if e.kvp is not None else []):
        items.append(_num(CONTAINS, C_KVP, value, U_KV))
    for value in (e.tube_current_ma_per_pulse if e.tube_current_ma_per_pulse is not None
                  else [e.tube_current_ma] if e.tube_current_ma is not None else []):
        items.append(_num(CONTAINS, C_TUBE_CURRENT, value, U_MA))
    if e.exposure_time_ms is not None:
        items.append(_num(CONTAINS, C_EXPOSURE_TIME, e.exposure_time_ms, U_MS))
    for value in (e.pulse_width_ms_per_pulse if e.pulse_width_ms_per_pulse is not None
                  else [e.pulse_width_ms] if e.pulse_width_ms is not None else []):
        items.append(_num(CONTAINS, C_PULSE_WIDTH, value, U_MS))
    if e.irradiation_duration_s is not None:
        items.append(_num(CONTAINS, C_IRRADIATION_DURATION, e.irradiation_duration_s, U_S))
    return _container(CONTAINS, C_EVENT, items)


def _default_device_type(modality: str) -> str:
    return "integrated" if modality == "DX" else "fluoroscopy_guided"


def build_projection_rdsr(spec: ProjectionRDSRSpec) -> Dataset:
    """Build a TID 10001 X-Ray Radiation Dose SR from ``spec``.

    Irradiation Event UIDs (and other UIDs) left as None are generated; the
    spec itself is never modified.
    """
    if spec.modality not in _IMAGE_SOP_CLASS:
        raise ValueError(f"modality must be RF, XA or DX, got {spec.modality!r}")
    study_uid, series_uid, sop_uid, observer_uid = _resolve_uids(spec)
    legacy = spec.legacy_codes

    # Event times: explicit, else one minute apart from the study start.
    times = [e.datetime or spec.study_datetime + dt.timedelta(minutes=i)
             for i, e in enumerate(spec.events)]
    last_end = spec.study_datetime
    for e, t in zip(spec.events, times):
        end = t + dt.timedelta(seconds=e.irradiation_duration_s or 0)
        last_end = max(last_end, end)
    content_dt = last_end.replace(microsecond=0) + dt.timedelta(seconds=1)

    rp = _ref_point(spec)
    items = [_procedure_reported(C_PROJECTION_XRAY, spec.procedure_intent, legacy)]
    items += _observer_context(spec, observer_uid)
    items.append(_scope(study_uid))
    if spec.mechanical_data_available is not None:
        items.append(_code(CONTAINS, C_MECHANICAL_DATA_AVAILABLE,
                           _legacy(C_YES if spec.mechanical_data_available else C_NO, legacy)))
    device_type = spec.acquisition_device_type or _default_device_type(spec.modality)
    if device_type not in ACQ_DEVICE_TYPES:
        raise ValueError(f"acquisition_device_type must be one of {sorted(ACQ_DEVICE_TYPES)}")
    items.append(_code(CONTAINS, C_ACQ_DEVICE_TYPE, ACQ_DEVICE_TYPES[device_type]))

    planes = compute_plane_totals(spec) if spec.planes is None else spec.planes
    for totals in planes:
        items.append(_accumulated(spec, totals, rp))

    image_class = _IMAGE_SOP_CLASS[spec.modality]
    image_series = deterministic_uid("images", study_uid, series_uid)
    refs: list[tuple[str, str]] = []
    for e, t in zip(spec.events, times):
        uid = e.irradiation_event_uid or generate_uid()
        image = None
        if spec.include_image_refs and e.event_type != "fluoroscopy":
            image = (image_class, e.image_sop_instance_uid or deterministic_uid("image", uid))
            refs.append(image)
        items.append(_projection_event(spec, e, t, uid, rp, image))
    if spec.comment:
        items.append(_text(CONTAINS, C_COMMENT, spec.comment))
    items.append(_code(CONTAINS, C_SOURCE_OF_DOSE_INFO, C_AUTOMATED_DATA_COLLECTION))
    for p in spec.participants:
        items.append(_participant(p))

    ds = Dataset()
    _patient_study_equipment(ds, spec, study_uid, series_uid, sop_uid, content_dt)
    _sr_document(ds, None if spec.omit_template_id else "10001", b"".join(items),
                 _evidence(study_uid, image_series, refs) if refs else None)
    return ds


# ---------------------------------------------------------------------------
# CT (TID 10011)
# ---------------------------------------------------------------------------
def _yes_no(flag: bool, legacy: bool) -> Code:
    return _legacy(C_YES if flag else C_NO, legacy)


def _dose_check(dc: CTDoseCheckSpec, dlp_u: Code, legacy: bool) -> list[bytes]:
    alert = [
        _code(CONTAINS, C_DC_DLP_ALERT_CONFIGURED, _yes_no(dc.dlp_alert_value_mgy_cm is not None, legacy)),
        _code(CONTAINS, C_DC_CTDI_ALERT_CONFIGURED, _yes_no(dc.ctdivol_alert_value_mgy is not None, legacy)),
    ]
    if dc.dlp_alert_value_mgy_cm is not None:
        alert.append(_num(CONTAINS, C_DC_DLP_ALERT, dc.dlp_alert_value_mgy_cm, dlp_u))
    if dc.ctdivol_alert_value_mgy is not None:
        alert.append(_num(CONTAINS, C_DC_CTDI_ALERT, dc.ctdivol_alert_value_mgy, U_MGY))
    if dc.accumulated_dlp_forward_estimate_mgy_cm is not None:
        alert.append(_num(CONTAINS, C_DC_ACC_DLP_FWD, dc.accumulated_dlp_forward_estimate_mgy_cm, dlp_u))
    if dc.accumulated_ctdivol_forward_estimate_mgy is not None:
        alert.append(_num(CONTAINS, C_DC_ACC_CTDI_FWD, dc.accumulated_ctdivol_forward_estimate_mgy, U_MGY))
    if dc.reason_for_proceeding:
        alert.append(_text(CONTAINS, C_DC_REASON, dc.reason_for_proceeding))
    if dc.authorizing_person:
        alert.append(_participant(ParticipantSpec(
            name=dc.authorizing_person, role="authorizing", person_id=dc.authorizing_person_id)))
    notif = [
        _code(CONTAINS, C_DC_DLP_NOTIF_CONFIGURED,
              _yes_no(dc.dlp_notification_value_mgy_cm is not None, legacy)),
        _code(CONTAINS, C_DC_CTDI_NOTIF_CONFIGURED,
              _yes_no(dc.ctdivol_notification_value_mgy is not None, legacy)),
    ]
    if dc.dlp_notification_value_mgy_cm is not None:
        notif.append(_num(CONTAINS, C_DC_DLP_NOTIF, dc.dlp_notification_value_mgy_cm, dlp_u))
    if dc.ctdivol_notification_value_mgy is not None:
        notif.append(_num(CONTAINS, C_DC_CTDI_NOTIF, dc.ctdivol_notification_value_mgy, U_MGY))
    if dc.dlp_forward_estimate_mgy_cm is not None:
        notif.append(_num(CONTAINS, C_DC_DLP_FWD, dc.dlp_forward_estimate_mgy_cm, dlp_u))
    if dc.ctdivol_forward_estimate_mgy is not None:
        notif.append(_num(CONTAINS, C_DC_CTDI_FWD, dc.ctdivol_forward_estimate_mgy, U_MGY))
    return [_container(CONTAINS, C_DC_ALERT, alert), _container(CONTAINS, C_DC_NOTIFICATION, notif)]


def _ct_event(spec: CTRDSRSpec, e: CTEventSpec, when: dt.datetime, uid: str, dlp_u: Code) -> bytes:
    legacy = spec.legacy_codes
    if e.acquisition_type not in CT_ACQ_TYPES:
        raise ValueError(f"acquisition_type must be one of {sorted(CT_ACQ_TYPES)}")
    items = []
    if e.protocol:
        items.append(_text(CONTAINS, C_ACQ_PROTOCOL, e.protocol))
    if e.target_region is not None:
        items.append(_code(CONTAINS, C_TARGET_REGION, _legacy(_as_code(e.target_region), legacy)))
    items.append(_code(CONTAINS, C_CT_ACQ_TYPE, _legacy(CT_ACQ_TYPES[e.acquisition_type], legacy)))
    items.append(_uidref(CONTAINS, C_EVENT_UID, uid))
    items.append(_datetime(CONTAINS, C_DATETIME_STARTED, when))

    params = []
    if e.exposure_time_s is not None:
        params.append(_num(CONTAINS, C_CT_EXPOSURE_TIME, e.exposure_time_s, U_S))
    if e.scanning_length_mm is not None:
        params.append(_num(CONTAINS, C_CT_SCANNING_LENGTH, e.scanning_length_mm, U_MM))
    if e.single_collimation_mm is not None:
        params.append(_num(CONTAINS, C_CT_SINGLE_COLLIMATION, e.single_collimation_mm, U_MM))
    if e.total_collimation_mm is not None:
        params.append(_num(CONTAINS, C_CT_TOTAL_COLLIMATION, e.total_collimation_mm, U_MM))
    if e.pitch_factor is not None:
        params.append(_num(CONTAINS, C_CT_PITCH, e.pitch_factor, U_RATIO))
    params.append(_num(CONTAINS, C_CT_NUMBER_OF_SOURCES, 1, U_SOURCES))
    source = [_text(CONTAINS, C_CT_SOURCE_ID, "A")]
    if e.kvp is not None:
        source.append(_num(CONTAINS, C_KVP, e.kvp, U_KV))
    if e.max_tube_current_ma is not None:
        source.append(_num(CONTAINS, C_CT_MAX_TUBE_CURRENT, e.max_tube_current_ma, U_MA))
    if e.tube_current_ma is not None:
        source.append(_num(CONTAINS, C_TUBE_CURRENT, e.tube_current_ma, U_MA))
    if e.rotation_time_s is not None:
        source.append(_num(CONTAINS, C_CT_ROTATION_TIME, e.rotation_time_s, U_S))
    params.append(_container(CONTAINS, C_CT_SOURCE_PARAMS, source))
    items.append(_container(CONTAINS, C_CT_ACQ_PARAMS, params))

    dose = []
    if e.ctdivol_mgy is not None:
        dose.append(_num(CONTAINS, C_CT_CTDIVOL, e.ctdivol_mgy, U_MGY))
    if e.phantom is not None:
        key = e.phantom.split("_")[0]
        if key not in CT_PHANTOMS:
            raise ValueError("phantom must be 'head' or 'body'")
        dose.append(_code(CONTAINS, C_CT_PHANTOM, CT_PHANTOMS[key]))
    if e.dlp_mgy_cm is not None:
        dose.append(_num(CONTAINS, C_CT_DLP, e.dlp_mgy_cm, dlp_u))
    if e.ssde_mgy is not None:
        dose.append(_num(CONTAINS, C_CT_SSDE, e.ssde_mgy, U_MGY))
    if e.dose_check is not None:
        dose += _dose_check(e.dose_check, dlp_u, legacy)
    if dose:
        items.append(_container(CONTAINS, C_CT_DOSE, dose))
    if e.comment:
        items.append(_text(CONTAINS, C_COMMENT, e.comment))
    return _container(CONTAINS, C_CT_ACQUISITION, items)


def build_ct_rdsr(spec: CTRDSRSpec) -> Dataset:
    """Build a TID 10011 CT Radiation Dose SR from ``spec``."""
    if spec.units_dialect not in ("ucum", "siemens"):
        raise ValueError("CT units_dialect must be 'ucum' or 'siemens'")
    dlp_u = U_MGYCM_SIEMENS if spec.units_dialect == "siemens" else U_MGY_CM
    study_uid, series_uid, sop_uid, observer_uid = _resolve_uids(spec)
    legacy = spec.legacy_codes

    times = [e.datetime or spec.study_datetime + dt.timedelta(minutes=i)
             for i, e in enumerate(spec.events)]
    start = spec.start_of_irradiation or (min(times) if times else spec.study_datetime)
    end = spec.end_of_irradiation or max(
        (t + dt.timedelta(seconds=e.exposure_time_s or 0) for e, t in zip(spec.events, times)),
        default=start)
    content_dt = end.replace(microsecond=0) + dt.timedelta(seconds=1)
    dlp_total = spec.dlp_total_mgy_cm
    if dlp_total is None:
        dlp_total = sum(e.dlp_mgy_cm or 0.0 for e in spec.events)

    items = [_procedure_reported(C_CT_XRAY, spec.procedure_intent, legacy)]
    items += _observer_context(spec, observer_uid)
    items.append(_datetime(HAS_OBS_CONTEXT, C_START_IRRADIATION, start))
    items.append(_datetime(HAS_OBS_CONTEXT, C_END_IRRADIATION, end))
    items.append(_scope(study_uid))
    items.append(_container(CONTAINS, C_CT_ACCUMULATED, [
        _num(CONTAINS, C_CT_TOTAL_EVENTS, len(spec.events), U_EVENTS),
        _num(CONTAINS, C_CT_DLP_TOTAL, round(dlp_total, 6), dlp_u),
    ]))
    for e, t in zip(spec.events, times):
        items.append(_ct_event(spec, e, t, e.irradiation_event_uid or generate_uid(), dlp_u))
    if spec.comment:
        items.append(_text(CONTAINS, C_COMMENT, spec.comment))
    items.append(_code(CONTAINS, C_SOURCE_OF_DOSE_INFO, C_AUTOMATED_DATA_COLLECTION))
    for p in spec.participants:
        items.append(_participant(p))

    ds = Dataset()
    _patient_study_equipment(ds, spec, study_uid, series_uid, sop_uid, content_dt)
    _sr_document(ds, None if spec.omit_template_id else "10011", b"".join(items), None)
    return ds


# ---------------------------------------------------------------------------
# Image objects with header dose (DX) and MR safety values
# ---------------------------------------------------------------------------
def _pixels(ds: Dataset, seed: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = b"".join(((i * 37 + seed) % 4096).to_bytes(2, "little") for i in range(64))


def _coerce(spec_cls: type, spec: Any, overrides: dict[str, Any]) -> Any:
    if spec is None:
        return spec_cls(**overrides)
    return dataclasses.replace(spec, **overrides) if overrides else spec


def build_dx_image(spec: DXImageSpec | None = None, **overrides: Any) -> Dataset:
    """A tiny DX (for presentation) image whose header carries the dose.

    ``ImageAndFluoroscopyAreaDoseProduct`` (0018,115E) is in dGy*cm2 (PS3.3).
    """
    s: DXImageSpec = _coerce(DXImageSpec, spec, overrides)
    study_uid, series_uid, sop_uid, _ = _resolve_uids(s)
    acq = s.acquisition_datetime or s.study_datetime
    ds = Dataset()
    _patient_study_equipment(ds, s, study_uid, series_uid, sop_uid, acq)
    processing = s.presentation_intent.upper() == "FOR PROCESSING"
    ds.SOPClassUID = DX_IMAGE_FOR_PROCESSING if processing else DX_IMAGE_FOR_PRESENTATION
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = s.modality
    ds.AcquisitionDateTime = _fmt_dt(acq)
    if not s.omit_irradiation_event_uid:
        ds.IrradiationEventUID = s.irradiation_event_uid or generate_uid()
    if s.protocol_name:
        ds.ProtocolName = s.protocol_name
    if s.body_part_examined:
        ds.BodyPartExamined = s.body_part_examined
    if s.kvp is not None:
        ds.KVP = _fmt_num(s.kvp)
    if s.distance_source_to_detector_mm is not None:
        ds.DistanceSourceToDetector = _fmt_num(s.distance_source_to_detector_mm)
    if s.exposure_time_ms is not None:
        ds.ExposureTime = int(s.exposure_time_ms)
    if s.tube_current_ma is not None:
        ds.XRayTubeCurrent = int(s.tube_current_ma)
    if s.exposure_mas is not None:
        ds.Exposure = int(s.exposure_mas)
    if s.dap_dgy_cm2 is not None:
        ds.ImageAndFluoroscopyAreaDoseProduct = _fmt_num(s.dap_dgy_cm2)
    if s.exposure_index is not None:
        ds.ExposureIndex = _fmt_num(s.exposure_index)
    if s.target_exposure_index is not None:
        ds.TargetExposureIndex = _fmt_num(s.target_exposure_index)
    if s.deviation_index is not None:
        ds.DeviationIndex = _fmt_num(s.deviation_index)
    ds.ImagerPixelSpacing = ["0.143", "0.143"]
    if s.view_position:
        ds.ViewPosition = s.view_position
    ds.PresentationIntentType = s.presentation_intent.upper()
    ds.PatientOrientation = ["A", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.DetectorType = "SCINTILLATOR"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    if s.entrance_dose_mgy is not None:
        ds.EntranceDoseInmGy = _fmt_num(s.entrance_dose_mgy)
    ds.AcquisitionNumber = 1
    _pixels(ds, len(sop_uid))
    return ds


def build_mr_image(spec: MRImageSpec | None = None, **overrides: Any) -> Dataset:
    """A tiny MR image whose header carries SAR (0018,1316), dB/dt (0018,1318), B0."""
    s: MRImageSpec = _coerce(MRImageSpec, spec, overrides)
    study_uid, series_uid, sop_uid, _ = _resolve_uids(s)
    acq = s.acquisition_datetime or s.study_datetime
    ds = Dataset()
    _patient_study_equipment(ds, s, study_uid, series_uid, sop_uid, acq)
    ds.SOPClassUID = MR_IMAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.Modality = "MR"
    ds.AcquisitionDateTime = _fmt_dt(acq)
    if s.series_description:
        ds.SeriesDescription = s.series_description
    if s.protocol_name:
        ds.ProtocolName = s.protocol_name
    if s.body_part_examined:
        ds.BodyPartExamined = s.body_part_examined
    ds.ScanningSequence = ["GR", "IR"]
    ds.SequenceVariant = ["SK", "SP", "MP"]
    ds.ScanOptions = "IR"
    ds.MRAcquisitionType = "3D"
    ds.SliceThickness = "1"
    ds.RepetitionTime = _fmt_num(s.repetition_time_ms)
    ds.EchoTime = _fmt_num(s.echo_time_ms)
    ds.EchoTrainLength = 1
    ds.ImagingFrequency = _fmt_num(round(42.577478 * s.field_strength_t, 4))
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = _fmt_num(s.field_strength_t)
    if s.sar_w_kg is not None:
        ds.SAR = _fmt_num(s.sar_w_kg)
    if s.db_dt_t_s is not None:
        ds.dBdt = _fmt_num(s.db_dt_t_s)
    if s.b1rms_ut is not None:
        ds.B1rms = float(s.b1rms_ut)
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = deterministic_uid("for", study_uid)
    ds.ImagePositionPatient = ["-4", "-4", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["1", "1"]
    _pixels(ds, len(sop_uid))
    return ds


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------
def to_bytes(ds: Dataset) -> bytes:
    """Part-10 file bytes (file meta + Explicit VR Little Endian data set)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "DOSEREG_BUILDER"
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` as a Part-10 file; returns the path."""
    p = Path(path)
    p.write_bytes(to_bytes(ds))
    return p


# ---------------------------------------------------------------------------
# UIDs
# ---------------------------------------------------------------------------
def deterministic_uid(*parts: object) -> str:
    """A UID derived from ``parts`` (same parts, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _rng_uid(rng: random.Random) -> str:
    return generate_uid(entropy_srcs=[f"{rng.getrandbits(128):032x}"])


def rewrite_uids(obj: Dataset | bytes, *, study_instance_uid: str | None = None,
                 series_instance_uid: str | None = None, sop_instance_uid: str | None = None,
                 patient_id: str | None = None, rng: random.Random | None = None,
                 ) -> Dataset | bytes:
    """A copy of ``obj`` with fresh SOP/Study/Series and Irradiation Event UIDs.

    Every UI value (and UIDREF content item) equal to a replaced UID is
    rewritten consistently, so 110180 Study Instance UID items, image
    IrradiationEventUID (0008,3010) and evidence references stay in step.
    Bytes in, bytes out (same transfer syntax); Dataset in, new Dataset out.
    Pass ``rng`` for reproducible UIDs.
    """
    as_bytes = not isinstance(obj, Dataset)
    ds: Dataset = copy.deepcopy(obj) if isinstance(obj, Dataset) else dcmread(io.BytesIO(bytes(obj)), force=True)
    new = (lambda: _rng_uid(rng)) if rng is not None else (lambda: str(generate_uid()))

    mapping: dict[str, str] = {}
    for keyword, forced in (("SOPInstanceUID", sop_instance_uid),
                            ("StudyInstanceUID", study_instance_uid),
                            ("SeriesInstanceUID", series_instance_uid)):
        old = ds.get(keyword)
        if old:
            mapping[str(old)] = forced or new()

    def collect(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    collect(item)
            elif elem.tag in (0x00083010, 0x00081155) and elem.value:
                # IrradiationEventUID (1-n) and referenced image instances
                values = elem.value if elem.VM > 1 else [elem.value]
                for v in values:
                    mapping.setdefault(str(v), new())
        if d.get("ValueType") == "UIDREF" and "UID" in d:
            cn = d.get("ConceptNameCodeSequence")
            if cn and cn[0].get("CodeValue") in ("113769", "113853"):
                mapping.setdefault(str(d.UID), new())

    def apply(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    apply(item)
            elif elem.VR == "UI" and elem.value:
                if elem.VM > 1:
                    elem.value = [mapping.get(str(v), str(v)) for v in elem.value]
                else:
                    elem.value = mapping.get(str(elem.value), elem.value)

    collect(ds)
    apply(ds)
    if patient_id is not None:
        ds.PatientID = patient_id
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if not as_bytes:
        return ds
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format="TransferSyntaxUID" in getattr(ds, "file_meta", {}))
    return buf.getvalue()
