"""The study of an ingested report: found or inserted by Study Instance UID (locked), kept when the same report
was filed under another UID, refused when the UID names another patient's study; its fields from the report,
and whether it is a phantom / QA exposure (``not_patient_reason``)."""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from django.conf import settings

from dosereg.rdsr import records as R

from .inserts import insert_unless_conflict
from .models import Device, DeviceIdentity, DoseObject, Patient, Study
from .refiled import _refiled_study, _Sharing
from .values import _bounded, _flag, _s


def _study_upsert(doc: R.DoseDocument, patient: Patient | None, device: Device | None, totals: dict,
                  refiled_from: DoseObject | None = None, identity: DeviceIdentity | None = None,
                  sharing: Sequence[_Sharing] = ()) -> Study:
    """The object's study, locked. A new study is inserted once, with ``totals`` (computed from this, its
    only report); an existing one is updated and its totals recomputed after the events are written.
    ``refiled_from``: the object being ingested; when no study has its Study Instance UID yet but the same report
    (SOP Instance UID) is counted under another study as its only report, it stays in that study (one procedure,
    not two)."""
    uid = doc.study_instance_uid or f"nostudy-{doc.sop_instance_uid}"
    # Most reports are their study's first: unless this same report is counted already (then it may belong to
    # the study it was filed under first), the study is inserted straight away (one statement); a conflict means
    # the study exists, and it is read and locked below.
    if refiled_from is None or not any(r.sop_instance_uid == refiled_from.sop_instance_uid for r in sharing):
        study = _study_new(uid, doc, patient, device, identity, totals)
        if study is not None:
            return study
    # the row lock serialises concurrent ingests of one study (e.g. cumulative CT RDSRs); FOR NO KEY UPDATE, so
    # that rows referring to the study written by other transactions (its exposure facts, by a recompute) do not
    # wait for it
    study = Study.objects.select_for_update(no_key=True).filter(study_instance_uid=uid).first()
    rename_from = _refiled_study(refiled_from, doc, sharing) if study is None and refiled_from is not None else None
    if rename_from is not None:
        study = Study.objects.select_for_update(no_key=True).filter(pk=rename_from).first()
        if study is not None:  # the study keeps its UID (alerts and links refer to it); the new one is noted
            _flag(doc, f"re-filed: this report (same SOP Instance UID) was sent again under Study Instance UID {uid}; "
                       f"it stays with the study it was first filed under, {study.study_instance_uid} "
                       "(one procedure, counted once)")
    if study is None:
        new = _study_new(uid, doc, patient, device, identity, totals)
        if new is not None:
            return new
        # another worker created it meanwhile
        study = Study.objects.select_for_update(no_key=True).get(study_instance_uid=uid)
    if study.patient_id is not None and (patient is None or study.patient_id != patient.pk):
        _refuse_study_collision(study, doc, patient)
    study.former_patient_id = study.patient_id
    _study_fields(study, doc, patient, device, identity)
    study.save()
    study.created_by_this_ingest = False
    return study


def _study_new(uid: str, doc: R.DoseDocument, patient: Patient | None, device: Device | None,
               identity: DeviceIdentity | None, totals: dict) -> Study | None:
    """The study inserted with this report's fields and ``totals`` (one statement, no savepoint: ON CONFLICT DO
    NOTHING RETURNING id), or None when a study with this UID exists (nothing written)."""
    study = Study(study_instance_uid=uid)
    _study_fields(study, doc, patient, device, identity)
    for field, value in totals.items():
        setattr(study, field, value)
    if not insert_unless_conflict(study):
        return None
    study.created_by_this_ingest = True  # a brand-new study has no other reports to look at
    return study


class StudyUidCollision(Exception):
    """The Study Instance UID of a report already names another patient's study that holds other reports."""


def _refuse_study_collision(study: Study, doc: R.DoseDocument, patient: Patient | None) -> None:
    """A report of another patient under a Study Instance UID that is in use: a correction of one of the study's
    own reports (same SOP Instance UID) moves the study to the corrected patient; a different report would move
    the other patient's reports with it (two people joined under one procedure): refused, for review."""
    others = (DoseObject.objects.filter(study=study, status=DoseObject.STATUS_INGESTED, superseded_by__isnull=True)
              .exclude(sop_instance_uid=doc.sop_instance_uid))
    if others.exists():
        raise StudyUidCollision(
            f"Study Instance UID {study.study_instance_uid} is already the study of another patient (record "
            f"{study.patient_id}) with other reports; this report names "
            + (f"Patient ID {patient.patient_id!r}" if patient is not None else "no patient")
            + ": not filed under it (a UID collision or a placeholder UID would join two patients, or take the study "
            "from its patient) - review and reprocess")


def _study_fields(study: Study, doc: R.DoseDocument, patient: Patient | None, device: Device | None,
                  identity: DeviceIdentity | None = None) -> None:
    p = doc.patient
    study.patient = patient
    study.patient_sex = patient.sex if patient is not None else ""  # the record's (a copy: see Study.patient_sex)
    study.device = device or study.device
    study.received_identity = identity or study.received_identity
    study.study_datetime = _bounded(doc.study_datetime, doc, "Study Date/Time") or study.study_datetime
    study.accession_number = _s(doc.accession_number)[:64] or study.accession_number
    study.study_description = _s(doc.study_description or doc.procedure_description)[:256] or study.study_description
    modality = doc.procedure_modality or doc.modality or ""
    if modality == "SR":  # a report that names no procedure (Patient Radiation Dose SR): not a modality
        modality = ""
    if modality and (not study.procedure_modality or doc.source_kind in (R.RDSR, R.DOSE_SUMMARY)):
        study.procedure_modality = modality[:8]
    if p.pregnancy_status:
        study.pregnancy_status = p.pregnancy_status
    study.patient_weight_kg = p.weight_kg if p.weight_kg is not None else study.patient_weight_kg
    study.patient_size_m = p.size_m if p.size_m is not None else study.patient_size_m
    study.patient_age_years = p.age_years if p.age_years is not None else study.patient_age_years
    study.not_patient_reason = not_patient_reason(p.id, p.name)


def not_patient_reason(patient_id, patient_name) -> str:
    """The text that marks a phantom / QA / test exposure (NOT_PATIENT_PATTERN, case-insensitive, on the
    Patient ID and the Patient's Name with its component separators read as spaces), or "" for a patient."""
    pattern = _not_patient_re()
    if pattern is None:
        return ""
    for value in (patient_id, patient_name):
        text = re.sub(r"[\^=_]+", " ", _s(value))
        m = pattern.search(text)
        if m:
            return m.group(0)[:64]
    return ""


@functools.lru_cache(maxsize=4)
def _compile_not_patient(pattern: str):
    return re.compile(pattern, re.IGNORECASE) if pattern else None


def _not_patient_re():
    return _compile_not_patient(getattr(settings, "NOT_PATIENT_PATTERN", ""))
