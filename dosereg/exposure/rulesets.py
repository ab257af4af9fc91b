"""Rule set versions: copy a rule set into a new inactive version to edit, and activate one version."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from .models import Rule

if TYPE_CHECKING:
    from .models import RuleSet

log = logging.getLogger(__name__)


def ruleset_new_version(*, from_ruleset_id: int | None = None, user=None, note: str = "") -> "RuleSet":
    """Copy a rule set (default: the active one) into a new, inactive version to edit."""
    from .models import RuleSet

    with transaction.atomic():
        src = RuleSet.objects.get(pk=from_ruleset_id) if from_ruleset_id else RuleSet.objects.get(active=True)
        version = (RuleSet.objects.filter(name=src.name).order_by("-version").values_list("version", flat=True).first() or 0) + 1
        new = RuleSet.objects.create(name=src.name, version=version, active=False, created_by=user, note=note)
        rules = list(src.rules.all())
        for r in rules:
            r.pk = None
            r.ruleset = new
        Rule.objects.bulk_create(rules)
    return new


def ruleset_activate(*, ruleset_id: int, user=None) -> "RuleSet":
    """Make one version active. Existing alerts keep the version that raised them; new evaluations use this one."""
    from .models import RuleSet

    with transaction.atomic():
        RuleSet.objects.filter(active=True).exclude(pk=ruleset_id).update(active=False)
        rs = RuleSet.objects.select_for_update().get(pk=ruleset_id)
        rs.active, rs.activated_at = True, timezone.now()
        rs.save(update_fields=["active", "activated_at"])
        log.info("rule set %s activated by %s", rs, user)
    return rs
