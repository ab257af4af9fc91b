"""Concept codes used by the dose templates, and SRT/SNM3 -> SCT normalisation.

Concepts are matched on the canonical ``(CodeValue, CodingSchemeDesignator)`` pair,
never on CodeMeaning.  :func:`canon` maps legacy SNOMED RT / SNM3 codes (and scheme
spellings) to SNOMED CT so that ``("P5-06000", "SRT")`` and ``("44491008", "SCT")``
compare equal.
"""
from __future__ import annotations

from functools import lru_cache

DCM = "DCM"
SCT = "SCT"


def dcm(v: str) -> tuple[str, str]:
    return (v, DCM)


def sct(v: str) -> tuple[str, str]:
    return (v, SCT)


# --- SRT / SNM3 -> SCT synonyms (core table; the rest come from pydicom's mapping) ---
SRT_TO_SCT: dict[str, str] = {
    "P5-06000": "44491008",   # Fluoroscopy
    "G-C0E8": "363703001",    # Has Intent
    "R-0038D": "373066001",   # Yes
    "R-00339": "373067005",   # No
    "P5-08001": "116152004",  # Spiral Acquisition
    "P5-08000": "77477000",   # Computed Tomography X-Ray
    "R-408C3": "261004008",   # Diagnostic Intent
    "R-41531": "262202000",   # Therapeutic Intent
    "R-002E9": "371931008",   # Combined Diagnostic and Therapeutic Procedure
    "A-2C090": "15869005",    # Dosimeter
    "G-C32C": "408730004",    # Procedure Context
    "P5-0808E": "399331006",  # CT without contrast
    "P5-00100": "27483000",   # Diagnostic radiography with contrast media
    "T-D0010": "38266002",    # Entire body
    "T-D3000": "51185008",    # Chest
    "T-D4000": "113345001",   # Abdomen
    "T-D8800": "7569003",     # Finger
    "F-10450": "102538003",   # Recumbent
    "F-10340": "40199007",    # Supine
    "F-10470": "102540008",   # Headfirst
    "C-120F9": "105830007",   # Aluminium or aluminium compound
}
# Not mapped on purpose (no verified SCT equivalent here; kept as SRT): C-127F9 Copper,
# C-164F9 Tungsten, T-D400 (Philips typo for T-D4000), T-D0001.

_LEGACY_SCHEMES = {"SRT", "SNM3", "99SDM"}
_SCHEME_ALIASES = {"SNOMED-CT": SCT, "SNOMED CT": SCT, "SCT": SCT, "DCM": DCM, "UCUM": "UCUM"}


_pydicom_map: dict[str, str] | None = None


def _pyd_map() -> dict[str, str]:
    global _pydicom_map
    if _pydicom_map is None:
        try:
            from pydicom.sr._snomed_dict import mapping  # private, but stable for years

            _pydicom_map = dict(mapping.get("SRT", {}))
        except Exception:  # noqa: BLE001
            _pydicom_map = {}
    return _pydicom_map


@lru_cache(maxsize=4096)
def canon(value: str, scheme: str) -> tuple[str, str]:
    """Canonical (value, scheme) key for matching."""
    value = value.strip()
    scheme = scheme.strip().upper()
    scheme = _SCHEME_ALIASES.get(scheme, scheme)
    if scheme in _LEGACY_SCHEMES:
        mapped = SRT_TO_SCT.get(value)
        if mapped is None:
            mapped = _pyd_map().get(value)
        if mapped is not None:
            return (mapped, SCT)
        return (value, "SRT")
    return (value, scheme)


def canon_str(value: str, scheme: str) -> str:
    v, s = canon(value, scheme)
    return f"{s}:{v}"


# --- Document level -----------------------------------------------------------
XRAY_DOSE_REPORT = dcm("113701")
PROCEDURE_REPORTED = dcm("121058")
PROJECTION_XRAY = dcm("113704")
MAMMOGRAPHY = sct("71651007")
CT_XRAY = sct("77477000")
HAS_INTENT = sct("363703001")
ACQUISITION_DEVICE_TYPE = dcm("122142")
ACQ_DEVICE_TYPES = {
    dcm("113957"): "fluoroscopy_guided",
    dcm("113958"): "integrated",
    dcm("113959"): "cassette_based",
    dcm("113960"): "ct",  # not in CID 10032 for projection; harmless
}
SCOPE_OF_ACCUMULATION = dcm("113705")
SCOPES = {
    dcm("113014"): "study",
    dcm("113016"): "performed_procedure_step",
    dcm("113015"): "series",
    dcm("113017"): "stationary",
    dcm("113018"): "free",
}
SOURCE_OF_DOSE_INFO = dcm("113854")
COMMENT = dcm("121106")
START_OF_IRRADIATION = dcm("113809")
END_OF_IRRADIATION = dcm("113810")

# TID 1002 observer context
OBSERVER_TYPE = dcm("121005")
DEVICE_OBSERVER_UID = dcm("121012")
DEVICE_OBSERVER_NAME = dcm("121013")
DEVICE_OBSERVER_MANUFACTURER = dcm("121014")
DEVICE_OBSERVER_MODEL = dcm("121015")
DEVICE_OBSERVER_SERIAL = dcm("121016")
DEVICE_OBSERVER_LOCATION = dcm("121017")

# TID 1020 person participant
PERSON_NAME = dcm("113870")
PERSON_ID = dcm("113871")
PERSON_ID_ISSUER = dcm("113872")
PERSON_ORGANIZATION = dcm("113873")
PERSON_ROLE_IN_PROCEDURE = dcm("113875")
ROLE_CODES = {
    dcm("113850"): "irradiation_authorizing",
    dcm("113851"): "irradiation_administering",
}
PERFORMING_PHYSICIAN_TEXT = dcm("121114")  # Philips: TEXT "Performing Physician" per event

# --- TID 10002 accumulated / TID 10004 / TID 10007 ------------------------------
ACCUMULATED_XRAY_DOSE = dcm("113702")
ACQUISITION_PLANE = dcm("113764")
PLANES = {dcm("113622"): "single", dcm("113620"): "A", dcm("113621"): "B", dcm("113890"): "all"}
CALIBRATION = dcm("122505")
DAP_TOTAL = dcm("113722")
DOSE_RP_TOTAL = dcm("113725")
FLUORO_DAP_TOTAL = dcm("113726")
ACQ_DAP_TOTAL = dcm("113727")
FLUORO_DOSE_RP_TOTAL = dcm("113728")
ACQ_DOSE_RP_TOTAL = dcm("113729")
TOTAL_FLUORO_TIME = dcm("113730")
TOTAL_ACQ_TIME = dcm("113855")
TOTAL_FRAMES = dcm("113731")
REFERENCE_POINT_DEFINITION = dcm("113780")
DISTANCE_SOURCE_TO_RP = dcm("113737")

# --- TID 10003 irradiation event ------------------------------------------------
IRRADIATION_EVENT = dcm("113706")
DATETIME_STARTED = dcm("111526")
IRRADIATION_EVENT_TYPE = dcm("113721")
EVENT_TYPES = {
    sct("44491008"): "fluoroscopy",
    dcm("113611"): "stationary",
    dcm("113612"): "stepping",
    dcm("113613"): "rotational",
    dcm("113804"): "ct_sequenced",
    sct("116152004"): "ct_spiral",
    dcm("113805"): "ct_constant_angle",
    dcm("113806"): "ct_stationary",
    dcm("113807"): "ct_free",
}
ACQUISITION_PROTOCOL = dcm("125203")
IRRADIATION_EVENT_UID = dcm("113769")
IRRADIATION_EVENT_UID_ALT = dcm("113853")
DAP = dcm("122130")
DOSE_RP = dcm("113738")
ENTRANCE_EXPOSURE_AT_RP = dcm("111636")
FLUORO_MODE = dcm("113732")
FLUORO_MODES = {dcm("113630"): "continuous", dcm("113631"): "pulsed"}
PULSE_RATE = dcm("113791")
NUMBER_OF_PULSES = dcm("113768")
PULSE_WIDTH = dcm("113793")
KVP = dcm("113733")
TUBE_CURRENT = dcm("113734")
EXPOSURE_TIME = dcm("113735")
EXPOSURE_TIME_CT = dcm("113824")  # also used (wrongly) by some projection systems
EXPOSURE = dcm("113736")
AVERAGE_TUBE_CURRENT = dcm("113767")
IRRADIATION_DURATION = dcm("113742")
POSITIONER_PRIMARY_ANGLE = dcm("112011")
POSITIONER_SECONDARY_ANGLE = dcm("112012")
DISTANCE_SOURCE_TO_DETECTOR = dcm("113750")
DISTANCE_SOURCE_TO_ISOCENTER = dcm("113748")
COLLIMATED_FIELD_AREA = dcm("113790")
XRAY_FILTERS = dcm("113771")
XRAY_FILTER_TYPE = dcm("113772")
XRAY_FILTER_MATERIAL = dcm("113757")
XRAY_FILTER_THICKNESS_MIN = dcm("113758")
XRAY_FILTER_THICKNESS_MAX = dcm("113773")
EXPOSURE_INDEX = dcm("113845")
TARGET_EXPOSURE_INDEX = dcm("113846")
DEVIATION_INDEX = dcm("113847")
TARGET_REGION = dcm("123014")
FOCAL_SPOT_SIZE = dcm("113766")
XRAY_GRID = dcm("111635")
ANODE_TARGET_MATERIAL = dcm("111632")
PATIENT_ORIENTATION = dcm("113743")
PATIENT_TABLE_RELATIONSHIP = dcm("113745")
TABLE_LONGITUDINAL = dcm("113751")
TABLE_LATERAL = dcm("113752")
TABLE_HEIGHT = dcm("113753")
ACQUIRED_IMAGE = dcm("113795")
AVERAGE_GLANDULAR_DOSE = dcm("111631")
DEVICE_ROLE_IN_PROCEDURE = dcm("113876")

# --- TID 10011 / 10012 / 10013 CT -------------------------------------------------
CT_ACCUMULATED = dcm("113811")
CT_TOTAL_EVENTS = dcm("113812")
CT_DLP_TOTAL = dcm("113813")
CT_EFFECTIVE_DOSE_TOTAL = dcm("113814")
CT_ACQUISITION = dcm("113819")
CT_ACQUISITION_TYPE = dcm("113820")
CT_ACQ_PARAMETERS = dcm("113822")
CT_NUMBER_OF_SOURCES = dcm("113823")
CT_SCANNING_LENGTH = dcm("113825")
CT_SINGLE_COLLIMATION = dcm("113826")
CT_TOTAL_COLLIMATION = dcm("113827")
CT_PITCH = dcm("113828")
CT_DOSE = dcm("113829")
CT_MEAN_CTDIVOL = dcm("113830")
CT_SOURCE_PARAMETERS = dcm("113831")
CT_SOURCE_ID = dcm("113832")
CT_MAX_TUBE_CURRENT = dcm("113833")
CT_ROTATION_TIME = dcm("113834")
CT_PHANTOM_TYPE = dcm("113835")
PHANTOMS = {dcm("113690"): "head_16cm", dcm("113691"): "body_32cm"}
CT_DLP = dcm("113838")
CT_EFFECTIVE_DOSE = dcm("113839")
CT_SSDE = dcm("113930")
CT_RECONSTRUCTABLE_LENGTH = dcm("113893")
CT_EXPOSED_RANGE = dcm("113899")
CT_MODULATION_TYPE = dcm("113842")

# --- TID 10015 Dose Check -------------------------------------------------------
DOSE_CHECK_ALERT = dcm("113900")
DOSE_CHECK_NOTIFICATION = dcm("113908")
DC_FIELDS_BOOL = {
    dcm("113901"): "dlp_alert_value_configured",
    dcm("113902"): "ctdivol_alert_value_configured",
    dcm("113909"): "dlp_notification_value_configured",
    dcm("113910"): "ctdivol_notification_value_configured",
}
DC_FIELDS_NUM = {
    dcm("113903"): ("dlp_alert_value_mgy_cm", "dlp_mgy_cm"),
    dcm("113904"): ("ctdivol_alert_value_mgy", "dose_mgy"),
    dcm("113905"): ("accumulated_dlp_forward_estimate_mgy_cm", "dlp_mgy_cm"),
    dcm("113906"): ("accumulated_ctdivol_forward_estimate_mgy", "dose_mgy"),
    dcm("113911"): ("dlp_notification_value_mgy_cm", "dlp_mgy_cm"),
    dcm("113912"): ("ctdivol_notification_value_mgy", "dose_mgy"),
    dcm("113913"): ("dlp_forward_estimate_mgy_cm", "dlp_mgy_cm"),
    dcm("113914"): ("ctdivol_forward_estimate_mgy", "dose_mgy"),
}
DC_REASON = dcm("113907")
YES = sct("373066001")
NO = sct("373067005")

# --- Enhanced X-Ray Radiation Dose SR (TID 10040 family), best effort --------------
ENH_ACCUMULATED_DOSE = dcm("130500")
ENH_EVENT_SUMMARY = dcm("130501")
ENH_IRRADIATION_DETAILS = dcm("130505")

# --- Reference point definitions (CID 10025) ---------------------------------------
RP_DEFINITIONS = {
    "113860": "15cm from Isocenter toward Source",
    "113861": "30cm in Front of Image Input Surface",
    "113862": "1cm above Tabletop",
    "113863": "30cm above Tabletop",
    "113864": "15cm from Table Centerline",
    "113865": "4.2cm above Breast Support Surface",
    "113941": "In Detector Plane",
    "113964": "At Surface of Patient",
    "113965": "100cm from X-Ray Source",
}

# --- Vendor private templates ----------------------------------------------------
SIEMENS_RADSUM_ROOT = ("C-10", "99SMS_RADSUM")
SIEMENS_RADSUM = {
    ("C-200", "99SMS_RADSUM"): "total_exposures",
    ("C-202", "99SMS_RADSUM"): "fluoro_time",
    ("C-204", "99SMS_RADSUM"): "dap",
    ("C-206", "99SMS_RADSUM"): "start",
    ("C-208", "99SMS_RADSUM"): "end",
    ("C-210", "99SMS_RADSUM"): "air_kerma",
}
PHILIPS_XPER = "99PHI-IXR-XPER"
PHILIPS_NUMBER_OF_FRAMES = ("003", PHILIPS_XPER)
PHILIPS_PERFORMING_PHYSICIAN = ("027", PHILIPS_XPER)
PHILIPS_FLUORO_FLAVOUR = ("030", PHILIPS_XPER)
