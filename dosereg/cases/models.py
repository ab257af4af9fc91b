"""RSO cases: the unit of work of the radiation safety officer's worklist.

A case groups the alerts of one procedure (study), of one patient's cumulative window, of one pregnancy or
Dose Check event, or of one staff member's occupational rule and period. Every level crossed stays a member
(``CaseAlert``); the case carries the highest, its status, the RSO's actions and a timeline (``CaseEvent``).

Keys (``Case.key``, unique, so a re-evaluation never opens a second case):

* ``procedure:<study UID>``    NCRP 168 / Ka,r / KAP / fluoroscopy-time / CT levels of one procedure
* ``pregnancy:<study UID>``    a (possibly) pregnant patient's ionising exam
* ``dose_check:<study UID>``   a modality's CT Dose Check notification / alert (NEMA XR 25)
* ``cumulative:<patient>:<window days>:<episode>``   a patient's cumulative rolling window
* ``staff:<staff member>:<rule>:<period>``           an occupational investigation level or limit
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

KIND_PROCEDURE = "procedure"
KIND_CUMULATIVE = "cumulative"
KIND_PREGNANCY = "pregnancy"
KIND_DOSE_CHECK = "dose_check"
KIND_STAFF = "staff"
KIND_CHOICES = [(KIND_PROCEDURE, "Procedure"), (KIND_CUMULATIVE, "Patient cumulative"), (KIND_PREGNANCY, "Pregnancy"),
                (KIND_DOSE_CHECK, "CT Dose Check"), (KIND_STAFF, "Staff (occupational)")]

STATUS_OPEN = "open"
STATUS_ACKNOWLEDGED = "acknowledged"
STATUS_FOLLOW_UP = "follow_up"
STATUS_CLOSED = "closed"
STATUS_WITHDRAWN = "withdrawn"
STATUS_CHOICES = [(STATUS_OPEN, "Open"), (STATUS_ACKNOWLEDGED, "Acknowledged"), (STATUS_FOLLOW_UP, "Follow-up"),
                  (STATUS_CLOSED, "Closed"), (STATUS_WITHDRAWN, "Withdrawn")]
ACTIVE_STATUSES = (STATUS_OPEN, STATUS_ACKNOWLEDGED, STATUS_FOLLOW_UP)  # "open cases" in the worklist

SEVERITY_CHOICES = [("high", "High"), ("normal", "Normal"), ("low", "Low")]


class Case(models.Model):
    key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=STATUS_OPEN)
    severity = models.CharField(max_length=8, choices=SEVERITY_CHOICES, default="normal")
    # worklist order: severity first (high 20, normal 10, low 0), pregnancy +5 (on top of its severity), then exam date
    sort_rank = models.IntegerField(default=10)
    # what it is about
    patient = models.ForeignKey("registry.Patient", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    study = models.ForeignKey("registry.Study", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    study_uid = models.CharField(max_length=128, blank=True, default="")
    device = models.ForeignKey("registry.Device", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    site = models.CharField(max_length=256, blank=True, default="")  # normalised institution (dosereg.web.scope)
    modality = models.CharField(max_length=8, blank=True, default="")
    staff = models.ForeignKey("staff.StaffMember", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    exam_date = models.DateTimeField(null=True, blank=True)  # the procedure's date (staff: the period's end)
    window_days = models.IntegerField(null=True, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    # its highest level
    title = models.CharField(max_length=255)
    top_rule_key = models.CharField(max_length=64, blank=True, default="")
    top_level = models.CharField(max_length=32, blank=True, default="")
    top_class = models.IntegerField(default=0)     # escalation class of the highest level (see services.level_class)
    rule_keys = models.CharField(max_length=1024, blank=True, default=",")  # ",key1,key2," for the rule filter
    level_count = models.IntegerField(default=0)
    # e-mail
    notify_state = models.CharField(max_length=16, blank=True, default="")  # queued / historical / suppressed / no_recipients
    notify_note = models.CharField(max_length=255, blank=True, default="")
    notify_count = models.IntegerField(default=0)
    # life cycle
    opened_at = models.DateTimeField()
    escalated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_note = models.TextField(blank=True, default="")
    follow_up_suggested = models.DateField(null=True, blank=True)
    follow_up_due = models.DateField(null=True, blank=True)
    follow_up_note = models.TextField(blank=True, default="")
    follow_up_reminded_for = models.DateField(null=True, blank=True)  # the due date a reminder was sent for
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    closed_at = models.DateTimeField(null=True, blank=True)
    close_note = models.TextField(blank=True, default="")
    outcome = models.JSONField(default=dict, blank=True)  # skin reaction + grade / conceptus estimate + method / ...

    class Meta:
        # the worklist's ordered partial indexes (case_worklist, case_worklist_kind, case_worklist_site: active cases
        # by severity, then exam date newest first, NULLS LAST) are PostgreSQL's: created by migrations 0001/0005
        indexes = [
            models.Index(fields=["status", "follow_up_due", "id"], name="case_due"),
            # the worklist's counts: an index-only scan of the active cases
            models.Index(fields=["severity", "kind", "status", "notify_state", "follow_up_due"],
                         condition=Q(status__in=list(ACTIVE_STATUSES)), name="case_active_counts"),
            models.Index(fields=["patient", "status"], name="case_patient"),
            models.Index(fields=["site", "status"], name="case_site"),
            models.Index(fields=["study_uid"], name="case_study_uid"),
        ]

    def __str__(self) -> str:
        return f"case {self.pk}: {self.title} [{self.status}]"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class CaseCount(models.Model):
    """The active-case counts as deltas (PostgreSQL): a trigger on ``cases_case`` adds +1 for a case's new
    (site, kind, severity, status, notify_state, device, modality) and -1 for its old one on every insert, change
    and delete; every minute ``case_counts.compact`` folds the rows into one per key. Writers only ever INSERT here (no row is locked
    or updated by two transactions), and the worklist's counts sum a few hundred rows whatever the number of cases
    (``selectors.counts``). SQLite (no trigger) counts the cases themselves."""

    site = models.CharField(max_length=256, blank=True, default="")
    kind = models.CharField(max_length=16)
    severity = models.CharField(max_length=8)
    status = models.CharField(max_length=16)
    notify_state = models.CharField(max_length=16, blank=True, default="")
    # the worklist's device and modality filters (migration 0009); no constraint or index: written by the trigger only
    device = models.ForeignKey("registry.Device", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
                               db_index=False, related_name="+")
    modality = models.CharField(max_length=8, blank=True, default="")
    n = models.IntegerField()


class CaseRuleCount(models.Model):
    """The cases per rule as deltas (PostgreSQL), kept like ``CaseCount`` by the same trigger: +1 / -1 for each rule
    of a case's ``rule_keys`` with its (site, kind, severity, status), compacted with it. The worklist's rule filter
    reads its total here (``selectors.kept_total``) instead of reading every active case's rules."""

    site = models.CharField(max_length=256, blank=True, default="")
    kind = models.CharField(max_length=16)
    severity = models.CharField(max_length=8)
    status = models.CharField(max_length=16)
    rule_key = models.CharField(max_length=1024)
    n = models.IntegerField()


class CaseAlert(models.Model):
    """A level crossed: one exposure alert or one staff alert, member of exactly one case."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="members")
    alert = models.OneToOneField("exposure.Alert", null=True, blank=True, on_delete=models.CASCADE, related_name="case_link")
    staff_alert = models.OneToOneField("staff.StaffAlert", null=True, blank=True, on_delete=models.CASCADE, related_name="case_link")
    added_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(alert__isnull=False) | Q(staff_alert__isnull=False), name="case_member_has_alert")]


class CaseEvent(models.Model):
    """The case's timeline: raised, escalated, notified, acknowledged, follow_up, closed, reopened, withdrawn, ..."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=32)
    note = models.TextField(blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["case", "at"], name="case_event_at")]


# ---------------------------------------------------------------------------
# incident register
# ---------------------------------------------------------------------------
INCIDENT_CATEGORIES = [
    ("tissue_reaction", "Tissue reaction / high skin dose"), ("unintended", "Unintended or accidental exposure"),
    ("repeat", "Repeat exposure"), ("wrong_patient_or_region", "Wrong patient or body region"),
    ("pregnancy", "Unintended exposure of the embryo / fetus"), ("equipment", "Equipment fault"),
    ("protocol_range", "Protocol's expected dose range exceeded"),
]
INCIDENT_STATUSES = [("declared", "Declared"), ("signed_off", "Signed off by physicist"), ("reported", "Reported to regulator"),
                     ("closed", "Closed")]


class ReportableRule(models.Model):
    """A reportable-event (or internal investigation) rule: versioned, with jurisdiction and cited source. A numeric
    rule (``threshold``) is checked against a case's peak skin dose where one is recorded, its Ka,r otherwise."""

    key = models.SlugField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    active = models.BooleanField(default=True)
    title = models.CharField(max_length=200)
    jurisdiction = models.CharField(max_length=128)
    category = models.CharField(max_length=32, choices=INCIDENT_CATEGORIES)
    quantity = models.CharField(max_length=16, blank=True, default="")  # "skin_gy" (PSD, else Ka,r) or "" (declared by judgement)
    threshold = models.FloatField(null=True, blank=True)
    unit = models.CharField(max_length=16, blank=True, default="")
    window_days = models.IntegerField(null=True, blank=True)
    source = models.TextField()
    verification = models.CharField(max_length=2, blank=True, default="")
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "version"], name="uniq_reportable_rule_version"),
                       models.UniqueConstraint(fields=["key"], condition=Q(active=True), name="one_active_reportable_rule")]
        ordering = ["key", "-version"]

    def __str__(self) -> str:
        return f"{self.key} v{self.version}"


class Incident(models.Model):
    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="incident")
    number = models.CharField(max_length=16, unique=True)  # "2026-0003"
    year = models.IntegerField(db_index=True)
    rule = models.ForeignKey(ReportableRule, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    rule_snapshot = models.JSONField(default=dict, blank=True)  # key, version, title, jurisdiction, threshold, source
    category = models.CharField(max_length=32, choices=INCIDENT_CATEGORIES)
    summary = models.TextField()
    dose_basis = models.CharField(max_length=8, blank=True, default="")  # psd / kar / ""
    dose_gy = models.FloatField(null=True, blank=True)
    dose_note = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=INCIDENT_STATUSES, default="declared")
    declared_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    declared_at = models.DateTimeField()
    investigation_notes = models.TextField(blank=True, default="")
    signed_off_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    signed_off_at = models.DateTimeField(null=True, blank=True)
    sign_off_note = models.TextField(blank=True, default="")
    regulator_reference = models.CharField(max_length=128, blank=True, default="")
    reported_at = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["-declared_at", "-id"]
