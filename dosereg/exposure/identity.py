"""Patient merge/unmerge (RIS merges).

Merging does not re-point studies: a merged patient keeps its studies and points
at the surviving record (Patient.merged_into); cumulative exposure and alerts are
computed over the surviving record's whole merge group. Unmerge clears the pointer,
so every study is back with its own patient. Studies that arrived *while* merged
were linked to the survivor by ``patient_resolve``; unmerge names those objects
so that they are re-ingested from their stored originals and return to the right patient.

These functions change the records only. ``dosereg.pipeline.flow.patient_merge`` /
``patient_unmerge`` call them and then run the follow-up steps (cumulative exposure,
alerts, staff, protocol summaries) on what they return.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from dosereg.registry.merge_group import patient_root_id
from dosereg.registry.models import DoseObject, Patient, Study

from .models import PatientMerge

log = logging.getLogger(__name__)


class MergeError(ValueError):
    pass


@dataclass(frozen=True)
class IdentityChange:
    """A merge or unmerge: its record, and what the follow-up must recompute."""

    merge: PatientMerge | None
    study_ids: tuple[int, ...] = ()
    patient_ids: tuple[int, ...] = ()
    reingest_object_ids: tuple[int, ...] = ()  # received during the merge: linked to the survivor


def patient_merge(*, source_id: int, target_id: int, user=None, note: str = "") -> IdentityChange:
    """Merge ``source`` into ``target`` (its surviving record)."""
    if source_id == target_id:
        raise MergeError("cannot merge a patient into itself")
    with transaction.atomic():
        source, target = (Patient.objects.select_for_update().get(pk=pk) for pk in (source_id, target_id))
        if source.merged_into_id:
            raise MergeError(f"patient {source_id} is already merged into {source.merged_into_id}; unmerge first")
        root = Patient.objects.get(pk=patient_root_id(target.pk))
        if root.pk == source.pk:
            raise MergeError("merge would create a cycle")
        source.merged_into = root
        source.save(update_fields=["merged_into"])
        merge = PatientMerge.objects.create(source=source, target=root, merged_by=user, note=note)
        study_ids = list(Study.objects.filter(patient_id=source.pk).values_list("pk", flat=True))
        ids = sorted({source.pk, root.pk})
    return IdentityChange(merge, tuple(study_ids), tuple(ids))


def patient_unmerge(*, patient_id: int, user=None, reingest: bool = True) -> IdentityChange:
    """Undo the merge of ``patient_id``. Returns the merge record closed (None if it was not merged)."""
    with transaction.atomic():
        patient = Patient.objects.select_for_update().get(pk=patient_id)
        if not patient.merged_into_id:
            return IdentityChange(None)
        former = patient.merged_into_id
        root = patient_root_id(patient.pk)
        merge = PatientMerge.objects.filter(source=patient, unmerged_at__isnull=True).order_by("-merged_at").first()
        patient.merged_into = None
        patient.save(update_fields=["merged_into"])
        since = merge.merged_at if merge else None
        if merge:
            merge.unmerged_at = timezone.now()
            merge.unmerged_by = user
            merge.save(update_fields=["unmerged_at", "unmerged_by"])
        study_ids = list(Study.objects.filter(patient_id=patient.pk).values_list("pk", flat=True))
        # studies received during the merge were linked to the survivor: re-resolve them from their originals
        during = []
        if reingest and since is not None:
            during = list(
                DoseObject.objects.filter(study__patient_id=root, ingested_at__gte=since, status=DoseObject.STATUS_INGESTED)
                .values_list("pk", flat=True)
            )
        ids = sorted({patient.pk, former, root})
    return IdentityChange(merge, tuple(study_ids), tuple(ids), tuple(during))
