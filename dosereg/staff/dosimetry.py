"""Dosimetry imports: periodic badge reports and real-time personal dosimeter exports.

Both imports are all-or-nothing: every row is validated first, every problem is reported with
its line number, and the rows are written in one transaction only when there is none.
Re-importing a file with the same SHA-256 changes nothing; rows already stored under their
natural key (badge + wear period + quantity; badge + timestamp) with the same values are left alone.

badge_csv columns (header row required, case-insensitive, any order):
    badge_id, wear_start, wear_end, hp10_msv, hp3_msv, hp007_msv      (required)
    position, employee_id, name                                       (optional; checked when present)
  dose cells: a number in mSv, "M" (below the minimum reportable dose: censored), "Unused"
  (returned unworn) or empty (quantity not reported). Dates: YYYY-MM-DD, inclusive.

realtime_csv columns:
    badge_id, timestamp and exactly one of dose_usv (increment since the previous sample) or
    cumulative_usv (the badge's accumulated Hp(10)); optional dose_rate_usv_h (ignored).
  timestamps: ISO 8601; without an offset they are read in --tz (default TIME_ZONE) or at a fixed
  --utc-offset (RaySafe/DoseAware log local time without DST).

Files (both formats, and the staffing lists): UTF-8 (with or without BOM), UTF-16 with a BOM
(spreadsheet "Unicode text") or Windows-1252; ``,``, ``;`` or tab separated. A file that is not
text, a malformed CSV structure (a cell over 128 KiB) or a NUL character is refused with its line
number. A dose above the plausibility ceiling (``DOSE_CEILING_MSV``) is refused with its line.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .config import setting_value
from .models import (
    POS_COLLAR,
    POS_EYE,
    POS_RING,
    POS_WAIST,
    Q_HP3,
    Q_HP007,
    Q_HP10,
    BadgeWearPeriod,
    DosimeterBadge,
    DosimeterReading,
    DosimetryImport,
    RealtimeSample,
)

POSITION_WORDS = {
    POS_COLLAR: {"collar", "over_apron", "over apron", "overapron", "outside_apron", "thyroid", "chest_over"},
    POS_WAIST: {"waist", "under_apron", "under apron", "underapron", "trunk", "chest", "body", "whole_body", "whole body"},
    POS_EYE: {"eye", "eyes", "head", "lens", "eye_lens", "forehead", "glasses"},
    POS_RING: {"ring", "finger", "extremity", "hand", "wrist", "ring_left", "ring_right"},
}
FUTURE_TOLERANCE = timedelta(minutes=5)

# Plausibility ceiling for one reading: a badge wear period (badge_csv, any of Hp(10), Hp(3), Hp(0.07)) or one
# real-time sample (realtime_csv, increment or cumulative value). 10 Sv = 10,000 mSv is far above any
# occupational exposure a person survives without acute radiation syndrome, and 20x the annual extremity
# limit (500 mSv); a value above it is a data error (µSv read as mSv, a corrupt export), never a dose of
# record, and importing it would raise dose-limit alerts. Override per installation with the staff setting
# DOSE_CEILING_SETTING (value in mSv) through config.setting_set.
DOSE_CEILING_MSV = 10_000.0
DOSE_CEILING_SETTING = "dosimetry.plausibility_ceiling_msv"


def canonical_position(text: str) -> str | None:
    t = (text or "").strip().lower().replace("-", "_")
    for pos, words in POSITION_WORDS.items():
        if t == pos or t in words or t.replace("_", " ") in words:
            return pos
    return None


class DosimetryImportError(Exception):
    """The file was refused; ``errors`` are "line N: ..." messages. Nothing was written."""

    def __init__(self, errors: list[str], filename: str = ""):
        self.errors = errors
        self.filename = filename
        head = f"{filename}: " if filename else ""
        super().__init__(head + f"{len(errors)} error(s), nothing imported:\n" + "\n".join(errors[:200]))


@dataclass
class ImportResult:
    status: str  # imported | already_imported
    import_id: int
    counts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    staff_ids: set[int] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"status": self.status, "import_id": self.import_id, "counts": self.counts, "warnings": self.warnings}


# ---------------------------------------------------------------------------
# CSV helpers (shared with the staffing import)
# ---------------------------------------------------------------------------
class CsvReadError(Exception):
    """The file cannot be read as a CSV at all (not text, broken structure). ``errors``: "line N: ..."."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


# C0 control characters other than tab, LF, CR: a text CSV has next to none
_CONTROL = {c for c in range(32) if c not in (9, 10, 13)}


def _line_of(data: bytes, offset: int, newline: bytes = b"\n") -> int:
    return data.count(newline, 0, offset) + 1


def _decode(data: bytes) -> str:
    """UTF-8 (BOM or not), UTF-16 with a BOM, else Windows-1252; anything else is not a text CSV."""
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                line = data[: exc.start].decode(codec, "replace").count("\n") + 1
                raise CsvReadError([f"line {line}: not a text CSV: invalid {codec.upper()} data "
                                    f"(the file starts with a {codec.upper()} byte order mark)"]) from None
    sample = data[:65536]
    if len(sample) >= 4 and sample.count(0) * 4 >= len(sample):  # every 2nd byte NUL: UTF-16 without a BOM
        raise CsvReadError(["line 1: not a text CSV: it looks like UTF-16 without a byte order mark; "
                            "save it as UTF-8 (or UTF-16 with a BOM)"])
    # a few stray control characters are row errors (NUL) or harmless; many mean a binary file
    controls = [i for i, b in enumerate(sample) if b in _CONTROL]
    if len(controls) > max(8, len(sample) // 100):
        raise CsvReadError([f"line {_line_of(data, controls[0])}: not a text CSV: {len(controls)} control characters "
                            f"in the first {len(sample)} bytes (a binary file, or a spreadsheet saved as .csv?)"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_exc:
        try:
            return data.decode("cp1252")  # spreadsheet exports
        except UnicodeDecodeError as exc:
            raise CsvReadError([f"line {_line_of(data, exc.start)}: not a text CSV: byte 0x{data[exc.start]:02X} "
                                f"is neither UTF-8 nor Windows-1252 text (first invalid UTF-8 byte on line "
                                f"{_line_of(data, utf8_exc.start)})"]) from None


def read_csv(path: Path | str) -> tuple[str, list[str], list[tuple[int, dict[str, str]]]]:
    """(sha256, lower-cased header, [(line, row)]). A row that cannot be used is ``{"__error__": why}``.

    Raises CsvReadError when the file as a whole cannot be read (not text, broken CSV structure, a NUL
    character in the header); FileNotFoundError when there is no file."""
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    text = _decode(data)
    sample = text[:4096]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows: list[tuple[int, dict[str, str]]] = []
    header: list[str] = []
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field larger than csv.field_size_limit(): the rest cannot be parsed
            raise CsvReadError([f"line {max(reader.line_num, 1)}: malformed CSV ({exc}); nothing after it was read"]) from None
        line = reader.line_num
        if not header:
            if not any(c.strip() for c in record):
                continue
            if any("\x00" in c for c in record):
                raise CsvReadError([f"line {line}: the header contains a NUL character (not a text CSV?)"])
            header = [c.strip().lower() for c in record]
            continue
        if not any(c.strip() for c in record):
            continue
        if len(record) != len(header):
            rows.append((line, {"__error__": f"{len(record)} fields, the header has {len(header)}"}))
            continue
        nul = [h for h, v in zip(header, record) if "\x00" in v]
        if nul:  # no database stores a NUL in text; it is never part of a badge id, name or number
            rows.append((line, {"__error__": f"a NUL character in column(s) {', '.join(nul)}"}))
            continue
        rows.append((line, {h: (v or "").strip() for h, v in zip(header, record)}))
    return sha, header, rows


def read_import_csv(path: Path, error_class: type[DosimetryImportError]):
    """read_csv for an import: a file that cannot be read is refused as ``error_class`` (nothing written)."""
    try:
        return read_csv(path)
    except CsvReadError as exc:
        raise error_class(exc.errors, path.name) from None


def check_columns(header: list[str], *, required: set[str], optional: set[str], one_of: tuple[set[str], ...] | list[set[str]] = ()) -> list[str]:
    errors = []
    if not header:
        return ["line 1: empty file (no header row)"]
    missing = sorted(required - set(header))
    known = required | optional | set().union(*one_of) if one_of else required | optional
    unknown = sorted(set(header) - known)
    dup = sorted({h for h in header if header.count(h) > 1})
    if missing:
        errors.append(f"line 1: missing column(s) {', '.join(missing)}")
    if unknown:
        errors.append(f"line 1: unexpected column(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    if dup:
        errors.append(f"line 1: duplicate column(s) {', '.join(dup)}")
    for group in one_of:
        present = group & set(header)
        if len(present) != 1:
            errors.append(f"line 1: exactly one of the columns {', '.join(sorted(group))} is required (found {len(present)})")
    return errors


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


def make_tzinfo(tz_name: str | None = None, utc_offset: str | None = None):
    if utc_offset:
        sign = -1 if utc_offset.strip().startswith("-") else 1
        hh, _, mm = utc_offset.strip().lstrip("+-").partition(":")
        return dt_timezone(sign * timedelta(hours=int(hh), minutes=int(mm or 0)))
    return ZoneInfo(tz_name or str(settings.TIME_ZONE))


def parse_timestamp(text: str, tzinfo) -> datetime:
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tzinfo)
    return value


def _number(text: str, what: str, *, ceiling: float | None = None, unit: str = "") -> float:
    try:
        value = float(text.replace(",", ".")) if text.count(",") == 1 and "." not in text else float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{what} {text!r} is negative")
    if ceiling is not None and value > ceiling:
        raise ValueError(f"{what} {text!r} is above the plausibility ceiling of {ceiling:g} {unit} "
                         f"(staff setting {DOSE_CEILING_SETTING}): a unit or data error?")
    return value


def dose_ceiling_msv() -> float:
    """The plausibility ceiling in mSv: the staff setting when configured, else DOSE_CEILING_MSV."""
    value = setting_value(DOSE_CEILING_SETTING, default=None)
    return float(value) if value is not None else DOSE_CEILING_MSV


def file_already_imported(sha: str) -> DosimetryImport | None:
    return DosimetryImport.objects.filter(sha256=sha).first()


# ---------------------------------------------------------------------------
# badge reports
# ---------------------------------------------------------------------------
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
        row_errors: list[str] = []
        bid = row["badge_id"]
        badge = badges.get(bid)
        if not bid:
            row_errors.append("badge_id is empty")
        elif badge is None:
            row_errors.append(f"unknown badge {bid!r} (register it and its wear periods first)")
        elif badge.kind != DosimeterBadge.KIND_PASSIVE:
            row_errors.append(f"badge {bid!r} is a real-time dosimeter; import its data with --format realtime_csv")
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
                    values[q] = (_number(cell, col, ceiling=ceiling, unit="mSv per wear period"), False, False)
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
        raise DosimetryImportError(sorted(errors, key=_line_key), path.name)

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
            from .occupational import effective_doses_recompute

            effective_doses_recompute(staff_ids=staff_ids)
        _evaluate(staff_ids)
    return ImportResult("imported", imp.pk, counts, staff_ids=staff_ids)


def _line_key(msg: str) -> int:
    try:
        return int(msg.split(":", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0


def _evaluate(staff_ids: set[int]) -> None:
    """Alerts are evaluated in the import's transaction; their e-mails are sent after commit."""
    if staff_ids:
        from .alerts import staff_alerts_evaluate

        staff_alerts_evaluate(staff_ids=set(staff_ids))


# ---------------------------------------------------------------------------
# real-time dosimeters
# ---------------------------------------------------------------------------
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
        row_errors = []
        bid = row["badge_id"]
        badge = badges.get(bid)
        if not bid:
            row_errors.append("badge_id is empty")
        elif badge is None:
            row_errors.append(f"unknown badge {bid!r} (register it and its wear periods first)")
        elif badge.kind != DosimeterBadge.KIND_REALTIME:
            row_errors.append(f"badge {bid!r} is a passive dosimeter; import its reports with --format badge_csv")
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
            value = _number(row[col], col, ceiling=ceiling_usv, unit="µSv")
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
        raise DosimetryImportError(sorted(errors, key=_line_key), path.name)

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
            from .occupational import procedure_doses_recompute

            lo = min(s[1] for s in to_create)
            hi = max(s[1] for s in to_create)
            procedure_doses_recompute(staff_ids=staff_ids, since=lo - timedelta(days=1), until=hi + timedelta(days=1))
        _evaluate(staff_ids)
    return ImportResult("imported", imp.pk, counts, warnings, staff_ids)


def import_dosimetry(path: Path | str, *, fmt: str, **kwargs) -> ImportResult:
    if fmt == DosimetryImport.FORMAT_BADGE:
        return import_badge_csv(path, **{k: v for k, v in kwargs.items() if k in ("today",)})
    if fmt == DosimetryImport.FORMAT_REALTIME:
        return import_realtime_csv(path, **{k: v for k, v in kwargs.items() if k in ("tz_name", "utc_offset", "now")})
    raise DosimetryImportError([f"unknown format {fmt!r}; expected badge_csv or realtime_csv"])
