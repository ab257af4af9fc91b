"""Cumulative patient exposure, versioned alert rules, alerts and their routing.

* StudyExposure: per-study facts derived from events/planes (regions, CT classes,
  Dose Check records, Ka,r per reference point and plane, effective-dose estimate);
  refreshed only for studies whose registry row changed.
* PatientExposureWindow: totals per patient, window length and anchor (every study,
  plus "now"); pages read these rows, never the events.
* RuleSet/Rule: versioned, each rule with its source citation and verification mark.
* Alert: one per (patient, rule key, level, subject) — a DB constraint, so
  re-ingest/recompute never duplicates; withdrawn, never deleted, when totals drop.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from dosereg.registry.models import Device, Patient, Study

from .constants import LEVEL_KIND_CHOICES, QUANTITY_CHOICES, VERIFICATION_CHOICES


class EffectiveDoseFactor(models.Model):
    KIND_CT_DLP = "ct_dlp"            # E = k × DLP, mSv per mGy·cm
    KIND_PROJECTION_KAP = "kap"       # E = c × KAP, mSv per Gy·cm²
    factor_set = models.CharField(max_length=32)   # "ICRP103", "AAPM96", "Vano-ICRP103"
    kind = models.CharField(max_length=16, choices=[(KIND_CT_DLP, KIND_CT_DLP), (KIND_PROJECTION_KAP, KIND_PROJECTION_KAP)])
    region = models.CharField(max_length=32)       # regions.ct_k_region() keys, or "cardiac" for projection
    age_bracket = models.CharField(max_length=8, default="adult")  # adult, 0y, 1y, 5y, 10y
    value = models.FloatField()
    unit = models.CharField(max_length=24)
    source = models.TextField()
    verification = models.CharField(max_length=2, choices=VERIFICATION_CHOICES)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["factor_set", "kind", "region", "age_bracket"], name="uniq_ed_factor")]

    def __str__(self) -> str:
        return f"{self.factor_set} {self.kind} {self.region} {self.age_bracket}: {self.value} {self.unit}"


class StudyExposure(models.Model):
    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="exposure")
    source_updated_at = models.DateTimeField(null=True)  # Study.updated_at this was computed from
    regions = models.JSONField(default=list)             # e.g. ["abdomen", "pelvis"]
    kar = models.JSONField(default=list)                  # [[reference_point, plane, Gy], ...] active objects only
    ct_classes = models.JSONField(default=list)           # [[protocol_class, phantom, max CTDIvol mGy], ...]
    dose_checks = models.JSONField(default=list)          # TID 10015 records of the study's events
    effective_dose_msv = models.FloatField(null=True)
    effective_dose_detail = models.JSONField(default=dict)  # label, factors used (value, unit, source, ✔/◐/⚠)
    computed_at = models.DateTimeField(auto_now=True)


class PatientExposureWindow(models.Model):
    """Totals over [end − window_days, end], closed at both ends (see exposure.windows)."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="exposure_windows",
                                db_index=False)  # uniq_window_anchor leads with the patient
    anchor_study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.CASCADE, related_name="+")  # NULL: "now"
    window_days = models.IntegerField()
    start = models.DateTimeField()
    end = models.DateTimeField()
    procedure_count = models.IntegerField(default=0)
    procedure_count_by_modality = models.JSONField(default=dict)
    kap_gy_cm2 = models.FloatField(null=True)
    fluoro_time_s = models.FloatField(null=True)
    dlp_mgy_cm = models.FloatField(null=True)
    ctdivol_max_mgy = models.FloatField(null=True)
    kar = models.JSONField(default=list)       # [{"reference_point": ..., "plane": ..., "gy": ...}]
    kar_max_gy = models.FloatField(null=True)  # the largest of those (a maximum, never a sum across keys)
    effective_dose_msv = models.FloatField(null=True)  # population-average estimate
    effective_dose_studies = models.IntegerField(default=0)
    digest = models.CharField(max_length=32, blank=True, default="")  # hash of the values: unchanged rows are not rewritten
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "anchor_study", "window_days"], name="uniq_window_anchor"),
            models.UniqueConstraint(fields=["patient", "window_days"], condition=Q(anchor_study__isnull=True), name="uniq_window_now"),
        ]
        indexes = [
            models.Index(fields=["patient", "window_days", "end"]),
            # + on PostgreSQL, window_now_top_kap (window_days, kap DESC NULLS LAST, dlp DESC NULLS LAST) of the
            # windows ending now, for the dashboard's top list: created by migration 0004 outside the model state
        ]


class PatientExposureState(models.Model):
    """What a patient's last recompute saw: a digest of its inputs (the merge group's study rows, the active
    rules, the window lengths) and until when its windows "ending now" stay valid. A recompute whose inputs
    have this digest, before valid_until, has nothing to do (re-sent objects, duplicate tasks)."""

    patient = models.OneToOneField(Patient, on_delete=models.CASCADE, primary_key=True, related_name="exposure_state")
    inputs_digest = models.CharField(max_length=32)
    computed_now = models.DateTimeField()             # the "now" the windows ending now were computed for
    valid_until = models.DateTimeField(null=True)     # a study leaves/enters a window ending now; NULL: never
    computed_at = models.DateTimeField(auto_now=True)
    # the merge group's studies as that recompute read them (every site): how many and the latest date, for the
    # patients list's default sort and its exams column (issue 17) without an aggregate over every study
    study_count = models.IntegerField(default=0)
    last_study_at = models.DateTimeField(null=True)


class RuleSet(models.Model):
    name = models.CharField(max_length=64, default="default")
    version = models.IntegerField()
    active = models.BooleanField(default=False)
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="uniq_ruleset_version"),
            models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_ruleset"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}" + (" (active)" if self.active else "")


class Rule(models.Model):
    ruleset = models.ForeignKey(RuleSet, on_delete=models.CASCADE, related_name="rules")
    key = models.SlugField(max_length=64)  # stable across versions: alerts are unique per key, not per version
    title = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    # scope (blank/NULL = all)
    scope_site = models.CharField(max_length=256, blank=True, default="")  # Device.institution
    scope_device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    scope_modalities = models.CharField(max_length=64, blank=True, default="")  # "RF,XA"
    # what and how much
    quantity = models.CharField(max_length=24, choices=QUANTITY_CHOICES)
    level_kind = models.CharField(max_length=16, choices=LEVEL_KIND_CHOICES)
    threshold_value = models.FloatField(null=True, blank=True)
    threshold_unit = models.CharField(max_length=16, blank=True, default="")
    step_value = models.FloatField(null=True, blank=True)  # subsequent levels: every step above threshold_value
    window_days = models.IntegerField(null=True, blank=True)  # NULL: per study; else cumulative rolling window
    min_procedures = models.IntegerField(default=2)  # cumulative rules: windows with fewer are left to per-study rules
    protocol_class = models.CharField(max_length=32, blank=True, default="")  # CT: head, torso, cardiac, brain_perfusion
    phantom = models.CharField(max_length=16, blank=True, default="")  # CT: head_16cm, body_32cm
    min_age_years = models.FloatField(null=True, blank=True)
    max_age_years = models.FloatField(null=True, blank=True)  # exclusive
    severity = models.CharField(max_length=8, default="normal")  # low / normal / high
    digest = models.BooleanField(default=False)  # low severity: daily digest instead of immediate e-mail
    follow_up_days = models.IntegerField(null=True, blank=True)  # suggested follow-up due date after raising
    params = models.JSONField(default=dict, blank=True)
    source = models.TextField()
    verification = models.CharField(max_length=2, choices=VERIFICATION_CHOICES)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["ruleset", "key"], name="uniq_rule_key_per_set")]
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} ({self.verification})"


class Alert(models.Model):
    STATUS_OPEN = "open"
    STATUS_ACKNOWLEDGED = "acknowledged"
    STATUS_FOLLOW_UP = "follow_up"
    STATUS_CLOSED = "closed"
    STATUS_WITHDRAWN = "withdrawn"  # the condition no longer holds (study replaced/deleted, unmerge); kept as history
    STATUS_CHOICES = [(s, s) for s in (STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_FOLLOW_UP, STATUS_CLOSED, STATUS_WITHDRAWN)]

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="exposure_alerts")
    rule = models.ForeignKey(Rule, on_delete=models.PROTECT, related_name="alerts")  # the version that raised it
    rule_key = models.SlugField(max_length=64)
    level = models.CharField(max_length=32)     # "first", "srdl", "subsequent+2", "pregnancy", ...
    subject = models.CharField(max_length=160)  # study UID (per study) or "episode:<first anchor study UID>"
    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="exposure_alerts")
    study_uid = models.CharField(max_length=128, blank=True, default="")
    quantity = models.CharField(max_length=24)
    value = models.FloatField(null=True)
    unit = models.CharField(max_length=16, blank=True, default="")
    threshold = models.FloatField(null=True)
    window_days = models.IntegerField(null=True)
    window_start = models.DateTimeField(null=True)
    window_end = models.DateTimeField(null=True)
    severity = models.CharField(max_length=8, default="normal")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=STATUS_OPEN, db_index=True)
    title = models.CharField(max_length=255)
    message = models.TextField()
    detail = models.JSONField(default=dict)  # source, verification, reason for proceeding, conceptus band, ...
    notified = models.CharField(max_length=16, blank=True, default="")  # queued / collapsed / no_recipients / historical
    raised_at = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_note = models.TextField(blank=True, default="")
    follow_up_due = models.DateField(null=True, blank=True)
    follow_up_note = models.TextField(blank=True, default="")
    follow_up_reminded_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)
    close_note = models.TextField(blank=True, default="")
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_note = models.TextField(blank=True, default="")
    conceptus_dose_estimate_mgy = models.FloatField(null=True, blank=True)  # physicist's estimate (pregnancy)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "rule_key", "level", "subject"], name="uniq_alert_patient_rule_level"),
        ]
        indexes = [
            models.Index(fields=["patient", "status"]), models.Index(fields=["status", "follow_up_due"]),
            models.Index(fields=["study_uid"], name="alert_study_uid"),  # a study's alerts, also after it was replaced
            # the dashboard inbox: newest open / acknowledged alerts
            models.Index(F("raised_at").desc(), F("id").desc(), condition=Q(status__in=["open", "acknowledged"]),
                         name="alert_inbox_recent"),
            # the alerts API: a page of one status, newest first, continued by id (keyset)
            models.Index("status", F("id").desc(), name="alert_status_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.title} [{self.status}]"


class AlertEvent(models.Model):
    """Audit trail of an alert: raised, acknowledged, follow-up, closed, withdrawn, re-raised, notified."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=32)
    note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["at", "id"]


class AlertRoute(models.Model):
    """Who is told. Matching routes are combined; with none matching, the "rso" group is told."""

    name = models.CharField(max_length=128)
    active = models.BooleanField(default=True)
    device = models.ForeignKey(Device, null=True, blank=True, on_delete=models.CASCADE, related_name="+")  # room/unit
    site = models.CharField(max_length=256, blank=True, default="")  # Device.institution
    rule_key = models.CharField(max_length=64, blank=True, default="")
    min_severity = models.CharField(max_length=8, default="low")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="+")
    emails = models.TextField(blank=True, default="")  # comma/line separated addresses

    def __str__(self) -> str:
        return self.name


class PatientMerge(models.Model):
    """A RIS merge: source's studies count for target until unmerged."""

    source = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")
    merged_at = models.DateTimeField(auto_now_add=True)
    merged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.TextField(blank=True, default="")
    unmerged_at = models.DateTimeField(null=True, blank=True)
    unmerged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
