"""Alert routing: who is e-mailed about an alert (``AlertRoute`` rows, else the RSOs whose site scope covers it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model

from dosereg.access.scope import SiteScope, normalise, scope_for
from dosereg.notifications.models import SEVERITY_RANK

from .constants import RSO_GROUP
from .models import Alert, AlertRoute

if TYPE_CHECKING:
    from .evaluation import Expected


class Router:
    """Resolves recipients from AlertRoute rows (loaded once per evaluation)."""

    def __init__(self) -> None:
        self._routes = None
        self._rso: list[tuple[str, SiteScope]] | None = None

    def _load(self):
        if self._routes is None:
            self._routes = list(AlertRoute.objects.filter(active=True).select_related("device").prefetch_related("users", "groups__user_set"))
        return self._routes

    def recipients(self, alert: Alert, e: Expected | None) -> list[str]:
        row = e.study.row if e and e.study else {}
        out: list[str] = []
        matched = False
        for route in self._load():
            if route.device_id and route.device_id != row.get("device_id"):
                continue
            if route.site and route.site.strip().lower() != (row.get("device__institution") or "").strip().lower():
                continue
            if route.rule_key and route.rule_key != alert.rule_key:
                continue
            if SEVERITY_RANK.get(alert.severity, 1) < SEVERITY_RANK.get(route.min_severity, 0):
                continue
            matched = True
            out += [u.email for u in route.users.all() if u.is_active and u.email]
            out += [u.email for g in route.groups.all() for u in g.user_set.all() if u.is_active and u.email]
            out += [x.strip() for x in route.emails.replace("\n", ",").replace(";", ",").split(",") if x.strip()]
        if not matched:
            out = self.default_recipients(row.get("device__institution"))
        return sorted(set(out))

    def default_recipients(self, site: str | None = None) -> list[str]:
        """Without a matching route: the active RSOs whose site scope (``dosereg.access.scope``, the sites
        their dashboard shows) covers the site of the study that raised the alert."""
        if self._rso is None:
            User = get_user_model()
            users = User.objects.filter(groups__name=RSO_GROUP, is_active=True).exclude(email="").distinct()
            self._rso = [(u.email, scope_for(u)) for u in users]
        key = normalise(site)
        return sorted({email for email, scope in self._rso if scope.sites is None or key in scope.sites})
