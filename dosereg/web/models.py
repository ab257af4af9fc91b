"""Web-side models: patient portal accounts, protocol name mapping, DRL sets."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class PatientAccount(models.Model):
    """Links one portal user to exactly one registry Patient.

    Staff issue an invitation (a one-time token; only its SHA-256 is stored).
    The patient opens the link, proves the birth date on the record, and chooses
    a username and password; then ``user`` is set and ``verified_at`` stamped.
    """

    patient = models.ForeignKey("registry.Patient", on_delete=models.CASCADE, related_name="portal_accounts")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="patient_account")
    token_sha256 = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    invited_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    failed_attempts = models.IntegerField(default=0)
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"portal account for patient {self.patient_id}"


class StandardName(models.Model):
    """A standard examination name that vendor study/protocol names map to (many-to-one)."""

    name = models.CharField(max_length=128)
    modality = models.CharField(max_length=8)  # CT, RF, XA, DX, MG
    notes = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        ordering = ["modality", "name"]
        constraints = [models.UniqueConstraint(fields=["modality", "name"], name="uniq_standard_name")]

    def __str__(self) -> str:
        return f"{self.modality} {self.name}"


class ProtocolMapping(models.Model):
    """Vendor study description (as sent, exact) -> standard name."""

    modality = models.CharField(max_length=8)
    source_name = models.CharField(max_length=256)
    standard_name = models.ForeignKey(StandardName, on_delete=models.CASCADE, related_name="mappings")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["modality", "source_name"], name="uniq_protocol_mapping")]
        indexes = [models.Index(fields=["source_name"])]


class DRLSet(models.Model):
    """A published set of diagnostic reference levels, with its citation."""

    name = models.CharField(max_length=128, unique=True)
    country = models.CharField(max_length=32, blank=True, default="")
    year = models.IntegerField(null=True, blank=True)
    citation = models.TextField()
    url = models.URLField(max_length=512, blank=True, default="")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DRLValue(models.Model):
    QUANTITIES = [
        ("dap_total_gy_cm2", "KAP (Gy·cm²)"),
        ("dose_rp_max_plane_gy", "Ka,r (Gy)"),
        ("fluoro_time_total_s", "Fluoroscopy time (s)"),
        ("ctdivol_max_mgy", "CTDIvol (mGy)"),
        ("dlp_total_mgy_cm", "DLP (mGy·cm)"),
    ]
    drl_set = models.ForeignKey(DRLSet, on_delete=models.CASCADE, related_name="values")
    standard_name = models.ForeignKey(StandardName, on_delete=models.CASCADE, related_name="drl_values")
    quantity = models.CharField(max_length=32, choices=QUANTITIES)
    value = models.FloatField()
    exam_label = models.CharField(max_length=128, blank=True, default="")  # the exam as the source names it
    notes = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["drl_set", "standard_name", "quantity"], name="uniq_drl_value")]


class SiteAssignment(models.Model):
    """The sites (``Device.institution`` names) whose clinical data a radiation safety officer reads.

    Applies to RSOs only: physicists and admins always see every site (see ``dosereg.web.scope``).
    ``all_sites`` grants every site explicitly; otherwise the user sees the listed sites and nothing
    else (an assignment with no site listed and ``all_sites`` off shows nothing). An RSO with no
    assignment at all sees every site while the setting ``RSO_UNSCOPED_SEES_ALL`` is true (the default,
    for existing installations and the demo), and nothing when it is false.
    Names are compared like the exposure rules' ``scope_site``: trimmed, case-insensitive.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="site_assignment")
    all_sites = models.BooleanField(default=False, help_text="Every site, present and future (the listed sites are then ignored).")
    note = models.CharField(max_length=256, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "site assignment"

    def __str__(self) -> str:
        return f"sites of {self.user}"


class AssignedSite(models.Model):
    """One site of a ``SiteAssignment``: an institution name as the devices send it (``Device.institution``)."""

    assignment = models.ForeignKey(SiteAssignment, on_delete=models.CASCADE, related_name="sites")
    institution = models.CharField(max_length=256)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["assignment", "institution"], name="uniq_assigned_site")]

    def __str__(self) -> str:
        return self.institution
