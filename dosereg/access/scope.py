"""Site scoping: the sites whose clinical data a user reads.

A *site* is an institution name as the devices send it (``Device.institution``), compared trimmed and
case-insensitively, exactly like the exposure rules' ``scope_site`` and ``AlertRoute.site``.

Who sees which sites (``scope_for``):

| user                                   | sites                                                          |
|----------------------------------------|----------------------------------------------------------------|
| physicist, admin (also with rso)       | every site                                                     |
| rso with a ``SiteAssignment``          | ``all_sites``: every site; otherwise the listed sites only      |
|                                        | (none listed: nothing)                                         |
| rso without an assignment              | every site if ``RSO_UNSCOPED_SEES_ALL`` (default true), else nothing |
| anyone else                            | nothing (patients and staff are scoped to their own records elsewhere) |

What is "at a site" (the ``*_q`` methods build the filters; none runs a query of its own, the device
list is a subquery, so a scoped page runs as many queries as an unscoped one):

* a study: its device's institution is one of the sites (a study without a device is at no site);
* an irradiation event, plane total or dose object: its study's or its own device;
* a patient: at least one study at the sites, their own or one of a record merged into them;
* an alert: the study that raised it (the one ``AlertRoute.site`` routes the e-mail by) is at the sites;
  an alert whose study row is gone counts where its patient does;
* a device: its institution.

Inside an in-scope patient's history a scoped RSO sees the exams, chart, alerts and CSV rows of their
sites only; the cumulative totals stay the patient's totals over every site (what the alert levels are
measured against), with the number of exams elsewhere stated but not listed.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Lower, Trim

from dosereg.registry.models import Device, Study

from . import roles
from .models import SiteAssignment


def normalise(name: str | None) -> str:
    return (name or "").strip().lower()


@dataclass(frozen=True)
class SiteScope:
    sites: frozenset[str] | None = None   # normalised names; None: every site
    names: tuple[str, ...] = ()           # as assigned, for display

    @property
    def unrestricted(self) -> bool:
        return self.sites is None

    @property
    def label(self) -> str:
        if self.unrestricted:
            return "all sites"
        return ", ".join(self.names) if self.names else "no site"

    # -- building blocks (lazy querysets / Q objects: no query until the caller's query runs) --
    def devices(self):
        """The pks of the devices at the sites, as a subquery."""
        if self.unrestricted:
            return Device.objects.values("pk")
        return Device.objects.alias(_site=Lower(Trim("institution"))).filter(_site__in=sorted(self.sites)).values("pk")

    def device_q(self, field: str = "device_id") -> Q:
        """Rows whose ``field`` (a Device FK or pk) is a device at the sites."""
        if self.unrestricted:
            return Q()
        if not self.sites:
            return Q(pk__in=[])
        return Q(**{f"{field}__in": self.devices()})

    def study_q(self, prefix: str = "") -> Q:
        """Studies (``prefix=""``) or rows of a study (``prefix="study__"``) at the sites."""
        return self.device_q(f"{prefix}device_id")

    def patient_q(self, field: str = "pk") -> Q:
        """Patients (``field`` holds a Patient pk) with a study at the sites, theirs or a merged record's."""
        if self.unrestricted:
            return Q()
        if not self.sites:
            return Q(pk__in=[])
        at = Study.objects.filter(device_id__in=self.devices())
        return (Q(**{f"{field}__in": at.filter(patient__isnull=False).values("patient_id")})
                | Q(**{f"{field}__in": at.filter(patient__merged_into__isnull=False).values("patient__merged_into_id")}))

    def alert_q(self) -> Q:
        """Exposure alerts raised by a study at the sites (or, study gone, of a patient at the sites)."""
        if self.unrestricted:
            return Q()
        if not self.sites:
            return Q(pk__in=[])
        return Q(study__device_id__in=self.devices()) | (Q(study__isnull=True) & self.patient_q("patient_id"))

    def device_ids(self) -> set[int] | None:
        """The devices at the sites, evaluated (one query); None when unrestricted. For filtering rows in Python."""
        if self.unrestricted:
            return None
        if not self.sites:
            return set()
        return set(self.devices().values_list("pk", flat=True))


EVERY_SITE = SiteScope()
NO_SITE = SiteScope(frozenset())


def scope_for(user) -> SiteScope:
    """The user's scope (cached on the user object for the request; one query for an RSO, none otherwise)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return NO_SITE
    cached = getattr(user, "_dosereg_site_scope", None)
    if cached is not None:
        return cached
    rs = roles.user_roles(user)
    if rs & {roles.PHYSICIST, roles.ADMIN}:
        scope = EVERY_SITE
    elif roles.RSO in rs:
        scope = _assigned(user)
    else:
        scope = NO_SITE
    user._dosereg_site_scope = scope
    return scope


def _assigned(user) -> SiteScope:
    rows = list(SiteAssignment.objects.filter(user_id=user.pk).values_list("all_sites", "sites__institution"))
    if not rows:
        return EVERY_SITE if settings.DOSEREG_RSO_UNSCOPED_SEES_ALL else NO_SITE
    if rows[0][0]:
        return EVERY_SITE
    names = sorted({name.strip() for _, name in rows if name and name.strip()}, key=str.lower)
    return SiteScope(frozenset(normalise(n) for n in names), tuple(names))


__all__ = ["SiteScope", "EVERY_SITE", "NO_SITE", "scope_for", "normalise"]
