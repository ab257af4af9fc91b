"""Staff registry and participation services: every write to staff/participation goes through here."""
from __future__ import annotations

import logging
from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import (
    ROLE_ANAESTHETIST,
    ROLE_AUTHORIZING,
    ROLE_FIRST_OPERATOR,
    ROLE_NURSE,
    ROLE_OTHER,
    ROLE_RADIOGRAPHER,
    ROLE_SECOND_OPERATOR,
    STAFF_ROLE_CHOICES,
    BadgeWearPeriod,
    DosimeterBadge,
    Participation,
    PendingParticipation,
    PregnancyDeclaration,
    StaffAlias,
    StaffMember,
    UnmatchedName,
)
from .names import normalise_name

log = logging.getLogger(__name__)

VALID_ROLES = {r for r, _ in STAFF_ROLE_CHOICES}


class StaffError(ValueError):
    """A request the staff registry refuses, with a message for a human."""


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------
def staff_create(
    *, name: str, employee_id: str, role: str = ROLE_OTHER, department: str = "", email: str = "", user=None, site=None,
    aliases: list[str] | tuple[str, ...] = (),
) -> StaffMember:
    if role not in VALID_ROLES:
        raise StaffError(f"unknown staff role {role!r}; expected one of {sorted(VALID_ROLES)}")
    with transaction.atomic():
        staff = StaffMember.objects.create(
            name=name, employee_id=employee_id, role=role, department=department, email=email, user=user, site=site
        )
        for alias in (name, *aliases):
            alias_add(staff=staff, alias=alias)
    return staff


def alias_add(*, staff: StaffMember, alias: str) -> StaffAlias | None:
    key = normalise_name(alias)
    if not key:
        return None
    obj, _ = StaffAlias.objects.get_or_create(staff=staff, normalised=key, defaults={"alias": alias[:256]})
    return obj


def staff_match(name: str, *, person_id: str = "") -> tuple[StaffMember | None, str]:
    """Find the one staff member a name (or person id) refers to. Returns (staff, reason)."""
    if person_id:
        staff = StaffMember.objects.filter(employee_id=person_id.strip()).first()
        if staff:
            return staff, "employee_id"
    key = normalise_name(name)
    if not key:
        return None, "empty"
    ids = set(StaffAlias.objects.filter(normalised=key, staff__active=True).values_list("staff_id", flat=True))
    if len(ids) == 1:
        return StaffMember.objects.get(pk=ids.pop()), "alias"
    return None, "ambiguous" if ids else "no_match"


def badge_create(*, badge_id: str, position: str, kind: str = DosimeterBadge.KIND_PASSIVE) -> DosimeterBadge:
    from .dosimetry.common import canonical_position

    pos = canonical_position(position)
    if pos is None:
        raise StaffError(f"unknown badge position {position!r}")
    return DosimeterBadge.objects.create(badge_id=badge_id.strip(), position=pos, kind=kind)


def badge_assign(*, badge: DosimeterBadge, staff: StaffMember, start: date, end: date | None = None) -> BadgeWearPeriod:
    """Record that ``staff`` wears ``badge`` from start to end (inclusive). Overlaps are refused."""
    if end is not None and end < start:
        raise StaffError(f"wear period of badge {badge.badge_id} ends ({end}) before it starts ({start})")
    with transaction.atomic():
        DosimeterBadge.objects.select_for_update().get(pk=badge.pk)  # serialise assignments of one badge
        clash = BadgeWearPeriod.objects.filter(badge=badge).filter(Q(end__isnull=True) | Q(end__gte=start))
        if end is not None:
            clash = clash.filter(start__lte=end)
        other = clash.first()
        if other:
            raise StaffError(
                f"wear period {start}..{end or 'open'} of badge {badge.badge_id} overlaps its wear period "
                f"{other.start}..{other.end or 'open'} (worn by {other.staff.employee_id})"
            )
        return BadgeWearPeriod.objects.create(badge=badge, staff=staff, start=start, end=end)


def wearer(badge: DosimeterBadge, start: date, end: date | None = None) -> StaffMember | None:
    """The staff member who wore the badge for the whole of start..end, or None."""
    end = end or start
    wp = (
        BadgeWearPeriod.objects.filter(badge=badge, start__lte=start)
        .filter(Q(end__isnull=True) | Q(end__gte=end))
        .select_related("staff")
        .first()
    )
    return wp.staff if wp else None


def pregnancy_declare(*, staff: StaffMember, declared_on: date, expected_due_date: date | None = None) -> PregnancyDeclaration:
    if expected_due_date and expected_due_date < declared_on:
        raise StaffError("expected due date is before the declaration date")
    return PregnancyDeclaration.objects.create(staff=staff, declared_on=declared_on, expected_due_date=expected_due_date)


def pregnancy_withdraw(*, declaration: PregnancyDeclaration, withdrawn_on: date) -> PregnancyDeclaration:
    if withdrawn_on < declaration.declared_on:
        raise StaffError("withdrawal date is before the declaration date")
    declaration.withdrawn_on = withdrawn_on
    declaration.save(update_fields=["withdrawn_on"])
    return declaration


# ---------------------------------------------------------------------------
# participation
# ---------------------------------------------------------------------------
ROLE_WORDS = [
    # (words in a free-text role, normalised role); first hit wins
    (("second operator", "operator 2", "assistant", "fellow", "second"), ROLE_SECOND_OPERATOR),
    (("first operator", "operator 1", "primary operator", "operator", "surgeon", "interventional", "cardiologist",
      "radiologist", "consultant", "physician", "first"), ROLE_FIRST_OPERATOR),
    (("nurse", "scrub", "circulat"), ROLE_NURSE),
    (("radiographer", "technologist", "rt", "mrt", "tech"), ROLE_RADIOGRAPHER),
    (("anaesthet", "anesthet"), ROLE_ANAESTHETIST),
    (("authoriz", "authoris"), ROLE_AUTHORIZING),
]


def role_normalise(text: str) -> str:
    t = (text or "").strip().lower().replace("-", " ").replace("_", " ")
    if not t:
        return ""
    if t.replace(" ", "_") in VALID_ROLES:
        return t.replace(" ", "_")
    for words, role in ROLE_WORDS:
        for w in words:
            if (" " in w and w in t) or w in t.split() or (len(w) > 4 and w in t):
                return role
    return ROLE_OTHER


def participation_link(*, study, staff: StaffMember, role: str, source: str, raw_name: str = "") -> Participation:
    """Idempotent: one Participation per (study, staff); every source that named them is remembered."""
    role = role or staff.role or ROLE_OTHER
    evidence = {"source": source, "raw_name": raw_name, "role": role}
    for _ in range(2):
        try:
            with transaction.atomic():
                part, created = Participation.objects.select_for_update().get_or_create(
                    study=study, staff=staff, defaults={"role": role, "sources": [evidence]}
                )
                if not created:
                    changed = False
                    if evidence not in part.sources:
                        part.sources = [*part.sources, evidence]
                        changed = True
                    # an in-room role beats "authorizing" / "other"
                    if part.role in (ROLE_AUTHORIZING, ROLE_OTHER) and role not in (ROLE_AUTHORIZING, ROLE_OTHER):
                        part.role = role
                        changed = True
                    if changed:
                        part.save(update_fields=["sources", "role"])
                return part
        except IntegrityError:
            continue
    return Participation.objects.get(study=study, staff=staff)


def participation_from_name(*, study, raw_name: str, role: str, source: str, person_id: str = "") -> Participation | UnmatchedName | None:
    """Link a named person to a study, or queue the name for a human to resolve."""
    if not normalise_name(raw_name) and not person_id:
        return None
    staff, reason = staff_match(raw_name, person_id=person_id)
    if staff:
        return participation_link(study=study, staff=staff, role=role, source=source, raw_name=raw_name)
    return unmatched_queue(study=study, raw_name=raw_name, role=role, source=source, reason=reason)


def unmatched_queue(*, study, raw_name: str, role: str, source: str, reason: str = "no_match") -> UnmatchedName:
    key = normalise_name(raw_name)
    with transaction.atomic():
        try:
            with transaction.atomic():
                um, _ = UnmatchedName.objects.get_or_create(normalised=key, defaults={"raw_name": raw_name[:256], "reason": reason})
        except IntegrityError:
            um = UnmatchedName.objects.get(normalised=key)
        _, created = PendingParticipation.objects.get_or_create(
            unmatched=um, study=study, role=role or "", source=source, defaults={"raw_name": raw_name[:256]}
        )
        if created:
            UnmatchedName.objects.filter(pk=um.pk).update(occurrences=um.occurrences + 1)
            if um.status == UnmatchedName.STATUS_RESOLVED and um.resolved_staff is not None:
                # resolved meanwhile (alias removed?): link straight away
                participation_link(study=study, staff=um.resolved_staff, role=role, source=source, raw_name=raw_name)
    um.refresh_from_db()
    return um


def unmatched_resolve(*, unmatched: UnmatchedName, staff: StaffMember, user=None) -> list[Participation]:
    """A human says who this name is: remember it as an alias and link every pending participation."""
    with transaction.atomic():
        um = UnmatchedName.objects.select_for_update().get(pk=unmatched.pk)
        alias_add(staff=staff, alias=um.raw_name)
        linked = []
        study_ids = set()
        for pending in um.pending.select_related("study"):
            alias_add(staff=staff, alias=pending.raw_name)
            linked.append(
                participation_link(study=pending.study, staff=staff, role=pending.role, source=pending.source, raw_name=pending.raw_name)
            )
            study_ids.add(pending.study_id)
        um.pending.all().delete()
        um.status = UnmatchedName.STATUS_RESOLVED
        um.resolved_staff = staff
        um.resolved_by = user
        um.resolved_at = timezone.now()
        um.save()
        if study_ids:
            _after_participation_change(staff_ids={staff.pk}, study_ids=study_ids)
    return linked


def unmatched_ignore(*, unmatched: UnmatchedName, user=None) -> None:
    with transaction.atomic():
        UnmatchedName.objects.filter(pk=unmatched.pk).update(
            status=UnmatchedName.STATUS_IGNORED, resolved_by=user, resolved_at=timezone.now()
        )
        PendingParticipation.objects.filter(unmatched_id=unmatched.pk).delete()


REGISTRY_ROLE = {
    # registry Participant.role -> staff role ("" = the staff member's registered role)
    "irradiation_authorizing": ROLE_AUTHORIZING,
    "irradiation_administering": "",
}
REGISTRY_SOURCE_ROLE = {
    "header_performing_physician": ROLE_FIRST_OPERATOR,
    "header_operator": "",
    "event_text": "",
}


def participations_sync_from_registry(*, study_ids, recompute: bool = True) -> dict:
    """Link the registry's Participant rows (RDSR person participants, header names) to staff."""
    from dosereg.registry.models import Participant, Study

    counts = {"linked": 0, "queued": 0, "skipped": 0, "withdrawn": 0}
    staff_ids: set[int] = set()
    studies = {s.pk: s for s in Study.objects.filter(pk__in=list(study_ids))}
    # the names the studies' current reports carry (a report superseded by a later cumulative one no longer counts)
    participants = list(Participant.objects.filter(study_id__in=list(studies), dose_object__superseded_by__isnull=True)
                        .order_by("pk"))
    withdrawn = _withdraw_dropped_names(studies=list(studies), participants=participants)
    counts["withdrawn"] = len(withdrawn)
    for p in participants:
        if p.source == "rdsr":
            role = REGISTRY_ROLE.get(p.role, role_normalise(p.role) if p.role else "")
        else:
            role = REGISTRY_SOURCE_ROLE.get(p.source, "")
        result = participation_from_name(study=studies[p.study_id], raw_name=p.name, role=role, source=p.source, person_id=p.person_id)
        if isinstance(result, Participation):
            counts["linked"] += 1
            staff_ids.add(result.staff_id)
        elif isinstance(result, UnmatchedName):
            counts["queued"] += 1
        else:
            counts["skipped"] += 1
    if withdrawn:
        # the person was not in that room after all: their dose there is gone, and real-time samples assigned to
        # that procedure may belong to another one of theirs (rare: recompute all their procedures)
        _after_participation_change(staff_ids=withdrawn, study_ids=None)
    if staff_ids and recompute:
        _after_participation_change(staff_ids=staff_ids, study_ids=set(studies))
    return counts


# where a participation's evidence came from the registry (a corrected or replacement object can drop a name);
# staffing lists and other manual sources are not the registry's to withdraw
REGISTRY_SOURCES = {"rdsr", *REGISTRY_SOURCE_ROLE}


def _withdraw_dropped_names(*, studies: list[int], participants) -> set[int]:
    """Remove the evidence of names the studies' current dose objects no longer carry (a corrected RDSR, a
    replacement that names someone else): a participation left with no evidence is deleted with the person's
    doses for that procedure, a name waiting in the unmatched queue for that study is dropped from it.
    Returns the staff whose participations were deleted."""
    from .models import ProcedureStaffDose

    current = {(p.study_id, p.source, n) for p in participants for n in (p.name, p.name[:256])}
    gone: set[int] = set()
    with transaction.atomic():
        for part in Participation.objects.select_for_update().filter(study_id__in=studies):
            keep = [e for e in part.sources
                    if e.get("source") not in REGISTRY_SOURCES or (part.study_id, e.get("source"), e.get("raw_name")) in current]
            if keep == part.sources:
                continue
            if keep:
                part.sources = keep
                part.save(update_fields=["sources"])
                continue
            ProcedureStaffDose.objects.filter(staff_id=part.staff_id, study_id=part.study_id).delete()
            part.delete()
            gone.add(part.staff_id)
            log.info("participation of staff %s in study %s withdrawn: no current dose object names them",
                     part.staff_id, part.study_id)
        stale = [pp.pk for pp in PendingParticipation.objects.filter(study_id__in=studies, source__in=REGISTRY_SOURCES)
                 if (pp.study_id, pp.source, pp.raw_name) not in current]
        if stale:
            PendingParticipation.objects.filter(pk__in=stale).delete()
    return gone


def _after_participation_change(*, staff_ids, study_ids) -> None:
    from .occupational import procedure_doses_recompute
    from .alerts import staff_alerts_evaluate

    procedure_doses_recompute(staff_ids=staff_ids, study_ids=study_ids)
    staff_alerts_evaluate(staff_ids=staff_ids)


def studies_to_sync(*, study_ids, new_study_ids=None, named_study_ids=None) -> list[int]:
    """The studies among these whose participants must be linked to staff (``staff_studies_sync``): none when the
    ingest created them and their report names nobody, or when they have no participants and no linked staff
    (most reports name nobody)."""
    if not study_ids:
        return []
    from dosereg.registry.models import Participant as RegistryParticipant

    ids = sorted({int(s) for s in study_ids})
    if new_study_ids is not None and named_study_ids is not None and not named_study_ids and set(ids) <= set(new_study_ids):
        return []  # the ingest created these studies and their report names nobody: nothing to link
    if not RegistryParticipant.objects.filter(study_id__in=ids).exists() and \
            not Participation.objects.filter(study_id__in=ids).exists():
        return []
    return ids


def staff_studies_sync(*, study_ids) -> dict:
    """Link the studies' participants to staff and recompute the linked people's procedure doses and alerts."""
    counts = participations_sync_from_registry(study_ids=study_ids, recompute=False)
    # a study's events may have changed: its window and KAP change every linked person's dose
    staff_ids = set(Participation.objects.filter(study_id__in=list(study_ids)).values_list("staff_id", flat=True))
    if staff_ids:
        _after_participation_change(staff_ids=staff_ids, study_ids=set(study_ids))
    log.debug("staff participation sync for %s: %s", study_ids, counts)
    return counts
