"""Typed records produced by the pure extraction layer.

No Django imports here or anywhere in ``dosereg.rdsr``. Every dose value carries
its unit in its attribute name and is already normalised to that unit. Unknown
values are ``None`` (never 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

# source_kind values
RDSR = "rdsr"
IMAGE_HEADER = "image_header"
MR_HEADER = "mr_header"
DOSE_SUMMARY = "dose_summary"
RRDSR = "rrdsr"                        # Radiopharmaceutical Radiation Dose SR (TID 10021)
PATIENT_DOSE_SR = "patient_dose_sr"    # Patient Radiation Dose SR (TID 10030): recorded, estimates not used
NM_HEADER = "nm_header"                # NM / PET image: Radiopharmaceutical Information Sequence (0054,0016)

# Pregnancy status (0010,21C0) enumerated values, normalised
PREGNANCY_NOT = "not_pregnant"          # 0001
PREGNANCY_POSSIBLE = "possibly_pregnant"  # 0002
PREGNANCY_DEFINITE = "definitely_pregnant"  # 0003
PREGNANCY_UNKNOWN = "unknown"           # 0004

# participant roles (CID 7453), normalised
ROLE_AUTHORIZING = "irradiation_authorizing"      # (113850, DCM)
ROLE_ADMINISTERING = "irradiation_administering"  # (113851, DCM)


@dataclass
class PatientInfo:
    id: str | None = None
    issuer: str | None = None
    name: str | None = None
    sex: str | None = None               # "M" / "F" / "O" / None
    birth_date: date | None = None
    age_years: float | None = None       # from (0010,1010) Patient's Age
    weight_kg: float | None = None
    size_m: float | None = None
    pregnancy_status: str | None = None  # one of PREGNANCY_* or None


@dataclass
class DeviceInfo:
    manufacturer: str | None = None
    model: str | None = None
    station_name: str | None = None
    serial_number: str | None = None
    device_observer_uid: str | None = None
    device_observer_name: str | None = None
    software_versions: str | None = None
    institution_name: str | None = None
    department: str | None = None
    acquisition_device_type: str | None = None  # e.g. "fluoroscopy_guided", "integrated", "cassette_based"


@dataclass
class PlaneTotals:
    plane: str  # "single" | "A" | "B"
    dap_total_gy_cm2: float | None = None
    dose_rp_total_gy: float | None = None
    fluoro_dap_total_gy_cm2: float | None = None
    acquisition_dap_total_gy_cm2: float | None = None
    fluoro_dose_rp_total_gy: float | None = None
    acquisition_dose_rp_total_gy: float | None = None
    fluoro_time_total_s: float | None = None
    acquisition_time_total_s: float | None = None
    total_frames: int | None = None
    reference_point_definition: str | None = None  # code meaning-free label or free text as sent
    reference_point_code: str | None = None        # e.g. "DCM:113860" when coded
    derived: bool = False  # True when totals were computed from events because the device omitted them


@dataclass
class DoseCheck:
    """TID 10015 CT Dose Check details for one event."""
    dlp_alert_value_configured: bool | None = None
    ctdivol_alert_value_configured: bool | None = None
    dlp_alert_value_mgy_cm: float | None = None
    ctdivol_alert_value_mgy: float | None = None
    accumulated_dlp_forward_estimate_mgy_cm: float | None = None
    accumulated_ctdivol_forward_estimate_mgy: float | None = None
    dlp_notification_value_configured: bool | None = None
    ctdivol_notification_value_configured: bool | None = None
    dlp_notification_value_mgy_cm: float | None = None
    ctdivol_notification_value_mgy: float | None = None
    dlp_forward_estimate_mgy_cm: float | None = None
    ctdivol_forward_estimate_mgy: float | None = None
    reason_for_proceeding: str | None = None
    authorizing_person: str | None = None


@dataclass
class IrradiationEvent:
    irradiation_event_uid: str | None = None
    event_type: str | None = None        # normalised: fluoroscopy, stationary, stepping, rotational,
                                         # ct_spiral, ct_sequenced, ct_constant_angle, ct_stationary, ct_free
    event_type_code: str | None = None   # "SCHEME:VALUE" as sent
    datetime: datetime | None = None
    plane: str | None = None             # "single" | "A" | "B"
    protocol: str | None = None
    comment: str | None = None
    # projection
    dap_gy_cm2: float | None = None
    dose_rp_gy: float | None = None
    entrance_exposure_at_rp_mgy: float | None = None
    reference_point_definition: str | None = None
    kvp: float | None = None
    tube_current_ma: float | None = None
    exposure_time_ms: float | None = None
    pulse_width_ms: float | None = None
    pulse_rate_per_s: float | None = None
    number_of_pulses: float | None = None
    number_of_frames: int | None = None
    irradiation_duration_s: float | None = None
    fluoro_mode: str | None = None       # "continuous" | "pulsed"
    dose_mode: str | None = None         # vendor dose/fluoro mode text where sent
    positioner_primary_angle_deg: float | None = None
    positioner_secondary_angle_deg: float | None = None
    distance_source_to_detector_mm: float | None = None
    collimated_field_area_m2: float | None = None
    filter_material: str | None = None
    exposure_index: float | None = None
    deviation_index: float | None = None
    # CT
    ctdivol_mgy: float | None = None
    dlp_mgy_cm: float | None = None
    ctdiw_phantom: str | None = None     # "head_16cm" | "body_32cm"
    ct_scanning_length_mm: float | None = None
    ct_pitch_factor: float | None = None
    ct_exposure_time_s: float | None = None
    ssde_mgy: float | None = None
    dose_check: DoseCheck | None = None
    # mammography (TID 10003 items of TID 10010; MG image headers), see dosereg.rdsr.mammo
    agd_mgy: float | None = None                   # Average Glandular Dose (111631) / Organ Dose (0040,0316)
    compression_thickness_mm: float | None = None  # (111633) / Body Part Thickness (0018,11A0)
    compression_force_n: float | None = None       # (111647) / Compression Force (0018,11A2)
    laterality: str | None = None                  # "L" | "R" | "B" (breast or image laterality)
    view: str | None = None                        # e.g. "CC", "MLO" (code meaning or View Position as sent)
    view_code: str | None = None                   # "SCT:399162004" when coded
    anode_target_material: str | None = None
    presentation_intent: str | None = None         # "FOR PRESENTATION" | "FOR PROCESSING" (image headers)
    # both
    target_region: str | None = None       # meaning as sent (display only)
    target_region_code: str | None = None  # "SCHEME:VALUE" normalised to SCT where a mapping is known
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Participant:
    name: str | None = None
    role: str | None = None       # ROLE_* or other normalised role text
    role_code: str | None = None  # "DCM:113850"
    person_id: str | None = None
    organization: str | None = None
    source: str = "rdsr"           # "rdsr" | "header_performing_physician" | "header_operator" | "event_text"


@dataclass
class MRInfo:
    sar_w_kg: float | None = None
    sar_definition: str | None = None
    db_dt_t_s: float | None = None
    field_strength_t: float | None = None
    b1rms_ut: float | None = None
    operating_mode: str | None = None
    protocol: str | None = None


@dataclass
class BreastDose:
    """Accumulated Average Glandular Dose (111637) of one breast, as the report states it (TID 10005)."""
    laterality: str                      # "L" | "R" | "B"
    accumulated_agd_mgy: float | None = None


@dataclass
class RadiopharmaceuticalAdministration:
    """One administration of TID 10022 (Radiopharmaceutical Radiation Dose SR), or of a PET/NM image header."""
    event_uid: str | None = None               # Radiopharmaceutical Administration Event UID (113503)
    radiopharmaceutical: str | None = None     # meaning as sent (display only)
    radiopharmaceutical_code: str | None = None  # "SCT:35321007"
    radionuclide: str | None = None
    radionuclide_code: str | None = None       # "SCT:77004003"
    radionuclide_half_life_s: float | None = None
    administered_activity_mbq: float | None = None
    pre_administration_activity_mbq: float | None = None
    post_administration_activity_mbq: float | None = None
    start_datetime: datetime | None = None
    stop_datetime: datetime | None = None
    route: str | None = None
    route_code: str | None = None
    volume_ml: float | None = None
    comment: str | None = None


@dataclass
class DoseDocument:
    sop_instance_uid: str
    sop_class_uid: str
    source_kind: str                      # RDSR | IMAGE_HEADER | MR_HEADER | DOSE_SUMMARY
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    modality: str | None = None           # DICOM (0008,0060) of the object
    procedure_modality: str | None = None  # "CT" | "RF" | "DX" | "MG" | "XA" | "MR" | "NM" (what was done)
    template_id: str | None = None        # "10001" | "10011" | "10021" | "10030" | None
    procedure_reported: str | None = None  # "SCHEME:VALUE"
    study_datetime: datetime | None = None
    accession_number: str | None = None
    study_description: str | None = None
    procedure_description: str | None = None
    patient: PatientInfo = field(default_factory=PatientInfo)
    device: DeviceInfo = field(default_factory=DeviceInfo)
    planes: list[PlaneTotals] = field(default_factory=list)
    dlp_total_mgy_cm: float | None = None
    ct_total_events: int | None = None
    start_of_irradiation: datetime | None = None
    end_of_irradiation: datetime | None = None
    scope_of_accumulation: str | None = None  # "study" | "performed_procedure_step" | ...
    events: list[IrradiationEvent] = field(default_factory=list)
    participants: list[Participant] = field(default_factory=list)
    mr: MRInfo | None = None
    breasts: list[BreastDose] = field(default_factory=list)  # mammography: accumulated AGD per breast
    radiopharmaceuticals: list[RadiopharmaceuticalAdministration] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the subset of ``warnings`` that makes the stored result doubtful (a dose value that could not be read,
    # a date out of range or invalid, stored as null): shown as a flag on the study, not only in the log
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
