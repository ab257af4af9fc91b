"""Theatre / procedure staffing lists (CSV): who was in the room for which study.

Columns (header row required, case-insensitive, any order):
    role                                                   (required: free text, e.g. "first operator", "scrub nurse")
    staff_name and/or employee_id                          (at least one column; per row at least one value)
    study_instance_uid, accession_number, room, start, end (at least one way to find the study per row)
A study is found by study_instance_uid, else accession_number, else room (Device station name or display
name, case-insensitive) plus the time window start..end (ISO 8601), which must overlap exactly one study.
An unknown employee_id or an unfound study is an error (nothing is imported); an unknown name goes to the
unmatched-name queue with a pending participation. The file is read by csv_files.read_csv (encodings, NUL
characters, malformed CSV: refused with the line number).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models import Q

from dosereg.registry.models import Study

from .csv_files import check_columns, make_tzinfo, parse_timestamp
from .dosimetry.common import DosimetryImportError, read_import_csv
from .models import Participation, StaffingImport, StaffMember, UnmatchedName
from .services import participation_link, role_normalise, staff_match, unmatched_queue

REQUIRED = {"role"}
OPTIONAL = {"staff_name", "employee_id", "study_instance_uid", "accession_number", "room", "start", "end", "procedure", "notes"}


class StaffingImportError(DosimetryImportError):
    pass


@dataclass
class StaffingResult:
    status: str
    import_id: int
    counts: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"status": self.status, "import_id": self.import_id, "counts": self.counts}


def _find_study(row: dict, tzinfo) -> tuple[Study | None, str]:
    from dosereg.registry.models import IrradiationEvent

    uid = row.get("study_instance_uid", "")
    if uid:
        s = Study.objects.filter(study_instance_uid=uid).first()
        return (s, "") if s else (None, f"no study with Study Instance UID {uid}")
    acc = row.get("accession_number", "")
    if acc:
        found = list(Study.objects.filter(accession_number=acc)[:2])
        if len(found) == 1:
            return found[0], ""
        return None, f"accession number {acc!r} matches {'no study' if not found else 'several studies'}"
    room = row.get("room", "")
    if room and row.get("start") and row.get("end"):
        try:
            start = parse_timestamp(row["start"], tzinfo)
            end = parse_timestamp(row["end"], tzinfo)
        except ValueError as exc:
            return None, str(exc)
        if end < start:
            return None, f"end {row['end']} is before start {row['start']}"
        room_q = Q(device__station_name__iexact=room) | Q(device__display_name__iexact=room)
        by_events = set(
            IrradiationEvent.objects.filter(study__in=Study.objects.filter(room_q), datetime__gte=start, datetime__lte=end)
            .values_list("study_id", flat=True)
        )
        by_time = set(
            Study.objects.filter(room_q, study_datetime__gte=start, study_datetime__lte=end).values_list("pk", flat=True)
        )
        ids = by_events | by_time
        if len(ids) == 1:
            return Study.objects.get(pk=ids.pop()), ""
        return None, f"room {room!r} {row['start']}..{row['end']} matches {len(ids)} studies (expected one)"
    return None, "no study_instance_uid, accession_number or room+start+end"


def import_staffing(path: Path | str, *, tz_name: str | None = None) -> StaffingResult:
    path = Path(path)
    sha, header, rows = read_import_csv(path, StaffingImportError)
    done = StaffingImport.objects.filter(sha256=sha).first()
    if done:
        return StaffingResult("already_imported", done.pk, {"rows": done.rows})
    errors = check_columns(header, required=REQUIRED, optional=OPTIONAL)
    if not errors and not ({"staff_name", "employee_id"} & set(header)):
        errors.append("line 1: a staff_name or employee_id column is required")
    if not errors and not ({"study_instance_uid", "accession_number"} & set(header)) and not ({"room", "start", "end"} <= set(header)):
        errors.append("line 1: study_instance_uid, accession_number or room+start+end columns are required")
    if errors:
        raise StaffingImportError(errors, path.name)
    tzinfo = make_tzinfo(tz_name)
    plan: list[tuple[int, Study, StaffMember | None, str, str]] = []
    for line, row in rows:
        if "__error__" in row:
            errors.append(f"line {line}: {row['__error__']}")
            continue
        study, why = _find_study(row, tzinfo)
        if study is None:
            errors.append(f"line {line}: {why}")
            continue
        name, emp = row.get("staff_name", ""), row.get("employee_id", "")
        if not name and not emp:
            errors.append(f"line {line}: neither staff_name nor employee_id")
            continue
        staff = None
        if emp:
            staff = StaffMember.objects.filter(employee_id=emp).first()
            if staff is None:
                errors.append(f"line {line}: unknown employee_id {emp!r}")
                continue
        role = role_normalise(row["role"])
        plan.append((line, study, staff, name, role))
    if errors:
        raise StaffingImportError(errors, path.name)
    counts = {"rows": len(rows), "linked": 0, "queued": 0}
    staff_ids, study_ids = set(), set()
    with transaction.atomic():
        imp = StaffingImport.objects.create(sha256=sha, filename=path.name[:512], rows=len(rows))
        for line, study, staff, name, role in plan:
            if staff is None:
                staff, reason = staff_match(name)
                if staff is None:
                    unmatched_queue(study=study, raw_name=name, role=role, source=Participation.SRC_STAFFING, reason=reason)
                    counts["queued"] += 1
                    continue
            participation_link(study=study, staff=staff, role=role, source=Participation.SRC_STAFFING, raw_name=name or staff.employee_id)
            counts["linked"] += 1
            staff_ids.add(staff.pk)
            study_ids.add(study.pk)
        imp.summary = counts
        imp.save(update_fields=["summary"])
        if staff_ids:
            from .services import _after_participation_change

            _after_participation_change(staff_ids=staff_ids, study_ids=study_ids)
    counts["unmatched_open"] = UnmatchedName.objects.filter(status=UnmatchedName.STATUS_OPEN).count()
    return StaffingResult("imported", imp.pk, counts)
