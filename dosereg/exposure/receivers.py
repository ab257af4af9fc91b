"""Receivers of Django's own events: a deleted study recomputes its patient.

Every other change of a patient's studies is followed up by ``dosereg.pipeline.flow.follow_up``."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def on_study_deleted(sender, instance, **kwargs) -> None:
    from .recompute import enqueue_recompute

    if instance.patient_id:
        pid = instance.patient_id
        transaction.on_commit(lambda: enqueue_recompute(pid))
