"""Signal receivers: every change of a patient's studies recomputes that patient."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def on_studies_changed(sender, study_ids=(), patient_ids=(), **kwargs) -> None:
    from .models import Alert, PatientExposureWindow
    from .services import enqueue_recompute

    targets = set(p for p in patient_ids if p)
    if study_ids:
        # a study that moved to another patient (replacement RDSR with a corrected ID): the former owner too
        targets |= set(PatientExposureWindow.objects.filter(anchor_study_id__in=study_ids).values_list("patient_id", flat=True).distinct())
        targets |= set(Alert.objects.filter(study_id__in=study_ids).values_list("patient_id", flat=True).distinct())
    for pk in sorted(targets):
        enqueue_recompute(pk)


def on_study_deleted(sender, instance, **kwargs) -> None:
    from .services import enqueue_recompute

    if instance.patient_id:
        pid = instance.patient_id
        transaction.on_commit(lambda: enqueue_recompute(pid))
