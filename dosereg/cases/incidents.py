"""The incident register: a case declared an incident, checked against versioned reportable-event rules, with
investigation notes, a physicist's sign-off and the regulator's reference. Writes here; reads in ``selectors``.

The skin-dose basis of a case is the peak skin dose a physicist recorded when closing it (``outcome.psd_gy``)
where there is one, else the procedure's computed peak skin dose (``dosereg.skindose``), else the largest PSD level
value of its window, else the largest Ka,r (reference air kerma) of its levels; the incident says which.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import INCIDENT_CATEGORIES, Case, CaseEvent, Incident, ReportableRule
from .services import CaseError


def skin_dose_basis(case: Case) -> tuple[str, float | None, str]:
    """("psd" | "kar" | "", Gy, how it was obtained)."""
    psd = (case.outcome or {}).get("psd_gy")
    if psd is not None:
        return "psd", float(psd), "peak skin dose estimate recorded by the physicist"
    from dosereg.exposure.models import Alert
    from dosereg.skindose.models import StudySkinDose

    if case.study_id is not None:  # the procedure's computed estimate (dosereg.skindose), with its method
        computed = (StudySkinDose.objects.filter(study_id=case.study_id, computable=True, psd_gy__isnull=False)
                    .values_list("psd_gy", "phantom").first())
        if computed is not None:
            return "psd", computed[0], (f"peak skin dose computed from the report's beam geometry ({computed[1]} "
                                        "phantom; an estimate, about ±25-40 % unless validated for the room)")
    else:  # a cumulative window: its PSD level value (summed maps or the conservative sum of the procedures' PSDs)
        psd_alert = (Alert.objects.filter(case_link__case=case, quantity="psd_gy").order_by("-value")
                     .values_list("value", flat=True).first())
        if psd_alert is not None:
            return "psd", psd_alert, "peak skin dose over the case's window (summed skin-dose maps or the conservative sum)"
    kar = (Alert.objects.filter(case_link__case=case, quantity="kar_gy").order_by("-value").values_list("value", flat=True).first())
    if kar is not None:
        return "kar", kar, "Ka,r at the reference point (no peak skin dose estimate recorded): it overstates or understates the skin dose"
    return "", None, "no skin dose quantity in this case"


def rules_met(case: Case, rules: list[ReportableRule] | None = None) -> list[dict]:
    """The active numeric rules this case's skin dose basis reaches (a suggestion; declaring stays a judgement)."""
    rules = rules if rules is not None else list(ReportableRule.objects.filter(active=True))
    basis, value, how = skin_dose_basis(case)
    out = []
    for r in rules:
        if r.quantity == "skin_gy" and r.threshold is not None and value is not None and value >= r.threshold:
            out.append({"rule": r, "basis": basis, "value": value, "how": how})
    return out


def incident_declare(*, case_id: int, user, rule_key: str = "", category: str = "", summary: str = "") -> Incident:
    summary = (summary or "").strip()
    if not summary:
        raise CaseError("an incident needs a summary (what happened)")
    rule = ReportableRule.objects.filter(key=rule_key, active=True).first() if rule_key else None
    if rule_key and rule is None:
        raise CaseError("unknown reportable-event rule")
    category = category or (rule.category if rule else "")
    if category not in dict(INCIDENT_CATEGORIES):
        raise CaseError("choose the incident's category")
    now = timezone.now()
    with transaction.atomic():
        case = Case.objects.select_for_update().get(pk=case_id)
        if Incident.objects.filter(case=case).exists():
            raise CaseError("this case is already an incident")
        basis, value, how = skin_dose_basis(case)
        year = timezone.localdate().year
        n = Incident.objects.filter(year=year).count() + 1
        snap = {"key": rule.key, "version": rule.version, "title": rule.title, "jurisdiction": rule.jurisdiction,
                "threshold": rule.threshold, "unit": rule.unit, "source": rule.source, "verification": rule.verification} if rule else {}
        for attempt in range(5):
            try:
                with transaction.atomic():
                    inc = Incident.objects.create(
                        case=case, number=f"{year}-{n + attempt:04d}", year=year, rule=rule, rule_snapshot=snap, category=category,
                        summary=summary[:4000], dose_basis=basis, dose_gy=value, dose_note=how[:255], declared_by=user, declared_at=now)
                break
            except IntegrityError:
                continue
        else:  # pragma: no cover
            raise CaseError("could not number the incident; try again")
        CaseEvent.objects.create(case=case, at=now, actor=user, action="incident_declared",
                                 note=f"incident {inc.number}: {summary}"[:2000],
                                 detail={"rule": snap.get("key", ""), "version": snap.get("version"), "basis": basis, "gy": value})
    return inc


def _incident(case_id: int) -> Incident:
    inc = Incident.objects.select_for_update().filter(case_id=case_id).first()
    if inc is None:
        raise CaseError("this case is not an incident")
    return inc


def incident_note(*, case_id: int, user, note: str) -> Incident:
    note = (note or "").strip()
    if not note:
        raise CaseError("the note is empty")
    now = timezone.now()
    with transaction.atomic():
        inc = _incident(case_id)
        stamp = f"[{timezone.localtime(now):%Y-%m-%d %H:%M} {user.get_username()}] {note}"
        inc.investigation_notes = (inc.investigation_notes + "\n" + stamp).strip()
        inc.save(update_fields=["investigation_notes"])
        CaseEvent.objects.create(case_id=case_id, at=now, actor=user, action="incident_note", note=note[:2000])
    return inc


def incident_sign_off(*, case_id: int, user, note: str = "") -> Incident:
    now = timezone.now()
    with transaction.atomic():
        inc = _incident(case_id)
        if inc.signed_off_at:
            raise CaseError("already signed off")
        inc.signed_off_by, inc.signed_off_at, inc.sign_off_note = user, now, (note or "").strip()
        if inc.status == "declared":
            inc.status = "signed_off"
        inc.save()
        CaseEvent.objects.create(case_id=case_id, at=now, actor=user, action="physicist_sign_off", note=note)
    return inc


def incident_report(*, case_id: int, user, reference: str, reported_at=None) -> Incident:
    reference = (reference or "").strip()
    if not reference:
        raise CaseError("the regulator's reference is empty")
    now = timezone.now()
    with transaction.atomic():
        inc = _incident(case_id)
        inc.regulator_reference, inc.reported_at = reference[:128], reported_at or timezone.localdate()
        inc.status = "reported"
        inc.save()
        CaseEvent.objects.create(case_id=case_id, at=now, actor=user, action="regulator_reference",
                                 note=f"{reference} (reported {inc.reported_at:%Y-%m-%d})")
    return inc
