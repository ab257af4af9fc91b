"""Staff (occupational) exposure: people, badges, participation, dosimetry, alerts.

Units are in field names. NULL means "not reported", never zero. A value below the
dosimetry service's minimum reportable dose ("M") is stored with is_censored=True and
the reporting threshold as its value (or NULL when the threshold is unknown).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

# limit regimes
REGIME_ICRP = "icrp"  # ICRP 103 (2007) + ICRP 118 (2011)
REGIME_NRC = "nrc"    # US NRC 10 CFR 20.1201/1208
REGIME_CHOICES = [(REGIME_ICRP, "ICRP 103/118"), (REGIME_NRC, "US NRC 10 CFR 20")]

# badge positions (canonical)
POS_COLLAR = "collar"  # over the apron at the collar: H_O / H_N
POS_WAIST = "waist"    # under the apron at the waist or chest: H_U / H_W
POS_EYE = "eye"        # eye / head
POS_RING = "ring"      # extremity
POSITION_CHOICES = [
    (POS_COLLAR, "collar / over apron"),
    (POS_WAIST, "waist / under apron"),
    (POS_EYE, "eye / head"),
    (POS_RING, "ring / extremity"),
]

# operational quantities
Q_HP10 = "hp10"
Q_HP3 = "hp3"
Q_HP007 = "hp007"
QUANTITY_CHOICES = [(Q_HP10, "Hp(10)"), (Q_HP3, "Hp(3)"), (Q_HP007, "Hp(0.07)")]

# procedure roles used for scatter factors and participation
ROLE_FIRST_OPERATOR = "first_operator"
ROLE_SECOND_OPERATOR = "second_operator"
ROLE_NURSE = "nurse"
ROLE_RADIOGRAPHER = "radiographer"
ROLE_ANAESTHETIST = "anaesthetist"
ROLE_AUTHORIZING = "authorizing"  # authorised the irradiation; not necessarily in the room
ROLE_OTHER = "other"
STAFF_ROLE_CHOICES = [
    (ROLE_FIRST_OPERATOR, "first operator (interventionalist / surgeon)"),
    (ROLE_SECOND_OPERATOR, "second operator"),
    (ROLE_NURSE, "nurse"),
    (ROLE_RADIOGRAPHER, "radiographer"),
    (ROLE_ANAESTHETIST, "anaesthetist"),
    (ROLE_AUTHORIZING, "authorizing physician"),
    (ROLE_OTHER, "other"),
]


class Site(models.Model):
    """A site whose staff share one limit regime."""

    name = models.CharField(max_length=128, unique=True)
    limit_regime = models.CharField(max_length=8, choices=REGIME_CHOICES, default=REGIME_ICRP)
    effective_dose_algorithm = models.CharField(max_length=32, blank=True, default="")  # "" = the configured setting

    def __str__(self) -> str:
        return f"{self.name} ({self.limit_regime})"


class StaffSetting(models.Model):
    """A versioned, site-editable value with its source. The highest version in scope wins.

    Scope: regime "" applies to all regimes; site NULL applies to all sites. A change is a new row.
    """

    key = models.CharField(max_length=96)
    regime = models.CharField(max_length=8, blank=True, default="")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.CASCADE, related_name="settings")
    version = models.PositiveIntegerField(default=1)
    value = models.JSONField()
    unit = models.CharField(max_length=32, blank=True, default="")
    citation = models.TextField()
    verification = models.CharField(max_length=4, blank=True, default="")  # ✔ / ◐ / ⚠ as in the reference
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "regime", "site", "version"], name="uniq_staffsetting_site_version"),
            models.UniqueConstraint(
                fields=["key", "regime", "version"], condition=models.Q(site__isnull=True), name="uniq_staffsetting_global_version"
            ),
        ]
        indexes = [models.Index(fields=["key", "regime"])]

    def __str__(self) -> str:
        return f"{self.key}[{self.regime or '*'}] v{self.version} = {self.value} {self.unit}"


class StaffMember(models.Model):
    name = models.CharField(max_length=256)  # display name; DICOM PN "Family^Given" is accepted
    employee_id = models.CharField(max_length=64, unique=True)
    role = models.CharField(max_length=32, choices=STAFF_ROLE_CHOICES, default=ROLE_OTHER)
    department = models.CharField(max_length=128, blank=True, default="")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="staff_member")
    email = models.EmailField(blank=True, default="")
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.PROTECT, related_name="staff")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.employee_id})"

    @property
    def contact_email(self) -> str:
        return self.email or (self.user.email if self.user_id and self.user else "")


class StaffAlias(models.Model):
    """A name variant that identifies a staff member (the display name is always one)."""

    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=256)
    normalised = models.CharField(max_length=256, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["staff", "normalised"], name="uniq_staff_alias")]


class DosimeterBadge(models.Model):
    KIND_PASSIVE = "passive"    # OSL/TLD reported per wear period by a dosimetry service
    KIND_REALTIME = "realtime"  # electronic personal dosimeter (RaySafe i2/i3, DoseAware)
    KIND_CHOICES = [(KIND_PASSIVE, "passive"), (KIND_REALTIME, "real-time")]

    badge_id = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, default=KIND_PASSIVE)
    position = models.CharField(max_length=16, choices=POSITION_CHOICES)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.badge_id} ({self.position})"


class BadgeWearPeriod(models.Model):
    """Who wore a badge, from start to end (inclusive dates; end NULL = still worn).

    Wear periods of one badge never overlap (checked by services.badge_assign).
    """

    badge = models.ForeignKey(DosimeterBadge, on_delete=models.CASCADE, related_name="wear_periods")
    staff = models.ForeignKey(StaffMember, on_delete=models.PROTECT, related_name="wear_periods")
    start = models.DateField()
    end = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["badge", "start"]
        constraints = [models.CheckConstraint(condition=models.Q(end__isnull=True) | models.Q(end__gte=models.F("start")), name="wear_end_after_start")]


class PregnancyDeclaration(models.Model):
    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="pregnancies")
    declared_on = models.DateField()
    expected_due_date = models.DateField(null=True, blank=True)
    withdrawn_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def active_on(self, day) -> bool:
        if day < self.declared_on:
            return False
        if self.withdrawn_on and day >= self.withdrawn_on:
            return False
        if self.expected_due_date and day > self.expected_due_date:
            return False
        return True


class ScatterFactor(models.Model):
    """Physicist-configured dose per KAP (µSv per Gy·cm²) by room/device and role. Estimates only."""

    device = models.ForeignKey("registry.Device", null=True, blank=True, on_delete=models.CASCADE, related_name="staff_scatter_factors")
    role = models.CharField(max_length=32, choices=STAFF_ROLE_CHOICES)
    quantity = models.CharField(max_length=8, choices=QUANTITY_CHOICES)  # hp3 = eye lens
    factor_usv_per_gy_cm2 = models.FloatField()
    version = models.PositiveIntegerField(default=1)
    citation = models.TextField()
    verification = models.CharField(max_length=4, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "role", "quantity", "version"], name="uniq_scatter_device_version"),
            models.UniqueConstraint(
                fields=["role", "quantity", "version"], condition=models.Q(device__isnull=True), name="uniq_scatter_default_version"
            ),
        ]


# ---------------------------------------------------------------------------
# participation
# ---------------------------------------------------------------------------
class UnmatchedName(models.Model):
    STATUS_OPEN = "open"
    STATUS_RESOLVED = "resolved"
    STATUS_IGNORED = "ignored"
    STATUS_CHOICES = [(s, s) for s in (STATUS_OPEN, STATUS_RESOLVED, STATUS_IGNORED)]

    normalised = models.CharField(max_length=256, unique=True)
    raw_name = models.CharField(max_length=256)  # first spelling seen
    reason = models.CharField(max_length=32, default="no_match")  # no_match | ambiguous
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=STATUS_OPEN, db_index=True)
    occurrences = models.PositiveIntegerField(default=0)
    resolved_staff = models.ForeignKey(StaffMember, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)


class PendingParticipation(models.Model):
    """A participation waiting for its name to be resolved."""

    unmatched = models.ForeignKey(UnmatchedName, on_delete=models.CASCADE, related_name="pending")
    study = models.ForeignKey("registry.Study", on_delete=models.CASCADE, related_name="+")
    raw_name = models.CharField(max_length=256)
    role = models.CharField(max_length=32, choices=STAFF_ROLE_CHOICES, default=ROLE_OTHER)
    source = models.CharField(max_length=32)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["unmatched", "study", "role", "source"], name="uniq_pending_participation")]


class Participation(models.Model):
    """A staff member took part in a study (procedure)."""

    SRC_RDSR = "rdsr"
    SRC_HEADER_PHYSICIAN = "header_performing_physician"
    SRC_HEADER_OPERATOR = "header_operator"
    SRC_EVENT_TEXT = "event_text"
    SRC_STAFFING = "staffing_csv"

    study = models.ForeignKey("registry.Study", on_delete=models.CASCADE, related_name="staff_participations")
    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="participations")
    role = models.CharField(max_length=32, choices=STAFF_ROLE_CHOICES, default=ROLE_OTHER)
    sources = models.JSONField(default=list)  # [{"source", "raw_name", "role"}]
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "staff"], name="uniq_participation")]


class StaffingImport(models.Model):
    sha256 = models.CharField(max_length=64, unique=True)
    filename = models.CharField(max_length=512)
    rows = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict)
    imported_at = models.DateTimeField(auto_now_add=True)


# ---------------------------------------------------------------------------
# dosimetry
# ---------------------------------------------------------------------------
class DosimetryImport(models.Model):
    FORMAT_BADGE = "badge_csv"
    FORMAT_REALTIME = "realtime_csv"
    FORMAT_CHOICES = [(FORMAT_BADGE, FORMAT_BADGE), (FORMAT_REALTIME, FORMAT_REALTIME)]

    sha256 = models.CharField(max_length=64, unique=True)
    filename = models.CharField(max_length=512)
    format = models.CharField(max_length=16, choices=FORMAT_CHOICES)
    rows = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict)
    imported_at = models.DateTimeField(auto_now_add=True)


class DosimeterReading(models.Model):
    """One quantity of one badge for one wear period (dose of record from a dosimetry service)."""

    badge = models.ForeignKey(DosimeterBadge, on_delete=models.PROTECT, related_name="readings")
    staff = models.ForeignKey(StaffMember, on_delete=models.PROTECT, related_name="readings")
    position = models.CharField(max_length=16, choices=POSITION_CHOICES)
    period_start = models.DateField()
    period_end = models.DateField()
    quantity = models.CharField(max_length=8, choices=QUANTITY_CHOICES)
    value_msv = models.FloatField(null=True)  # censored: the reporting threshold, or NULL if unknown; never 0 for "M"
    is_censored = models.BooleanField(default=False)  # "M": below the minimum reportable dose
    unused = models.BooleanField(default=False)  # returned unworn
    source_import = models.ForeignKey(DosimetryImport, on_delete=models.PROTECT, related_name="readings")
    source_line = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["badge", "period_start", "period_end", "quantity"], name="uniq_reading_natural_key"),
            models.CheckConstraint(condition=models.Q(period_end__gte=models.F("period_start")), name="reading_end_after_start"),
        ]
        indexes = [models.Index(fields=["staff", "period_start"])]

    @property
    def dose_of_record_msv(self) -> float:
        """Value added to totals: censored and unused contribute 0 (the dosimetry-service convention)."""
        if self.unused or self.is_censored or self.value_msv is None:
            return 0.0
        return self.value_msv


class RealtimeSample(models.Model):
    """A real-time dosimeter sample: Hp(10) accumulated in the interval ending at ``timestamp``."""

    badge = models.ForeignKey(DosimeterBadge, on_delete=models.PROTECT, related_name="samples")
    staff = models.ForeignKey(StaffMember, on_delete=models.PROTECT, related_name="realtime_samples")
    timestamp = models.DateTimeField()
    increment_usv = models.FloatField()
    cumulative_usv = models.FloatField(null=True)  # as exported, when the export is cumulative
    source_import = models.ForeignKey(DosimetryImport, on_delete=models.PROTECT, related_name="samples")
    source_line = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["badge", "timestamp"], name="uniq_sample_natural_key")]
        indexes = [models.Index(fields=["staff", "timestamp"])]


class ProcedureStaffDose(models.Model):
    """Dose to one staff member in one procedure: real-time measurement or KAP-based estimate."""

    KIND_REALTIME = "realtime"
    KIND_ESTIMATE = "estimate"

    study = models.ForeignKey("registry.Study", on_delete=models.CASCADE, related_name="staff_doses")
    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="procedure_doses")
    kind = models.CharField(max_length=16, choices=[(KIND_REALTIME, KIND_REALTIME), (KIND_ESTIMATE, KIND_ESTIMATE)])
    quantity = models.CharField(max_length=8, choices=QUANTITY_CHOICES)
    dose_usv = models.FloatField()
    sample_count = models.IntegerField(null=True)
    window_start = models.DateTimeField(null=True)
    window_end = models.DateTimeField(null=True)
    method = models.JSONField(default=dict)  # window rule / scatter factor, version and citation
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "staff", "kind", "quantity"], name="uniq_procedure_staff_dose")]


class EffectiveDose(models.Model):
    """Effective dose for one wear period from the configured algorithm, with its raw inputs."""

    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="effective_doses")
    period_start = models.DateField()
    period_end = models.DateField()
    algorithm = models.CharField(max_length=32)
    algorithm_version = models.CharField(max_length=64)
    h_under_msv = models.FloatField(null=True)  # H_U / H_W: under the apron (waist)
    h_over_msv = models.FloatField(null=True)   # H_O / H_N: over the apron (collar)
    inputs_censored = models.BooleanField(default=False)
    effective_msv = models.FloatField()
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["staff", "period_start", "period_end"], name="uniq_effective_dose_period")]


# ---------------------------------------------------------------------------
# alerts
# ---------------------------------------------------------------------------
class StaffAlert(models.Model):
    STATUS_OPEN = "open"
    STATUS_ACKNOWLEDGED = "acknowledged"
    STATUS_FOLLOW_UP = "follow_up"
    STATUS_CLOSED = "closed"
    STATUS_CHOICES = [(s, s) for s in (STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_FOLLOW_UP, STATUS_CLOSED)]
    TRANSITIONS = {
        STATUS_OPEN: {STATUS_ACKNOWLEDGED},
        STATUS_ACKNOWLEDGED: {STATUS_FOLLOW_UP, STATUS_CLOSED},
        STATUS_FOLLOW_UP: {STATUS_CLOSED},
        STATUS_CLOSED: set(),
    }

    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="alerts")
    rule = models.CharField(max_length=64)     # e.g. investigation_level.effective, pregnancy.monthly
    period = models.CharField(max_length=64)   # 2026-Q1, 2026-03, 2026, 5y:2022-2026, study:<uid>
    level = models.CharField(max_length=16)    # I, II, approaching, exceeded, level
    quantity = models.CharField(max_length=16, blank=True, default="")
    value_msv = models.FloatField()
    threshold_msv = models.FloatField()
    setting = models.JSONField(default=dict)   # key, version, citation of the threshold used
    study = models.ForeignKey("registry.Study", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=STATUS_OPEN, db_index=True)
    message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["staff", "rule", "period", "level"], name="uniq_staff_alert")]


class StaffAlertTransition(models.Model):
    alert = models.ForeignKey(StaffAlert, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True, default="")
    at = models.DateTimeField(auto_now_add=True)


class StaffInvestigation(models.Model):
    alert = models.OneToOneField(StaffAlert, on_delete=models.CASCADE, related_name="investigation")
    cause = models.TextField(blank=True, default="")
    corrective_action = models.TextField(blank=True, default="")
    investigator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    notes = models.TextField(blank=True, default="")
    opened_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
