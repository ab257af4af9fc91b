"""Registry models: what was received, and the dose it carried.

Units are in field names. NULL means "not reported", never zero.
"""
from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from dosereg.rdsr import records as R

PREGNANT_STATUSES = (R.PREGNANCY_POSSIBLE, R.PREGNANCY_DEFINITE)
# a study of a (possibly) pregnant patient: staff's override wins over the DICOM Pregnancy Status
PREGNANT_Q = Q(pregnancy_status_override__in=PREGNANT_STATUSES) | (
    Q(pregnancy_status_override="") & Q(pregnancy_status__in=PREGNANT_STATUSES))


class Patient(models.Model):
    patient_id = models.CharField(max_length=128)  # clear text, or HMAC pseudonym when pseudonymisation is on
    issuer = models.CharField(max_length=128, blank=True, default="")
    name = models.CharField(max_length=256, blank=True, default="")
    sex = models.CharField(max_length=4, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)
    pseudonymised = models.BooleanField(default=False)
    # RIS merges: a merged patient points at the surviving record; unmerge clears it.
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "patient_id"], name="uniq_patient_issuer_id")]

    def __str__(self) -> str:
        return f"{self.patient_id}" + (f" ({self.issuer})" if self.issuer else "")


class Device(models.Model):
    """A physical unit. Identity survives a change of Device Observer UID (see DeviceIdentifier)."""

    manufacturer = models.CharField(max_length=128, blank=True, default="")
    model = models.CharField(max_length=128, blank=True, default="")
    serial_number = models.CharField(max_length=128, blank=True, default="")
    station_name = models.CharField(max_length=128, blank=True, default="")
    device_observer_uid = models.CharField(max_length=128, blank=True, default="")
    software_versions = models.CharField(max_length=256, blank=True, default="")
    institution = models.CharField(max_length=256, blank=True, default="")
    department = models.CharField(max_length=256, blank=True, default="")
    display_name = models.CharField(max_length=256, blank=True, default="")
    modality = models.CharField(max_length=8, blank=True, default="")
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    # merged into another device (web: Devices > merge): kept so that links to it resolve; shows nowhere else
    merged_into = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from")

    def __str__(self) -> str:
        return self.display_name or " ".join(x for x in (self.manufacturer, self.model, self.station_name) if x) or f"device {self.pk}"


class DeviceIdentifier(models.Model):
    """Every identifier a device has been seen with: serial, observer UID, station name."""

    KIND_SERIAL = "serial"
    KIND_OBSERVER_UID = "observer_uid"
    KIND_STATION = "station"
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="identifiers")
    kind = models.CharField(max_length=16)
    value = models.CharField(max_length=400)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="uniq_device_identifier")]


class DeviceIdentity(models.Model):
    """One device identity exactly as objects carried it (manufacturer, model, serial, station, observer UID).
    Every study keeps the identity it arrived with (``Study.received_identity``), so a device can be split by
    what its objects said, and a merge or split never loses what was received."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="received_identities")
    key = models.CharField(max_length=64, unique=True)  # sha256 of the five values (device_identity.ReceivedIdentity)
    manufacturer = models.CharField(max_length=128, blank=True, default="")
    model = models.CharField(max_length=128, blank=True, default="")
    serial_number = models.CharField(max_length=128, blank=True, default="")
    station_name = models.CharField(max_length=128, blank=True, default="")
    device_observer_uid = models.CharField(max_length=128, blank=True, default="")
    first_seen = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return " / ".join(x for x in (self.manufacturer, self.model, self.serial_number and f"SN {self.serial_number}",
                                      self.station_name) if x) or f"identity {self.pk}"


class DeviceSoftwareVersion(models.Model):
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="software_history")
    software_versions = models.CharField(max_length=256)
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "software_versions"], name="uniq_device_sw")]


class Study(models.Model):
    # set by the ingest writer on the instance it returns (not columns): whether this ingest created the study, and
    # the patient it had before (a correction moves a study), whether it wrote an event with a reference air kerma
    created_by_this_ingest: bool
    former_patient_id: int | None
    kar_written: bool

    study_instance_uid = models.CharField(max_length=128, unique=True)
    # no single-column indexes on patient, device, study_datetime: the (patient, date), (device, date) and
    # (date, id) indexes below serve the same lookups, and each index is one more write per ingested study
    patient = models.ForeignKey(Patient, null=True, on_delete=models.PROTECT, related_name="studies", db_index=False)
    device = models.ForeignKey(Device, null=True, on_delete=models.PROTECT, related_name="studies", db_index=False)
    # the device identity as its latest report carried it (a device merge or split moves ``device``, never this)
    received_identity = models.ForeignKey(DeviceIdentity, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="studies")
    study_datetime = models.DateTimeField(null=True)
    accession_number = models.CharField(max_length=64, blank=True, default="")
    study_description = models.CharField(max_length=256, blank=True, default="")
    procedure_modality = models.CharField(max_length=8, blank=True, default="")  # CT, RF, XA, DX, MG, MR
    # the standard examination name its (modality, study description) is mapped to, NULL while unmapped: a copy kept
    # by dosereg.protocols.services (the pipeline's protocols step after each ingest or merge, and every mapping
    # edit) so that the study browser sorts by it from an index instead of resolving the mapping per study
    standard_name = models.CharField(max_length=128, null=True, blank=True)
    # the sex of the study's patient record (``Patient.sex``; "" when not recorded or no patient): a copy kept by the
    # registry, set with the study's patient at every ingest (``studies._study_fields``) and on the record's
    # studies when a later report fills the record's sex in (``patients.patient_resolve``), so that the study
    # browser filters and sorts by it from an index instead of joining every study to its patient
    patient_sex = models.CharField(max_length=4, blank=True, default="")
    pregnancy_status = models.CharField(max_length=24, blank=True, default="")
    # set by staff in the app/API; wins over the DICOM value when present
    pregnancy_status_override = models.CharField(max_length=24, blank=True, default="")
    patient_weight_kg = models.FloatField(null=True)
    patient_size_m = models.FloatField(null=True)
    patient_age_years = models.FloatField(null=True)
    # study totals derived from the active dose objects (recomputed by services)
    dap_total_gy_cm2 = models.FloatField(null=True)
    dose_rp_max_plane_gy = models.FloatField(null=True)  # the largest per-plane Ka,r (planes are never added)
    fluoro_time_total_s = models.FloatField(null=True)
    dlp_total_mgy_cm = models.FloatField(null=True)
    ctdivol_max_mgy = models.FloatField(null=True)
    event_count = models.IntegerField(default=0)
    # the distinct protocol names of its events, one per line, kept with the totals (registry.totals): the study
    # browser's "protocol contains" search reads one trigram index over studies, not one over every event
    protocol_names = models.TextField(blank=True, default="")
    has_ionising_dose = models.BooleanField(default=True)
    # not a patient: a phantom, QA or test exposure (NOT_PATIENT_PATTERN matched the patient ID or name; the
    # matched text is kept). Stored and alerted like any study, but left out of protocol and device statistics.
    not_patient_reason = models.CharField(max_length=64, blank=True, default="")
    # data-quality flags of its active reports (a dose value that could not be read, a date out of range or
    # invalid and stored as null, a patient name that differs from the registered patient's, a re-filed
    # report): the study's stored values are doubtful; shown on the study page and the dashboard
    flags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["patient", "study_datetime"]),
            # the device's studies newest first (device pages, the protocol audit's buckets, the study browser's walk
            # of each device for the sorts by site and device); the modality included, so that the walk with a
            # modality filter reads a device without studies of that modality from the index alone instead of
            # fetching every one of its studies (PostgreSQL; SQLite has no INCLUDE and builds the key columns)
            models.Index(fields=["device", "study_datetime", "id"], include=["procedure_modality"], name="study_device_date"),
            models.Index(fields=["study_datetime", "id"], name="study_datetime_id"),
            # the dashboard's pregnancy list: newest studies of pregnant patients, without reading the others
            models.Index(F("study_datetime").desc(), condition=PREGNANT_Q, name="study_pregnant_recent"),
            # the dashboard's data-quality list and the browser's "flagged" filter: the flagged studies only (a few),
            # without scanning every study (a sequential scan of 100k studies took 38-52 ms of every dashboard)
            models.Index(F("study_datetime").desc(), condition=~Q(flags=[]), name="study_flagged_recent"),
            # the browser's sort by patient sex: each sex's studies newest first, read backwards (no other index
            # holds the sex; a group walk on the date index with a join filter read 50,000 studies to jump to the
            # middle page at 1M events); the modality included, as in study_device_date
            models.Index(fields=["patient_sex", "study_datetime", "id"], include=["procedure_modality"], name="study_sex_date"),
            # the browser's "unmapped" filter (standard name not yet mapped: the copy is NULL), newest first: the
            # unmapped studies only, not an anti-join of every study with the mappings (29 ms at 100k studies)
            # (no NULLS LAST: SQLite, the embedded default, has none in an index; the count reads it either way)
            models.Index(F("study_datetime").desc(), condition=Q(standard_name__isnull=True), name="study_unmapped_recent"),
        ]

    @property
    def effective_pregnancy_status(self) -> str:
        return self.pregnancy_status_override or self.pregnancy_status


class DoseObject(models.Model):
    """One received DICOM object: the durable original plus its ingest state."""

    STATUS_RECEIVED = "received"
    STATUS_INGESTED = "ingested"
    STATUS_QUARANTINED = "quarantined"
    # a well-formed object of an accepted class that carries no dose (e.g. a Comprehensive SR radiology report):
    # kept with its reason, never quarantined (issue 16)
    STATUS_NOT_DOSE = "not_dose_object"
    STATUS_CHOICES = [(s, s) for s in (STATUS_RECEIVED, STATUS_INGESTED, STATUS_QUARANTINED, STATUS_NOT_DOSE)]

    # Identity is (SOP Instance UID, content hash): the same object re-sent is a duplicate; a different
    # object under a re-used SOP Instance UID is kept too (a correction replaces the earlier one only
    # within the same study, see services).
    sop_instance_uid = models.CharField(max_length=128)  # looked up by uniq_object_content (sop_instance_uid, sha256)
    sop_class_uid = models.CharField(max_length=128, blank=True, default="")
    calling_ae = models.CharField(max_length=32, blank=True, default="")
    # Software Versions (0018,1020) as this object carried them ("" = it carried none; NULL = ingested before this
    # was recorded, 2026-12-06: reprocess to fill it). A device split moves the software history of the moved
    # reports' versions with them (``registry.devices``); the study page and API show it as received.
    software_versions = models.CharField(max_length=256, null=True, blank=True)
    path = models.CharField(max_length=1024)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=STATUS_RECEIVED)  # index: (status, received_at)
    quarantine_reason = models.TextField(blank=True, default="")
    attempts = models.IntegerField(default=0)
    # deliveries of the ingest task that started while the object was still "received" (INGEST_MAX_DELIVERIES)
    deliveries = models.IntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True)
    ingested_at = models.DateTimeField(null=True)
    # extracted
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="dose_objects")
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.SET_NULL, related_name="dose_objects")
    source_kind = models.CharField(max_length=16, blank=True, default="")
    template_id = models.CharField(max_length=8, blank=True, default="")
    scope_of_accumulation = models.CharField(max_length=32, blank=True, default="")
    dlp_total_mgy_cm = models.FloatField(null=True)
    warnings = models.JSONField(default=list, blank=True)
    flags = models.JSONField(default=list, blank=True)  # the warnings that make its values doubtful (Study.flags)
    # a later cumulative RDSR that holds all of this one's events supersedes it
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="supersedes")

    # not a column: what the ingest that returned this object changed (services.StudyChanges), for the pipeline
    changes: object | None = None

    class Meta:
        indexes = [models.Index(fields=["status", "received_at"])]
        constraints = [models.UniqueConstraint(fields=["sop_instance_uid", "sha256"], name="uniq_object_content")]


class PlaneTotal(models.Model):
    dose_object = models.ForeignKey(DoseObject, on_delete=models.CASCADE, related_name="planes")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="plane_totals")
    plane = models.CharField(max_length=8)  # single, A, B
    dap_total_gy_cm2 = models.FloatField(null=True)
    dose_rp_total_gy = models.FloatField(null=True)
    fluoro_dap_total_gy_cm2 = models.FloatField(null=True)
    acquisition_dap_total_gy_cm2 = models.FloatField(null=True)
    fluoro_dose_rp_total_gy = models.FloatField(null=True)
    acquisition_dose_rp_total_gy = models.FloatField(null=True)
    fluoro_time_total_s = models.FloatField(null=True)
    acquisition_time_total_s = models.FloatField(null=True)
    total_frames = models.IntegerField(null=True)
    reference_point_definition = models.CharField(max_length=256, blank=True, default="")
    reference_point_code = models.CharField(max_length=64, blank=True, default="")
    derived = models.BooleanField(default=False)


class IrradiationEvent(models.Model):
    # no index of its own: uniq_event_per_study (study, irradiation_event_uid) serves the study's lookups
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="events", db_index=False)
    dose_object = models.ForeignKey(DoseObject, on_delete=models.CASCADE, related_name="events")
    irradiation_event_uid = models.CharField(max_length=128)
    event_type = models.CharField(max_length=32, blank=True, default="")
    datetime = models.DateTimeField(null=True)
    plane = models.CharField(max_length=8, blank=True, default="")
    protocol = models.CharField(max_length=256, blank=True, default="")
    dap_gy_cm2 = models.FloatField(null=True)
    dose_rp_gy = models.FloatField(null=True)
    reference_point_definition = models.CharField(max_length=256, blank=True, default="")
    kvp = models.FloatField(null=True)
    tube_current_ma = models.FloatField(null=True)
    exposure_time_ms = models.FloatField(null=True)
    pulse_rate_per_s = models.FloatField(null=True)
    number_of_frames = models.IntegerField(null=True)
    irradiation_duration_s = models.FloatField(null=True)
    fluoro_mode = models.CharField(max_length=16, blank=True, default="")
    dose_mode = models.CharField(max_length=64, blank=True, default="")
    positioner_primary_angle_deg = models.FloatField(null=True)
    positioner_secondary_angle_deg = models.FloatField(null=True)
    collimated_field_area_m2 = models.FloatField(null=True)
    # technique and geometry a physicist audits and the skin-dose estimate needs (TID 10003A/B, 10003C)
    entrance_exposure_at_rp_mgy = models.FloatField(null=True)
    pulse_width_ms = models.FloatField(null=True)
    number_of_pulses = models.FloatField(null=True)
    distance_source_to_detector_mm = models.FloatField(null=True)
    distance_source_to_isocenter_mm = models.FloatField(null=True)
    table_longitudinal_position_mm = models.FloatField(null=True)
    table_lateral_position_mm = models.FloatField(null=True)
    table_height_position_mm = models.FloatField(null=True)
    filter_material = models.CharField(max_length=128, blank=True, default="")
    exposure_index = models.FloatField(null=True)
    target_exposure_index = models.FloatField(null=True)
    deviation_index = models.FloatField(null=True)
    ctdivol_mgy = models.FloatField(null=True)
    dlp_mgy_cm = models.FloatField(null=True)
    ctdiw_phantom = models.CharField(max_length=16, blank=True, default="")
    ct_scanning_length_mm = models.FloatField(null=True)
    ct_pitch_factor = models.FloatField(null=True)
    ct_exposure_time_s = models.FloatField(null=True)
    ssde_mgy = models.FloatField(null=True)
    target_region = models.CharField(max_length=128, blank=True, default="")
    target_region_code = models.CharField(max_length=64, blank=True, default="")
    dose_check = models.JSONField(null=True, blank=True)
    # mammography (TID 10010 / MG image headers)
    agd_mgy = models.FloatField(null=True)                   # Average Glandular Dose
    compression_thickness_mm = models.FloatField(null=True)
    compression_force_n = models.FloatField(null=True)
    laterality = models.CharField(max_length=1, blank=True, default="")  # L, R, B
    view = models.CharField(max_length=64, blank=True, default="")       # CC, MLO, ... as sent
    view_code = models.CharField(max_length=64, blank=True, default="")
    anode_target_material = models.CharField(max_length=64, blank=True, default="")
    exposure_mas = models.FloatField(null=True)
    presentation_intent = models.CharField(max_length=16, blank=True, default="")
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "irradiation_event_uid"], name="uniq_event_per_study")]
        # the same events filed under another study (a re-filed report) are found by UID alone
        indexes = [models.Index(fields=["irradiation_event_uid"], name="event_uid")]


class Participant(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    dose_object = models.ForeignKey(DoseObject, on_delete=models.CASCADE, related_name="participants")
    name = models.CharField(max_length=256, blank=True, default="")
    role = models.CharField(max_length=64, blank=True, default="")
    role_code = models.CharField(max_length=64, blank=True, default="")
    person_id = models.CharField(max_length=128, blank=True, default="")
    source = models.CharField(max_length=32, blank=True, default="rdsr")


class MRExam(models.Model):
    """Intraoperative/other MR: no ionising dose; RF and gradient exposure recorded."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="mr_exams")
    dose_object = models.OneToOneField(DoseObject, on_delete=models.CASCADE, related_name="mr_exam")
    sar_w_kg = models.FloatField(null=True)
    sar_definition = models.CharField(max_length=32, blank=True, default="")
    db_dt_t_s = models.FloatField(null=True)
    field_strength_t = models.FloatField(null=True)
    b1rms_ut = models.FloatField(null=True)
    operating_mode = models.CharField(max_length=32, blank=True, default="")
    protocol = models.CharField(max_length=256, blank=True, default="")


class BreastDose(models.Model):
    """Accumulated Average Glandular Dose per breast as one mammography report states it (TID 10005, 111637).
    The study's cumulative AGD per breast: ``registry.selectors.study_breast_agd``."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="breast_doses")
    dose_object = models.ForeignKey(DoseObject, on_delete=models.CASCADE, related_name="breast_doses")
    laterality = models.CharField(max_length=1)  # L, R, B
    accumulated_agd_mgy = models.FloatField(null=True)


class RadiopharmaceuticalAdministration(models.Model):
    """One radiopharmaceutical administration (Radiopharmaceutical Radiation Dose SR, TID 10022). The NM/PET part
    of a study: never added to its CT or projection quantities."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="radiopharmaceutical_administrations")
    dose_object = models.ForeignKey(DoseObject, on_delete=models.CASCADE, related_name="radiopharmaceutical_administrations")
    event_uid = models.CharField(max_length=128, blank=True, default="")
    radiopharmaceutical = models.CharField(max_length=256, blank=True, default="")
    radiopharmaceutical_code = models.CharField(max_length=64, blank=True, default="")
    radionuclide = models.CharField(max_length=128, blank=True, default="")
    radionuclide_code = models.CharField(max_length=64, blank=True, default="")
    radionuclide_half_life_s = models.FloatField(null=True)
    administered_activity_mbq = models.FloatField(null=True)
    pre_administration_activity_mbq = models.FloatField(null=True)
    post_administration_activity_mbq = models.FloatField(null=True)
    start_datetime = models.DateTimeField(null=True)
    stop_datetime = models.DateTimeField(null=True)
    route = models.CharField(max_length=128, blank=True, default="")
    route_code = models.CharField(max_length=64, blank=True, default="")
    volume_ml = models.FloatField(null=True)
    patient_weight_kg = models.FloatField(null=True)
    patient_size_m = models.FloatField(null=True)
    comment = models.TextField(blank=True, default="")
