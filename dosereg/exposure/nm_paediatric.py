"""NM/PET alert rule: a child's administered activity against the EANM paediatric dosage card (quantity
``nm_paed_activity_mbq``; the card table: ``eanm_card``, setting ``EANM_PAEDIATRIC_DOSAGE_CARD``).

Per study of a patient under the rule's ``max_age_years`` (a study of unknown age is not evaluated, as for every
paediatric rule): each radiopharmaceutical administration whose agent code is in the card and whose patient weight
is known is compared with the card's activity for that weight; an administration at or above

    card activity × (1 + tolerance)        (tolerance: the rule's ``params["tolerance_fraction"]``)

raises one alert per study (level ``notification``), valued at the largest such administration, each administration
compared in its detail. The table's version and verification mark travel with the alert. Called by
``services._expected_alerts`` for rules of this quantity; one query per recompute for the studies in scope, none
when no study is in scope.
"""
from __future__ import annotations

from typing import Any, Callable

from django.conf import settings

from dosereg.registry.models import DoseObject, RadiopharmaceuticalAdministration

from . import eanm_card
from .constants import L_NOTIFICATION

DEFAULT_TOLERANCE_FRACTION = 0.10


def tolerance(rule) -> float:
    value = (rule.params or {}).get("tolerance_fraction")
    return DEFAULT_TOLERANCE_FRACTION if value is None else float(value)


def _administrations(study_ids: list[int]) -> dict[int, list[RadiopharmaceuticalAdministration]]:
    """The active administrations of the studies (one query); an RRDSR's win over those read from image headers."""
    by_study: dict[int, list[RadiopharmaceuticalAdministration]] = {}
    rows = (RadiopharmaceuticalAdministration.objects
            .filter(study_id__in=study_ids, dose_object__status=DoseObject.STATUS_INGESTED,
                    dose_object__superseded_by__isnull=True)
            .select_related("dose_object").only(
                "pk", "study_id", "radiopharmaceutical", "radiopharmaceutical_code", "administered_activity_mbq",
                "patient_weight_kg", "start_datetime", "dose_object__source_kind").order_by("study_id", "start_datetime", "pk"))
    for a in rows:
        by_study.setdefault(a.study_id, []).append(a)
    for sid, items in by_study.items():
        if any(a.dose_object.source_kind == "rrdsr" for a in items):
            by_study[sid] = [a for a in items if a.dose_object.source_kind == "rrdsr"]
    return by_study


def compare(table: dict[str, Any], adm, tol: float) -> dict[str, Any] | None:
    """One administration against the card: None when the card does not apply (agent not in the card, no activity,
    no weight, heavier than the card's weights), else the comparison (``over``: at or above the allowed activity)."""
    row = (table.get("radiopharmaceuticals") or {}).get(adm.radiopharmaceutical_code or "")
    if row is None or adm.administered_activity_mbq is None:
        return None
    activity, detail = eanm_card.card_activity(table, row, adm.patient_weight_kg)
    if activity is None:
        return None
    allowed = activity * (1.0 + tol)
    return detail | {
        "radiopharmaceutical": adm.radiopharmaceutical or row.get("name"), "radiopharmaceutical_code": adm.radiopharmaceutical_code,
        "card_row": row.get("name"), "administered_activity_mbq": adm.administered_activity_mbq,
        "allowed_activity_mbq": round(allowed, 3), "ratio_to_card": round(adm.administered_activity_mbq / activity, 4),
        "over": adm.administered_activity_mbq >= allowed - 1e-9,
    }


def expected_alerts(rule, infos: list, make_expected: Callable, base_detail: Callable) -> list:
    """The alerts this rule expects for the studies in its scope (``services.StudyInfo``; ``make_expected`` and
    ``base_detail`` are ``services.Expected`` and ``services._base_detail``, passed in: this module sits beside the
    services and is imported by them)."""
    if not infos:
        return []
    table = settings.EANM_PAEDIATRIC_DOSAGE_CARD
    tol = tolerance(rule)
    by_study = _administrations([s.id for s in infos])
    out = []
    for s in infos:
        compared = [c for c in (compare(table, a, tol) for a in by_study.get(s.id, [])) if c is not None]
        over = [c for c in compared if c["over"]]
        if not over:
            continue
        worst = max(over, key=lambda c: c["ratio_to_card"])
        detail = base_detail(rule) | {
            "eanm_card_version": table.get("version"), "eanm_card_verification": table.get("verification"),
            "eanm_card_verification_note": table.get("verification_note", ""), "eanm_card_source": table.get("source"),
            "tolerance_fraction": tol, "administrations": compared,
            "patient_age_years": s.row.get("patient_age_years"),
        }
        out.append(make_expected(rule, L_NOTIFICATION, s.row["study_instance_uid"], s, worst["administered_activity_mbq"],
                                 worst["allowed_activity_mbq"], rule.severity, detail, rank=worst["ratio_to_card"]))
    return out
