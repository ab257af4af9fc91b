"""Periodic badge reports (badge_csv): one dose per badge, wear period and quantity, matched to the badge's wearer.

badge_csv columns (header row required, case-insensitive, any order):
    badge_id, wear_start, wear_end, hp10_msv, hp3_msv, hp007_msv      (required)
    position, employee_id, name                                       (optional; checked when present)
  dose cells: a number in mSv, "M" (below the minimum reportable dose: censored), "Unused"
  (returned unworn) or empty (quantity not reported). Dates: YYYY-MM-DD, inclusive.

New and corrected readings recompute the wearers' effective doses (``dosereg.staff.occupational``) and their
alerts in the import's transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..config import setting_value
from ..csv_files import check_columns, parse_date
from ..models import Q_HP3, Q_HP007, Q_HP10, BadgeWearPeriod, DosimeterBadge, DosimeterReading, DosimetryImport
from .common import (
    DosimetryImportError, ImportResult, badge_row_errors, canonical_position, dose_ceiling_msv, evaluate_alerts,
    file_already_imported, line_key, parse_dose, read_import_csv,
)


BADGE_REQUIRED = {"badge_id", "wear_start", "wear_end", "hp10_msv", "hp3_msv", "hp007_msv"}
BADGE_OPTIONAL = {"position", "employee_id", "name"}
QUANTITY_COLUMNS = {Q_HP10: "hp10_msv", Q_HP3: "hp3_msv", Q_HP007: "hp007_msv"}
CENSORED_WORDS = {"m", "<mrd", "minimal", "below mrd", "bdl"}
UNUSED_WORDS = {"unused", "u", "not worn", "unworn", "nw"}


@dataclass
class _Reading:
    line: int
    badge: DosimeterBadge
    staff_id: int
    start: date
    end: date
    quantity: str
    value: float | None
    censored: bool
    unused: bool


def import_badge_csv(path: Path | str, *, today: date | None = None) -> ImportResult:
    path = Path(path)
    sha, header, rows = read_import_csv(path, DosimetryImportError)
    done = file_already_imported(sha)
    if done:
        return ImportResult("already_imported", done.pk, {"rows": done.rows})
    errors = check_columns(header, required=BADGE_REQUIRED, optional=BADGE_OPTIONAL)
    if errors:
        raise DosimetryImportError(errors, path.name)
    today = today or timezone.localdate()
    thresholds = {q: setting_value(f"dosimetry.minimum_reportable.{q}", default=None) for q in QUANTITY_COLUMNS}
    ceiling = dose_ceiling_msv()
    badges = {b.badge_id: b for b in DosimeterBadge.objects.filter(badge_id__in={r.get("badge_id", "") for _, r in rows})}
    readings: list[_Reading] = []
    periods: dict[str, list[tuple[date, date, int]]] = {}
    for line, row in rows:
        if "__error__" in row:
            errors.append(f"line {line}: {row['__error__']}")
            continue
        bid = row["badge_id"]
        badge = badges.get(bid)
        row_errors: list[str] = badge_row_errors(bid, badge, DosimeterBadge.KIND_PASSIVE)
        start = end = None
        try:
            start = parse_date(row["wear_start"])
            end = parse_date(row["wear_end"])
        except ValueError as exc:
            row_errors.append(f"wear period: {exc}")
        if start and end:
            if end < start:
                row_errors.append(f"wear_end {end} is before wear_start {start}")
            if end > today or start > today:
                row_errors.append(f"wear period {start}..{end} is in the future (today is {today})")
        if badge and row.get("position"):
            pos = canonical_position(row["position"])
            if pos is None:
                row_errors.append(f"unknown position {row['position']!r}")
            elif pos != badge.position:
                row_errors.append(f"position {row['position']!r} does not match badge {bid} ({badge.position})")
        staff_id = None
        if badge and start and end and end >= start:
            wp = (
                BadgeWearPeriod.objects.filter(badge=badge, start__lte=start)
                .filter(Q(end__isnull=True) | Q(end__gte=end)).select_related("staff").first()
            )
            if wp is None:
                row_errors.append(f"badge {bid} is not assigned to one staff member for the whole wear period {start}..{end}")
            else:
                staff_id = wp.staff_id
                if row.get("employee_id") and row["employee_id"] != wp.staff.employee_id:
                    row_errors.append(
                        f"employee_id {row['employee_id']!r} does not match the wearer of badge {bid} ({wp.staff.employee_id})"
                    )
        values = {}
        for q, col in QUANTITY_COLUMNS.items():
            cell = row[col]
            low = cell.lower()
            if cell == "":
                continue
            if low in CENSORED_WORDS:
                values[q] = (thresholds[q], True, False)
            elif low in UNUSED_WORDS:
                values[q] = (None, False, True)
            else:
                try:
                    values[q] = (parse_dose(cell, col, ceiling=ceiling, unit="mSv per wear period"), False, False)
                except ValueError as exc:
                    row_errors.append(str(exc))
        if not values and not row_errors:
            row_errors.append("no dose value in hp10_msv, hp3_msv or hp007_msv")
        if row_errors:
            errors.extend(f"line {line}: {e}" for e in row_errors)
            continue
        # no row error: the badge, its wearer and the wear period are known
        assert badge is not None and staff_id is not None and start is not None and end is not None
        # overlapping wear periods of the same badge within the file
        for (s, e, other_line) in periods.get(bid, []):
            if (s, e) == (start, end):
                errors.append(f"line {line}: duplicate wear period {start}..{end} for badge {bid} (also line {other_line})")
                break
            if s <= end and start <= e:
                errors.append(f"line {line}: wear period {start}..{end} of badge {bid} overlaps {s}..{e} on line {other_line}")
                break
        else:
            periods.setdefault(bid, []).append((start, end, line))
            for q, (value, censored, unused) in values.items():
                readings.append(_Reading(line, badge, staff_id, start, end, q, value, censored, unused))
    # overlaps with wear periods already imported
    for bid, plist in periods.items():
        badge = badges[bid]
        for (start, end, line) in plist:
            clash = (
                DosimeterReading.objects.filter(badge=badge, period_start__lte=end, period_end__gte=start)
                .exclude(period_start=start, period_end=end).select_related("source_import").first()
            )
            if clash:
                errors.append(
                    f"line {line}: wear period {start}..{end} of badge {bid} overlaps the imported period "
                    f"{clash.period_start}..{clash.period_end} (file {clash.source_import.filename})"
                )
    if errors:
        raise DosimetryImportError(sorted(errors, key=line_key), path.name)

    try:
        return _write_badge_readings(path, sha, rows, readings, badges)
    except IntegrityError:
        done = file_already_imported(sha)  # the same file imported concurrently: that import won
        if done:
            return ImportResult("already_imported", done.pk, {"rows": done.rows})
        raise


def _write_badge_readings(path: Path, sha: str, rows, readings: list[_Reading], badges) -> ImportResult:
    counts = {"rows": len(rows), "created": 0, "unchanged": 0, "corrected": 0, "censored": 0, "unused": 0}
    staff_ids: set[int] = set()
    with transaction.atomic():
        imp = DosimetryImport.objects.create(sha256=sha, filename=path.name[:512], format=DosimetryImport.FORMAT_BADGE, rows=len(rows))
        existing = {
            (r.badge_id, r.period_start, r.period_end, r.quantity): r
            for r in DosimeterReading.objects.select_for_update().filter(badge__in=[b for b in badges.values()])
        }
        new = []
        for r in readings:
            counts["censored"] += r.censored
            counts["unused"] += r.unused
            old = existing.get((r.badge.pk, r.start, r.end, r.quantity))
            if old is None:
                new.append(DosimeterReading(
                    badge=r.badge, staff_id=r.staff_id, position=r.badge.position, period_start=r.start, period_end=r.end,
                    quantity=r.quantity, value_msv=r.value, is_censored=r.censored, unused=r.unused,
                    source_import=imp, source_line=r.line,
                ))
                staff_ids.add(r.staff_id)
            elif (old.value_msv, old.is_censored, old.unused, old.staff_id) == (r.value, r.censored, r.unused, r.staff_id):
                counts["unchanged"] += 1
            else:  # a corrected report from the dosimetry service
                old.value_msv, old.is_censored, old.unused = r.value, r.censored, r.unused
                old.staff_id, old.source_import, old.source_line = r.staff_id, imp, r.line
                old.save()
                counts["corrected"] += 1
                staff_ids.add(r.staff_id)
        DosimeterReading.objects.bulk_create(new, batch_size=500)
        counts["created"] = len(new)
        imp.summary = counts
        imp.save(update_fields=["summary"])
        if staff_ids:
            from ..occupational import effective_doses_recompute

            effective_doses_recompute(staff_ids=staff_ids)
        evaluate_alerts(staff_ids)
    return ImportResult("imported", imp.pk, counts, staff_ids=staff_ids)
