"""Retention of stored originals: the extracted dose is kept for ever, the DICOM file for RETENTION_ORIGINALS_DAYS.

Only originals of *ingested* objects are deleted (never received or quarantined ones: those
are still needed). The deletion is recorded first (RetainedOriginal row, DoseObject.path
cleared), then the file is removed; a re-run removes files left behind by an interrupted run.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dosereg.registry.models import DoseObject

from .models import RetainedOriginal

log = logging.getLogger(__name__)


def originals_apply_retention(*, days: int | None = None, now: datetime | None = None, dry_run: bool = False,
                              limit: int | None = None) -> dict:
    days = days if days is not None else settings.RETENTION_ORIGINALS_DAYS
    if not days:
        return {"policy_days": None, "eligible": 0, "deleted": 0, "freed_bytes": 0, "note": "keep forever"}
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    eligible = (DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED, received_at__lt=cutoff)
                .exclude(path="").order_by("pk"))
    if limit:
        eligible = eligible[:limit]
    result: dict[str, Any] = {"policy_days": days, "cutoff": cutoff.isoformat(), "eligible": 0, "deleted": 0, "freed_bytes": 0,
              "missing_files": 0}
    for obj in eligible.iterator(chunk_size=500):
        result["eligible"] += 1
        if dry_run:
            continue
        with transaction.atomic():
            # re-check under lock: a reprocess may have set it back to received meanwhile
            locked = DoseObject.objects.select_for_update().filter(pk=obj.pk, status=DoseObject.STATUS_INGESTED) \
                .exclude(path="").first()
            if locked is None:
                continue
            RetainedOriginal.objects.update_or_create(
                dose_object=locked,
                defaults={"path": locked.path, "sha256": locked.sha256, "size_bytes": locked.size_bytes,
                          "policy_days": days},
            )
            DoseObject.objects.filter(pk=locked.pk).update(path="")
        freed = _unlink(locked.path)
        if freed is None:
            result["missing_files"] += 1
        else:
            result["freed_bytes"] += freed
        result["deleted"] += 1
    if not dry_run:
        result["leftovers_removed"] = _remove_leftovers()
    return result


def _unlink(path: str) -> int | None:
    p = Path(path)
    try:
        size = p.stat().st_size
        p.unlink()
        return size
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("retention: could not delete %s: %s (a later run retries)", path, exc)
        return 0


def _remove_leftovers() -> int:
    """Files recorded as deleted that still exist (a run interrupted between commit and unlink)."""
    n = 0
    for path in RetainedOriginal.objects.values_list("path", flat=True).iterator(chunk_size=2000):
        if path and os.path.exists(path) and not DoseObject.objects.filter(path=path).exists():
            if _unlink(path):
                n += 1
    return n
