"""Moved to ``dosereg.access.roles``; this re-export keeps code written before the move importing.

New code imports ``dosereg.access.roles``.
"""
from dosereg.access.roles import *  # noqa: F401,F403
from dosereg.access.roles import ALL_ROLES, has_role, home_url_name, user_roles  # noqa: F401
