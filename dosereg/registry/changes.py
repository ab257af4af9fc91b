"""What a change of the registry touched (``StudyChanges``), handed to the follow-up pipeline
(``dosereg.pipeline.flow.follow_up``) by the ingest and by device changes."""
from __future__ import annotations

from dataclasses import dataclass

from .models import DoseObject, Study


@dataclass(frozen=True)
class StudyChanges:
    """What a change of the registry touched, for the follow-up pipeline (``dosereg.pipeline.flow.follow_up``).

    ``new_study_ids``: studies the ingest created (nothing can refer to them yet); ``named_study_ids``: those whose
    report names people (None: not known, look)."""

    study_ids: tuple[int, ...]
    patient_ids: tuple[int, ...]
    new_study_ids: tuple[int, ...] = ()
    named_study_ids: tuple[int, ...] | None = None
    # a corrected report moved these studies to another patient: (study, former patient, new patient)
    corrections: tuple[tuple[int, int | None, int | None], ...] = ()
    # of the new studies: (study, procedure modality, whether an event with a reference air kerma was written);
    # what the follow-up would otherwise read back (the skin-dose step's choice of studies)
    new_study_facts: tuple[tuple[int, str, bool], ...] = ()


def study_changes_of(obj: DoseObject) -> StudyChanges:
    """The changes of an object already ingested (its task was delivered again after the ingest committed)."""
    if not obj.study_id:
        return StudyChanges((), ())
    patient_ids = tuple(p for p in Study.objects.filter(pk=obj.study_id).values_list("patient_id", flat=True) if p)
    return StudyChanges((obj.study_id,), patient_ids)
