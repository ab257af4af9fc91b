"""Web-side models: patient portal accounts.

Protocol names, mappings and DRLs live in ``dosereg.protocols.models``; site assignments in
``dosereg.access.models``. Their names are re-exported below only so that code written before the move
keeps importing; new code imports them from their own app.
"""
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


# moved models, re-exported for code written before the move (import them from their own app)
from dosereg.access.models import AssignedSite, SiteAssignment  # noqa: E402,F401
from dosereg.protocols.models import DRLSet, DRLValue, ProtocolMapping, StandardName  # noqa: E402,F401
