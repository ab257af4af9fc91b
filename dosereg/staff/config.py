"""Versioned, site-editable staff settings (values seeded by migration 0002 with citations).

Resolution order for ``setting(key, regime=..., site=...)``: site + regime, site + any regime,
global + regime, global + any regime; within a scope the highest version wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from .models import REGIME_ICRP, ScatterFactor, Site, StaffSetting


class SettingMissing(LookupError):
    pass


@dataclass(frozen=True)
class SettingValue:
    key: str
    value: Any
    unit: str
    version: int
    regime: str
    site_id: int | None
    citation: str
    verification: str

    def as_dict(self) -> dict:
        return {
            "key": self.key, "value": self.value, "unit": self.unit, "version": self.version,
            "regime": self.regime, "site_id": self.site_id, "citation": self.citation, "verification": self.verification,
        }


def setting(key: str, *, regime: str = "", site: Site | None = None, default: Any = SettingMissing) -> SettingValue | Any:
    rows = list(StaffSetting.objects.filter(key=key, regime__in={regime, ""}).filter(site__isnull=True))
    if site is not None:
        rows += list(StaffSetting.objects.filter(key=key, regime__in={regime, ""}, site=site))

    def rank(row: StaffSetting) -> tuple:
        return (row.site_id is not None, row.regime == regime and regime != "", row.version)

    if not rows:
        if default is SettingMissing:
            raise SettingMissing(f"staff setting {key!r} (regime {regime or '*'}) is not configured")
        return default
    row = max(rows, key=rank)
    return SettingValue(row.key, row.value, row.unit, row.version, row.regime, row.site_id, row.citation, row.verification)


def setting_value(key: str, *, regime: str = "", site: Site | None = None, default: Any = SettingMissing) -> Any:
    found = setting(key, regime=regime, site=site, default=None)
    if found is None:
        if default is SettingMissing:
            raise SettingMissing(f"staff setting {key!r} (regime {regime or '*'}) is not configured")
        return default
    return found.value


def setting_set(
    key: str, value: Any, *, citation: str, regime: str = "", site: Site | None = None, unit: str | None = None,
    verification: str = "", note: str = "", user=None,
) -> StaffSetting:
    """Record a new version of a setting (old versions are kept)."""
    if not citation.strip():
        raise ValueError("a staff setting needs a citation (source or local decision)")
    for _ in range(3):
        try:
            with transaction.atomic():
                scope = StaffSetting.objects.filter(key=key, regime=regime, site=site)
                last = scope.order_by("-version").first()
                return StaffSetting.objects.create(
                    key=key, regime=regime, site=site, value=value,
                    unit=unit if unit is not None else (last.unit if last else ""),
                    version=(last.version + 1) if last else 1, citation=citation, verification=verification,
                    note=note, created_by=user,
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not record a new version of {key}")


def default_site() -> Site:
    site = Site.objects.order_by("pk").filter(name="default").first() or Site.objects.order_by("pk").first()
    if site is None:
        site, _ = Site.objects.get_or_create(name="default", defaults={"limit_regime": REGIME_ICRP})
    return site


def site_for(staff) -> Site:
    return staff.site if staff.site_id else default_site()


def scatter_factor(*, role: str, quantity: str, device_id: int | None) -> ScatterFactor | None:
    """The latest factor for this device and role, else the latest default for the role."""
    if device_id is not None:
        row = ScatterFactor.objects.filter(device_id=device_id, role=role, quantity=quantity).order_by("-version").first()
        if row:
            return row
    return ScatterFactor.objects.filter(device__isnull=True, role=role, quantity=quantity).order_by("-version").first()


def scatter_factor_set(*, role: str, quantity: str, factor: float, citation: str, device=None, verification: str = "") -> ScatterFactor:
    last = ScatterFactor.objects.filter(device=device, role=role, quantity=quantity).aggregate(v=Max("version"))["v"] or 0
    return ScatterFactor.objects.create(
        device=device, role=role, quantity=quantity, factor_usv_per_gy_cm2=factor, version=last + 1,
        citation=citation, verification=verification,
    )
