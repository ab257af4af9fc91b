"""Staff registry and participation services: every write to staff/participation goes through here."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date
from functools import reduce
from operator import or_

from django.db import IntegrityError, router, transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone

from dosereg.registry.inserts import insert_many_unless_conflict

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
                    part.role, part.sources, changed = _evidence_merge(part.role, part.sources, role, evidence)
                    if changed:
                        part.save(update_fields=["sources", "role"])
                return part
        except IntegrityError:
            continue
    return Participation.objects.get(study=study, staff=staff)


def _evidence_merge(role: str, sources: list, new_role: str, evidence: dict) -> tuple[str, list, bool]:
    """One more source names a participant: its evidence is remembered once, and an in-room role beats
    "authorizing" / "other". Returns (role, sources, changed)."""
    changed = False
    if evidence not in sources:
        sources = [*sources, evidence]
        changed = True
    if role in (ROLE_AUTHORIZING, ROLE_OTHER) and new_role not in (ROLE_AUTHORIZING, ROLE_OTHER):
        role = new_role
        changed = True
    return role, sources, changed


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
            UnmatchedName.objects.filter(pk=um.pk).update(occurrences=F("occurrences") + 1)  # two workers: both count
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
    sync = _registry_sync(study_ids)
    if sync.withdrawn_staff_ids:
        # the person was not in that room after all: their dose there is gone, and real-time samples assigned to
        # that procedure may belong to another one of theirs (rare: recompute all their procedures)
        _after_participation_change(staff_ids=sync.withdrawn_staff_ids, study_ids=None)
    if sync.linked_staff_ids and recompute:
        _after_participation_change(staff_ids=sync.linked_staff_ids, study_ids=set(sync.study_ids))
    return sync.counts


# where a participation's evidence came from the registry (a corrected or replacement object can drop a name);
# staffing lists and other manual sources are not the registry's to withdraw
REGISTRY_SOURCES = {"rdsr", *REGISTRY_SOURCE_ROLE}


@dataclass
class _Name:
    """One name a study's current report carries, and what the sync decided for it."""

    study_id: int
    raw_name: str
    role: str
    source: str
    key: str  # normalise_name(raw_name)
    person_id: str = ""
    staff: StaffMember | None = None  # matched (linked)
    reason: str = ""  # not matched (queued): no_match | ambiguous | empty
    unmatched: UnmatchedName | None = None  # queued: its entry in the unmatched queue
    queued_first: bool = False  # queued: its pending participation is new (this name inserted it)


@dataclass
class _Sync:
    study_ids: list[int]
    counts: dict
    linked_staff_ids: set[int]  # matched by a name now
    withdrawn_staff_ids: set[int]  # participations deleted (no current report names them)
    study_staff_ids: set[int]  # every participation of the studies after the sync


def _registry_sync(study_ids) -> _Sync:
    """Link the studies' current names to staff, queue the names nobody answers to and withdraw the names the
    current reports no longer carry, in a fixed number of statements whatever the number of names: everything is
    read at once, decided here in the order of the names (as one name after the other would), and written with one
    statement per kind of change. New rows are INSERT ... ON CONFLICT DO NOTHING in key order, so two workers
    queueing the same name at once neither raise nor deadlock; an unmatched name's occurrences grow by the pending
    participations this sync actually inserted, atomically (``F()``)."""
    from dosereg.registry.models import Participant

    ids = sorted({int(s) for s in study_ids})
    counts = {"linked": 0, "queued": 0, "skipped": 0, "withdrawn": 0}
    linked: set[int] = set()
    with transaction.atomic():
        # the names the studies' current reports carry (a report superseded by a later cumulative one no longer counts)
        rows = list(Participant.objects.filter(study_id__in=ids, dose_object__superseded_by__isnull=True)
                    .order_by("pk").values_list("study_id", "name", "role", "source", "person_id"))
        # the studies' participations (locked: their evidence is rewritten here) and their names waiting in the queue
        parts = {(p.study_id, p.staff_id): p
                 for p in Participation.objects.select_for_update().filter(study_id__in=ids).order_by("pk")}
        pending = list(PendingParticipation.objects.filter(study_id__in=ids)) if ids else []
        withdrawn, changed, stale = _withdraw_dropped_names(rows=rows, parts=parts, pending=pending)
        counts["withdrawn"] = len(withdrawn)

        names: list[_Name] = []
        for study_id, raw_name, p_role, source, person_id in rows:
            name_key = normalise_name(raw_name)
            if not name_key and not person_id:
                counts["skipped"] += 1
                continue
            if source == "rdsr":
                role = REGISTRY_ROLE.get(p_role, role_normalise(p_role) if p_role else "")
            else:
                role = REGISTRY_SOURCE_ROLE.get(source, "")
            names.append(_Name(study_id, raw_name, role, source, name_key, person_id=person_id))
        _staff_match_names(names)
        queued = [n for n in names if n.staff is None]
        _unmatched_queue_names(queued, pending=[pp for pp in pending if pp.pk not in stale])

        # links, in the order of the names: a direct match, or a queued name already resolved to someone (its
        # alias removed since?) whose pending participation is new
        new: dict[tuple[int, int], Participation] = {}
        evidence_of: dict[tuple[int, int], list[tuple[str, dict]]] = {}
        for n in names:
            staff = n.staff
            if staff is not None:
                counts["linked"] += 1
                linked.add(staff.pk)
            else:
                counts["queued"] += 1
                um = n.unmatched
                if not (n.queued_first and um is not None and um.status == UnmatchedName.STATUS_RESOLVED
                        and um.resolved_staff is not None):
                    continue
                staff = um.resolved_staff
            role = n.role or staff.role or ROLE_OTHER
            evidence = {"source": n.source, "raw_name": n.raw_name, "role": role}
            key = (n.study_id, staff.pk)
            evidence_of.setdefault(key, []).append((role, evidence))
            part = parts.get(key) or new.get(key)
            if part is None:
                new[key] = Participation(study_id=n.study_id, staff_id=staff.pk, role=role, sources=[evidence])
                continue
            part.role, part.sources, did = _evidence_merge(part.role, part.sources, role, evidence)
            if did and key in parts:
                changed.add(key)
        if new:
            order = sorted(new)
            inserted = set(insert_many_unless_conflict(Participation, [new[k] for k in order], returning=["study", "staff"]))
            lost = [k for k in order if k not in inserted]  # another worker inserted it meanwhile: add ours to theirs
            if lost:
                for part in (Participation.objects.select_for_update().order_by("pk")
                             .filter(reduce(or_, (Q(study_id=s, staff_id=st) for s, st in lost)))):
                    key = (part.study_id, part.staff_id)
                    for role, evidence in evidence_of[key]:
                        part.role, part.sources, did = _evidence_merge(part.role, part.sources, role, evidence)
                        if did:
                            changed.add(key)
                    parts[key] = part
        if changed:
            Participation.objects.bulk_update([parts[k] for k in sorted(changed)], ["sources", "role"])
    return _Sync(ids, counts, linked, withdrawn, {k[1] for k in parts} | {k[1] for k in new})


def _staff_match_names(names: list[_Name]) -> None:
    """``staff_match`` for many names in two queries at most: the staff by person id (employee id) first, then by
    alias (exactly one active staff member answers to the name). Sets each name's ``staff`` or ``reason``."""
    person_ids = {n.person_id.strip() for n in names if n.person_id}
    by_employee = ({s.employee_id: s for s in StaffMember.objects.filter(employee_id__in=person_ids)}
                   if person_ids else {})
    rest = []
    for n in names:
        n.staff = by_employee.get(n.person_id.strip()) if n.person_id else None
        if n.staff is None:
            rest.append(n)
    keys = sorted({n.key for n in rest if n.key})
    by_key: dict[str, dict[int, StaffMember]] = {}
    if keys:
        for alias in StaffAlias.objects.filter(normalised__in=keys, staff__active=True).select_related("staff"):
            by_key.setdefault(alias.normalised, {})[alias.staff_id] = alias.staff
    for n in rest:
        found = by_key.get(n.key, {})
        if not n.key:
            n.reason = "empty"
        elif len(found) == 1:
            n.staff = next(iter(found.values()))
        else:
            n.reason = "ambiguous" if found else "no_match"


def _unmatched_queue_names(names: list[_Name], *, pending: list[PendingParticipation]) -> None:
    """``unmatched_queue`` for many names: their queue entries read at once (the missing ones inserted, first
    spelling and reason of the first name), their new pending participations inserted in one statement, and the
    occurrences of the entries whose pending participations this sync inserted incremented in one statement.
    ``pending``: the studies' pending participations that stay."""
    if not names:
        return
    keys = sorted({n.key for n in names})
    queue = {u.normalised: u for u in UnmatchedName.objects.filter(normalised__in=keys).select_related("resolved_staff")}
    missing: dict[str, UnmatchedName] = {}
    for n in names:
        if n.key not in queue and n.key not in missing:
            missing[n.key] = UnmatchedName(normalised=n.key, raw_name=n.raw_name[:256], reason=n.reason)
    if missing:
        using = router.db_for_write(UnmatchedName)
        inserted = dict(insert_many_unless_conflict(UnmatchedName, [missing[k] for k in sorted(missing)],
                                                    returning=["normalised", "id"]))
        for name_key, um in missing.items():
            if name_key in inserted:
                um.pk = inserted[name_key]
                um._state.adding, um._state.db = False, using
                queue[name_key] = um
        lost = [k for k in sorted(missing) if k not in inserted]  # another worker queued it meanwhile
        if lost:
            queue.update((u.normalised, u) for u in
                         UnmatchedName.objects.filter(normalised__in=lost).select_related("resolved_staff"))
    waiting = {(pp.unmatched_id, pp.study_id, pp.role, pp.source) for pp in pending}
    new: dict[tuple, PendingParticipation] = {}
    first: dict[tuple, _Name] = {}
    for n in names:
        n.unmatched = um = queue[n.key]
        key = (um.pk, n.study_id, n.role or "", n.source)
        if key in waiting or key in new:
            continue
        new[key] = PendingParticipation(unmatched_id=um.pk, study_id=n.study_id, raw_name=n.raw_name[:256],
                                        role=n.role or "", source=n.source)
        first[key] = n
    if not new:
        return
    order = sorted(new)
    inserted_keys = set(insert_many_unless_conflict(PendingParticipation, [new[k] for k in order],
                                                    returning=["unmatched", "study", "role", "source"]))
    for key in inserted_keys:
        first[key].queued_first = True
    per_entry = Counter(k[0] for k in inserted_keys)
    if not per_entry:
        return
    # one statement (its rows locked in key order, as another worker's): + 1 each, usually
    increments = set(per_entry.values())
    inc = increments.pop() if len(increments) == 1 else Case(
        *(When(pk=um_id, then=Value(n)) for um_id, n in sorted(per_entry.items())), output_field=IntegerField())
    UnmatchedName.objects.filter(pk__in=sorted(per_entry)).update(occurrences=F("occurrences") + inc)


def _withdraw_dropped_names(*, rows, parts: dict, pending: list[PendingParticipation]) -> tuple[set[int], set, set[int]]:
    """Remove the evidence of names the studies' current dose objects no longer carry (a corrected RDSR, a
    replacement that names someone else): a participation left with no evidence is deleted with the person's
    doses for that procedure, a name waiting in the unmatched queue for that study is dropped from it.
    ``rows``: the current names (study, name, role, source, person id); ``parts``: the studies' participations
    by (study, staff), locked; the deleted ones are taken out, the others keep only their current evidence (saved
    by the caller). Returns (the staff whose participations were deleted, the keys of the participations whose
    evidence changed, the pending participations deleted)."""
    from .models import ProcedureStaffDose

    current = {(study_id, source, n) for study_id, name, _, source, _ in rows for n in (name, name[:256])}
    gone: list[tuple[int, int]] = []
    changed: set[tuple[int, int]] = set()
    for key, part in parts.items():
        keep = [e for e in part.sources
                if e.get("source") not in REGISTRY_SOURCES or (part.study_id, e.get("source"), e.get("raw_name")) in current]
        if keep == part.sources:
            continue
        if keep:
            part.sources = keep
            changed.add(key)
        else:
            gone.append(key)
    if gone:
        ProcedureStaffDose.objects.filter(reduce(or_, (Q(study_id=s, staff_id=st) for s, st in gone))).delete()
        Participation.objects.filter(pk__in=[parts[k].pk for k in gone]).delete()
        for study_id, staff_id in gone:
            del parts[(study_id, staff_id)]
            log.info("participation of staff %s in study %s withdrawn: no current dose object names them",
                     staff_id, study_id)
    stale = {pp.pk for pp in pending
             if pp.source in REGISTRY_SOURCES and (pp.study_id, pp.source, pp.raw_name) not in current}
    if stale:
        PendingParticipation.objects.filter(pk__in=sorted(stale)).delete()
    return {staff_id for _, staff_id in gone}, changed, stale


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
    if named_study_ids and not set(named_study_ids).isdisjoint(ids):
        return ids  # the ingest has just written the names one of them carries: no need to look
    if not RegistryParticipant.objects.filter(study_id__in=ids).exists() and \
            not Participation.objects.filter(study_id__in=ids).exists():
        return []
    return ids


def staff_studies_sync(*, study_ids) -> dict:
    """Link the studies' participants to staff and recompute the linked people's procedure doses and alerts."""
    sync = _registry_sync(study_ids)
    if sync.withdrawn_staff_ids:
        _after_participation_change(staff_ids=sync.withdrawn_staff_ids, study_ids=None)
    counts = sync.counts
    # a study's events may have changed: its window and KAP change every linked person's dose (the staff of the
    # studies' participations as the sync left them; a participation another process adds meanwhile is
    # recomputed by that process)
    if sync.study_staff_ids:
        _after_participation_change(staff_ids=sync.study_staff_ids, study_ids=set(study_ids))
    log.debug("staff participation sync for %s: %s", study_ids, counts)
    return counts
