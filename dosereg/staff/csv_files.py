"""Reading the staff app's CSV files (dosimetry imports and staffing lists): encodings, dialect, line numbers.

Files: UTF-8 (with or without BOM), UTF-16 with a BOM (spreadsheet "Unicode text") or Windows-1252; ``,``, ``;``
or tab separated. A file that is not text, a malformed CSV structure (a cell over 128 KiB) or a NUL character is
refused with its line number (``CsvReadError``); a row that cannot be used is kept as ``{"__error__": why}`` for
the caller to report. Also the column check and the date / timestamp parsing the imports share.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
from datetime import date, datetime, timedelta, timezone as dt_timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from django.conf import settings


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
