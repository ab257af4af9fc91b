"""Moved to ``dosereg.access.scope``; this re-export keeps code written before the move importing.

New code imports ``dosereg.access.scope``.
"""
from dosereg.access.scope import EVERY_SITE, NO_SITE, SiteScope, normalise, scope_for  # noqa: F401

__all__ = ["SiteScope", "EVERY_SITE", "NO_SITE", "scope_for", "normalise"]
