"""The patient of an ingested report: linked by Patient ID + Issuer (pseudonymised when configured); name, birth
date and sex are checks, not keys."""
from __future__ import annotations

import hashlib
import hmac
from datetime import date

from django.conf import settings

from dosereg.rdsr import records as R

from .inserts import insert_unless_conflict
from .models import Patient, Study
from .values import _s


def _get_or_create(model, defaults=None, **lookup):
    """get_or_create that survives a concurrent insert of the same key (``lookup``: the unique fields), without
    get_or_create's savepoint: a read, and for a new row one INSERT ... ON CONFLICT DO NOTHING."""
    obj = model.objects.filter(**lookup).first()
    if obj is not None:
        return obj, False
    obj = model(**lookup, **(defaults or {}))
    if insert_unless_conflict(obj):
        return obj, True
    return model.objects.get(**lookup), False


def pseudonym(value: str) -> str:
    return hmac.new(settings.PSEUDONYM_SECRET.encode(), value.encode(), hashlib.sha256).hexdigest()


def _name_key(name: str | None) -> str:
    """A Person Name for comparison: the alphabetic group, case, spacing and empty trailing components ignored."""
    alphabetic = _s(name).split("=", 1)[0]
    parts = [" ".join(p.split()).upper() for p in alphabetic.split("^")]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def patient_resolve(info: R.PatientInfo, *, warnings: list[str], flags: list[str] | None = None) -> Patient | None:
    """Link by Patient ID + Issuer (whole: an over-length ID is refused before, see ``_refusal``); name, birth
    date and sex are checks, not keys. A different name under the same ID is flagged (``flags``), not merged silently."""
    pid = (info.id or "").strip()
    if not pid:
        warnings.append("no Patient ID: the study is not linked to a patient and has no cumulative exposure")
        return None
    issuer = (info.issuer or "").strip()
    if len(pid) > 128 or len(issuer) > 128:  # the columns' width: never match on a prefix
        raise ValueError("Patient ID or Issuer longer than 128 characters")
    pseudo = settings.PSEUDONYMISE_PATIENTS
    key_id = pseudonym(f"{issuer}|{pid}") if pseudo else pid
    birth = info.birth_date
    if pseudo and birth:
        birth = date(birth.year, 1, 1)
    patient, created = _get_or_create(
        Patient,
        issuer=issuer[:128],
        patient_id=key_id,
        defaults={
            "name": "" if pseudo else _s(info.name)[:256],
            "sex": _s(info.sex)[:4],
            "birth_date": birth,
            "pseudonymised": pseudo,
        },
    )
    if not created:
        if not pseudo and patient.name and info.name and _name_key(patient.name) != _name_key(info.name):
            msg = (f"patient identity check: Patient's Name differs from the registered patient with this Patient ID "
                   f"({info.name!r} sent, {patient.name!r} registered); linked by ID — verify it is the same person")
            warnings.append(msg)
            if flags is not None:
                flags.append(msg)
        if patient.birth_date and birth and patient.birth_date != birth:
            warnings.append("patient identity check: birth date differs from the registered patient")
        if patient.sex and info.sex and patient.sex != info.sex:
            warnings.append("patient identity check: sex differs from the registered patient")
        changed = False
        if not patient.birth_date and birth:
            patient.birth_date, changed = birth, True
        sex_filled = not patient.sex and bool(info.sex)
        if sex_filled:
            patient.sex, changed = (info.sex or "")[:4], True
        if not pseudo and not patient.name and info.name:
            patient.name, changed = _s(info.name)[:256], True
        if changed:
            patient.save(update_fields=["birth_date", "sex", "name"])
            if sex_filled:  # the record's studies keep a copy of its sex (Study.patient_sex): filled in with it
                Study.objects.filter(patient=patient).update(patient_sex=patient.sex)
    while patient.merged_into_id:
        patient = patient.merged_into
    return patient
