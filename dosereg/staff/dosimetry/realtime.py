"""Real-time personal dosimeter exports (realtime_csv): timed samples per badge, matched to the badge's wearer.

realtime_csv columns:
    badge_id, timestamp and exactly one of dose_usv (increment since the previous sample) or
    cumulative_usv (the badge's accumulated Hp(10)); optional dose_rate_usv_h (ignored).
  timestamps: ISO 8601; without an offset they are read in --tz (default TIME_ZONE) or at a fixed
  --utc-offset (RaySafe/DoseAware log local time without DST).

New samples recompute the per-procedure staff doses (``dosereg.staff.occupational``) and the alerts in the
import's transaction.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..csv_files import check_columns, make_tzinfo, parse_timestamp
from ..models import BadgeWearPeriod, DosimeterBadge, DosimetryImport, RealtimeSample
from .common import (
    FUTURE_TOLERANCE, DosimetryImportError, ImportResult, badge_row_errors, dose_ceiling_msv, evaluate_alerts,
    file_already_imported, line_key, parse_dose, read_import_csv,
)


REALTIME_REQUIRED = {"badge_id", "timestamp"}
REALTIME_OPTIONAL = {"dose_rate_usv_h", "employee_id"}
REALTIME_VALUE = {"dose_usv", "cumulative_usv"}


def import_realtime_csv(
    path: Path | str, *, tz_name: str | None = None, utc_offset: str | None = None, now: datetime | None = None
) -> ImportResult:
    path = Path(path)
    sha, header, rows = read_import_csv(path, DosimetryImportError)
    done = file_already_imported(sha)
    if done:
        return ImportResult("already_imported", done.pk, {"rows": done.rows})
    errors = check_columns(header, required=REALTIME_REQUIRED, optional=REALTIME_OPTIONAL, one_of=[REALTIME_VALUE])
    if errors:
        raise DosimetryImportError(errors, path.name)
    cumulative = "cumulative_usv" in header
    ceiling_usv = dose_ceiling_msv() * 1000.0  # per sample (increment), or the badge's accumulated value
    tzinfo = make_tzinfo(tz_name, utc_offset)
    now = now or timezone.now()
    badges = {b.badge_id: b for b in DosimeterBadge.objects.filter(badge_id__in={r.get("badge_id", "") for _, r in rows})}
    wear: dict[int, list[BadgeWearPeriod]] = {}
    for wp in BadgeWearPeriod.objects.filter(badge__in=list(badges.values())).order_by("start"):
        wear.setdefault(wp.badge_id, []).append(wp)
    parsed: dict[str, list[tuple[datetime, float, int, int]]] = {}  # badge -> [(ts, value, staff_id, line)]
    seen: dict[tuple[str, datetime], int] = {}
    for line, row in rows:
        if "__error__" in row:
            errors.append(f"line {line}: {row['__error__']}")
            continue
        bid = row["badge_id"]
        badge = badges.get(bid)
        row_errors = badge_row_errors(bid, badge, DosimeterBadge.KIND_REALTIME)
        ts = None
        try:
            ts = parse_timestamp(row["timestamp"], tzinfo)
            if ts > now + FUTURE_TOLERANCE:
                row_errors.append(f"timestamp {row['timestamp']} is in the future")
        except ValueError as exc:
            row_errors.append(str(exc))
        value = None
        col = "cumulative_usv" if cumulative else "dose_usv"
        try:
            value = parse_dose(row[col], col, ceiling=ceiling_usv, unit="µSv")
        except ValueError as exc:
            row_errors.append(str(exc))
        staff_id = None
        if badge and ts:
            day = timezone.localtime(ts).date()
            worn = next((w for w in wear.get(badge.pk, []) if w.start <= day and (w.end is None or day <= w.end)), None)
            if worn is None:
                row_errors.append(f"badge {bid} is not assigned to a staff member on {day}")
            else:
                staff_id = worn.staff_id
        if badge and ts and (bid, ts) in seen:
            row_errors.append(f"duplicate sample for badge {bid} at {row['timestamp']} (also line {seen[(bid, ts)]})")
        if row_errors:
            errors.extend(f"line {line}: {e}" for e in row_errors)
            continue
        assert ts is not None and value is not None and staff_id is not None  # no row error
        seen[(bid, ts)] = line
        parsed.setdefault(bid, []).append((ts, value, staff_id, line))
    warnings: list[str] = []
    samples: list[tuple[DosimeterBadge, datetime, float, float | None, int, int]] = []
    for bid, items in parsed.items():
        items.sort(key=lambda x: x[0])
        badge = badges[bid]
        prev_cum = None
        if cumulative and items:
            before = (
                RealtimeSample.objects.filter(badge=badge, timestamp__lt=items[0][0], cumulative_usv__isnull=False)
                .order_by("-timestamp").first()
            )
            prev_cum = before.cumulative_usv if before else None
        for ts, value, staff_id, line in items:
            if cumulative:
                if prev_cum is None:
                    inc = 0.0  # first reading of this badge: a baseline, its earlier dose is not attributable
                    warnings.append(f"line {line}: first cumulative sample of badge {bid} taken as baseline (increment 0)")
                elif value < prev_cum:
                    inc = value  # the badge's counter was reset: dose since the reset
                    warnings.append(f"line {line}: cumulative dose of badge {bid} went down ({prev_cum} -> {value}): counter reset")
                else:
                    inc = value - prev_cum
                prev_cum = value
                samples.append((badge, ts, inc, value, staff_id, line))
            else:
                samples.append((badge, ts, value, None, staff_id, line))
    # conflicts with samples already stored
    existing = {}
    if samples:
        lo = min(s[1] for s in samples)
        hi = max(s[1] for s in samples)
        existing = {
            (r.badge_id, r.timestamp): r
            for r in RealtimeSample.objects.filter(badge__in=list(badges.values()), timestamp__gte=lo, timestamp__lte=hi)
        }
    to_create = []
    unchanged = 0
    for badge, ts, inc, cum, staff_id, line in samples:
        old = existing.get((badge.pk, ts))
        if old is None:
            to_create.append((badge, ts, inc, cum, staff_id, line))
            continue
        same = (old.cumulative_usv == cum) if cumulative and old.cumulative_usv is not None else abs(old.increment_usv - inc) < 1e-9
        if same:
            unchanged += 1
        else:
            errors.append(
                f"line {line}: sample of badge {badge.badge_id} at {ts.isoformat()} conflicts with the one imported before "
                f"({old.cumulative_usv if cumulative else old.increment_usv} µSv)"
            )
    if errors:
        raise DosimetryImportError(sorted(errors, key=line_key), path.name)

    counts = {"rows": len(rows), "created": len(to_create), "unchanged": unchanged, "mode": "cumulative" if cumulative else "increment"}
    try:
        return _write_samples(path, sha, rows, to_create, counts, warnings)
    except IntegrityError:
        done = file_already_imported(sha)  # the same file imported concurrently: that import won
        if done:
            return ImportResult("already_imported", done.pk, {"rows": done.rows})
        raise


def _write_samples(path: Path, sha: str, rows, to_create, counts: dict, warnings: list[str]) -> ImportResult:
    staff_ids = {s[4] for s in to_create}
    with transaction.atomic():
        imp = DosimetryImport.objects.create(
            sha256=sha, filename=path.name[:512], format=DosimetryImport.FORMAT_REALTIME, rows=len(rows),
            summary={**counts, "warnings": warnings[:100]},
        )
        RealtimeSample.objects.bulk_create(
            [RealtimeSample(badge=b, staff_id=s, timestamp=ts, increment_usv=inc, cumulative_usv=cum, source_import=imp, source_line=ln)
             for b, ts, inc, cum, s, ln in to_create],
            batch_size=1000,
        )
        if to_create:
            from ..occupational import procedure_doses_recompute

            lo = min(s[1] for s in to_create)
            hi = max(s[1] for s in to_create)
            procedure_doses_recompute(staff_ids=staff_ids, since=lo - timedelta(days=1), until=hi + timedelta(days=1))
        evaluate_alerts(staff_ids)
    return ImportResult("imported", imp.pk, counts, warnings, staff_ids)
