"""dosereg.staff.csv_files.read_csv and the plausibility ceiling (issue 7): what test_bad_csv.py pins,
plus the encodings that must keep working and the staffing import sharing the same reader."""
from __future__ import annotations

import codecs

import pytest
from django.core.management import CommandError, call_command

from dosereg.staff.config import setting_set
from dosereg.staff.dosimetry.badges import import_badge_csv
from dosereg.staff.dosimetry.common import DOSE_CEILING_SETTING, DosimetryImportError
from dosereg.staff.dosimetry.realtime import import_realtime_csv
from dosereg.staff.models import DosimeterReading, RealtimeSample
from dosereg.staff.staffing import StaffingImportError, import_staffing
from tests.staff.conftest import BADGE_HEADER, REALTIME_HEADER, STAFFING_HEADER, people, write_csv  # noqa: F401

GOOD_ROW = ["LX-1001", "collar", "E100", "", "2025-01-01", "2025-01-31", "0.5", "0.6", ""]


def _badge_text(rows, sep=",") -> str:
    return "\r\n".join(sep.join(r) for r in [BADGE_HEADER, *rows]) + "\r\n"


def test_utf16_with_a_bom_is_read(people, tmp_path):
    """Spreadsheet "Unicode text" export: UTF-16LE with a BOM, tab separated."""
    f = tmp_path / "unicode.txt"
    f.write_bytes(codecs.BOM_UTF16_LE + _badge_text([GOOD_ROW], sep="\t").encode("utf-16-le"))
    call_command("import_dosimetry", str(f), "--format", "badge_csv")
    assert DosimeterReading.objects.get(badge__badge_id="LX-1001", quantity="hp10").value_msv == 0.5


def test_windows_1252_is_still_read(people, tmp_path):
    f = tmp_path / "cp1252.csv"
    f.write_bytes(_badge_text([GOOD_ROW[:3] + ["MÜLLER^ANNA"] + GOOD_ROW[4:]]).encode("cp1252"))
    call_command("import_dosimetry", str(f), "--format", "badge_csv")
    assert DosimeterReading.objects.filter(badge__badge_id="LX-1001").count() == 2


@pytest.mark.parametrize("content, fragment", [
    (_badge_text([GOOD_ROW]).encode("utf-16-le"), "line 1: not a text CSV: it looks like UTF-16 without a byte order mark"),
    (codecs.BOM_UTF16_LE + b"b\x00a\x00\x00\xdc", "not a text CSV: invalid UTF-16"),
    (_badge_text([GOOD_ROW]).encode() + b"LX-1002,\x81\x8d\x90,E100\r\n", "line 3: not a text CSV: byte 0x81"),
    (b"\x1f\x8b\x08\x00" + bytes(range(32)) * 4, "not a text CSV: "),
])
def test_files_that_are_not_text_are_refused_with_a_line(people, tmp_path, content, fragment):
    f = tmp_path / "bad.csv"
    f.write_bytes(content)
    with pytest.raises(CommandError) as exc:
        call_command("import_dosimetry", str(f), "--format", "badge_csv")
    assert fragment in str(exc.value), str(exc.value)
    assert not DosimeterReading.objects.exists()


def test_nul_is_a_row_error_and_the_other_rows_are_still_checked(people, tmp_path):
    f = tmp_path / "nul.csv"
    f.write_text(_badge_text([GOOD_ROW, ["LX-1002", "waist", "E1\x0000"] + GOOD_ROW[3:], ["LX-9999"] + GOOD_ROW[1:]]))
    with pytest.raises(CommandError) as exc:
        call_command("import_dosimetry", str(f), "--format", "badge_csv")
    text = str(exc.value)
    assert "line 3: a NUL character in column(s) employee_id" in text and "line 4: unknown badge 'LX-9999'" in text, text
    assert not DosimeterReading.objects.exists()


def test_ceiling_is_configurable_and_applies_to_every_quantity(people, tmp_path):
    rows = [GOOD_ROW[:6] + ["", "", "12000"]]
    with pytest.raises(DosimetryImportError, match="line 2: hp007_msv '12000' is above the plausibility ceiling of 10000 mSv"):
        import_badge_csv(write_csv(tmp_path / "a.csv", BADGE_HEADER, rows))
    setting_set(DOSE_CEILING_SETTING, 20_000, unit="mSv", citation="local decision (test)")
    call_command("import_dosimetry", str(write_csv(tmp_path / "b.csv", BADGE_HEADER, rows)), "--format", "badge_csv")
    assert DosimeterReading.objects.get(badge__badge_id="LX-1001", quantity="hp007").value_msv == 12000


def test_realtime_samples_have_the_ceiling_too(people, tmp_path):
    f = write_csv(tmp_path / "rt.csv", REALTIME_HEADER, [["RS-A", "2025-01-10T09:00:00", "2e10", ""]])
    with pytest.raises(DosimetryImportError, match="line 2: dose_usv '2e10' is above the plausibility ceiling of 1e\\+07 µSv"):
        import_realtime_csv(f)
    assert not RealtimeSample.objects.exists()


def test_staffing_lists_share_the_reader(people, tmp_path):
    f = tmp_path / "list.csv"
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(StaffingImportError, match="not a text CSV"):
        import_staffing(f)
    f.write_text(",".join(STAFFING_HEADER) + "\n" + "ACC1,,,,," + "x" * 200_000 + ",E100,nurse\n")
    with pytest.raises(CommandError, match="line 2: malformed CSV"):
        call_command("import_staffing", str(f))
    f.write_text(",".join(STAFFING_HEADER) + "\nACC\x001,,,,,Anna,,nurse\n")
    with pytest.raises(CommandError, match="line 2: a NUL character in column\\(s\\) accession_number"):
        call_command("import_staffing", str(f))
