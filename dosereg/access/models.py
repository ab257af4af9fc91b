"""Site assignments of radiation safety officers (read by ``dosereg.access.scope``).

The tables were created by the web app and keep their names (``web_*``); only the models moved.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class SiteAssignment(models.Model):
    """The sites (``Device.institution`` names) whose clinical data a radiation safety officer reads.

    Applies to RSOs only: physicists and admins always see every site (see ``dosereg.access.scope``).
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
        db_table = "web_siteassignment"  # created by the web app; the table kept its name
        verbose_name = "site assignment"

    def __str__(self) -> str:
        return f"sites of {self.user}"


class AssignedSite(models.Model):
    """One site of a ``SiteAssignment``: an institution name as the devices send it (``Device.institution``)."""

    assignment = models.ForeignKey(SiteAssignment, on_delete=models.CASCADE, related_name="sites")
    institution = models.CharField(max_length=256)

    class Meta:
        db_table = "web_assignedsite"  # created by the web app; the table kept its name
        constraints = [models.UniqueConstraint(fields=["assignment", "institution"], name="uniq_assigned_site")]

    def __str__(self) -> str:
        return self.institution
