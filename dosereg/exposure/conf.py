"""Exposure settings: read from django.conf.settings when present, documented defaults otherwise."""
from __future__ import annotations

from django.conf import settings

# Rolling windows computed for every patient (days). Rule windows are added automatically.
#  84 d (12 weeks): OpenREM default for cumulative fluoroscopy DAP and Ka,r (✔ OpenREM docs), dose-standards §4.1.
#  60 d: repeat procedures on the same skin area, "about 60 days is commonly used" (◐ NCRP 168/SIR), §4.1.
# 365 d: 6–12 month review window of the former TJC sentinel-event definition (◐), §4.1.
DEFAULT_WINDOWS_DAYS = (84, 60, 365)


def windows_days() -> tuple[int, ...]:
    return tuple(sorted(set(getattr(settings, "EXPOSURE_WINDOWS_DAYS", DEFAULT_WINDOWS_DAYS))))


def ct_factor_set() -> str:
    """Adult CT k-factor set: "ICRP103" (Deak et al. 2010) or "AAPM96" (ICRP 60 era)."""
    return getattr(settings, "EXPOSURE_CT_FACTOR_SET", "ICRP103")
