"""Signal receivers: every change of a patient's studies recomputes that patient."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def on_studies_changed(sender, study_ids=(), patient_ids=(), new_study_ids=(), **kwargs) -> None:
    from .models import Alert, PatientExposureWindow
    from .services import enqueue_recompute

    targets = set(p for p in patient_ids if p)
    if set(study_ids or ()) - set(new_study_ids or ()):  # a brand-new study has no windows or alerts yet
        # a study that moved to another patient (replacement RDSR with a corrected ID): the former owner too
        targets |= set(PatientExposureWindow.objects.filter(anchor_study_id__in=study_ids).values_list("patient_id", flat=True).distinct())
        targets |= set(Alert.objects.filter(study_id__in=study_ids).values_list("patient_id", flat=True).distinct())
    from dosereg.registry.signals import follow_up

    for pk in sorted(targets):
        # in the ingest worker, after its commit: one task and one queue wait fewer before the alert e-mail
        follow_up(lambda pk=pk: _recompute(pk), lambda pk=pk: enqueue_recompute(pk),
                  what=f"exposure recompute of patient {pk}")


def _recompute(patient_id: int) -> None:
    from .services import patient_exposure_recompute  # looked up at call time (tests replace it)

    patient_exposure_recompute(patient_id=patient_id)


def on_study_deleted(sender, instance, **kwargs) -> None:
    from .services import enqueue_recompute

    if instance.patient_id:
        pid = instance.patient_id
        transaction.on_commit(lambda: enqueue_recompute(pid))
