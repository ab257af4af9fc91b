"""Bad dosimetry and staffing CSV files through the management commands: a clear, line-numbered error
(CommandError), nothing written. Only what tests/staff does not cover already (column names, unknown
badges, overlaps, future periods, malformed numbers and timestamps are there)."""
from __future__ import annotations

import pytest
from django.conf import settings as dj_settings
from django.core.management import CommandError, call_command

from dosereg.staff.models import DosimeterReading, DosimetryImport, Participation, StaffingImport
from tests.staff.conftest import BADGE_HEADER, STAFFING_HEADER, angio, make_study, people, write_csv  # noqa: F401

ON_POSTGRESQL = "postgresql" in dj_settings.DATABASES["default"]["ENGINE"]
GOOD_ROW = ["LX-1001", "collar", "E100", "", "2025-01-01", "2025-01-31", "0.5", "0.6", ""]


def refused(path, *fragments, fmt="badge_csv", command="import_dosimetry"):
    before = (DosimetryImport.objects.count(), DosimeterReading.objects.count(), StaffingImport.objects.count(),
              Participation.objects.count())
    args = [command, str(path)] + (["--format", fmt] if command == "import_dosimetry" else [])
    with pytest.raises(CommandError) as exc:
        call_command(*args)
    text = str(exc.value)
    for f in fragments:
        assert f in text, text
    after = (DosimetryImport.objects.count(), DosimeterReading.objects.count(), StaffingImport.objects.count(),
             Participation.objects.count())
    assert after == before, "a refused file must write nothing"
    return text


def test_empty_and_blank_files(people, tmp_path):
    for name, content in (("empty.csv", b""), ("blank.csv", b"\n \n\t\n"), ("bom-only.csv", b"\xef\xbb\xbf")):
        f = tmp_path / name
        f.write_bytes(content)
        refused(f, "line 1: empty file (no header row)")
        refused(f, "line 1: empty file (no header row)", fmt="realtime_csv")


def test_missing_file_is_a_clear_error(people, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_dosimetry", str(tmp_path / "nope.csv"), "--format", "badge_csv")
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_staffing", str(tmp_path / "nope.csv"))


def test_ragged_rows_and_duplicate_columns(people, tmp_path):
    f = tmp_path / "ragged.csv"
    f.write_text(",".join(BADGE_HEADER) + "\n" + ",".join(GOOD_ROW) + "\nLX-1002,waist,E100\n"
                 + ",".join(GOOD_ROW[:4] + ["2025-02-01", "2025-02-28", "0.1", "", "", "extra"]) + "\n")
    refused(f, "line 3: 3 fields, the header has 9", "line 4: 10 fields, the header has 9")
    f = write_csv(tmp_path / "dup.csv", BADGE_HEADER + ["hp10_msv"], [GOOD_ROW + ["0.5"]])
    refused(f, "line 1: duplicate column(s) hp10_msv")


@pytest.mark.parametrize("value", ["NaN", "inf", "-inf", "1e400"])
def test_non_finite_doses(people, tmp_path, value):
    row = GOOD_ROW[:6] + [value, "", ""]
    refused(write_csv(tmp_path / "nan.csv", BADGE_HEADER, [row]), f"line 2: hp10_msv '{value}' is not a finite number")


def test_spreadsheet_export_with_semicolons_and_decimal_commas_is_understood(people, tmp_path):
    """Not bad input: a European spreadsheet export. It must import, not be refused."""
    f = write_csv(tmp_path / "excel.csv", BADGE_HEADER, [GOOD_ROW[:6] + ["0,5", "0,6", ""]], delimiter=";")
    call_command("import_dosimetry", str(f), "--format", "badge_csv")
    assert DosimeterReading.objects.get(badge__badge_id="LX-1001", quantity="hp10").value_msv == 0.5


def test_binary_file_renamed_csv(people, tmp_path):
    f = tmp_path / "photo.csv"
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    refused(f, "not a text CSV")


def test_oversized_field(people, tmp_path):
    f = tmp_path / "huge.csv"
    f.write_text(",".join(BADGE_HEADER) + "\n" + ",".join(GOOD_ROW[:3] + ["x" * 200_000] + GOOD_ROW[4:]) + "\n")
    refused(f, "line 2")


def test_nul_bytes_in_cells(people, tmp_path):
    f = tmp_path / "nul.csv"
    f.write_bytes((",".join(BADGE_HEADER) + "\nLX-10\x0001,collar,E100,,2025-01-01,2025-01-31,0.5,,\n").encode())
    refused(f, "line 2:")


def test_absurd_badge_dose(people, tmp_path):
    refused(write_csv(tmp_path / "absurd.csv", BADGE_HEADER, [GOOD_ROW[:6] + ["1e30", "", ""]]), "line 2:")


# --- staffing lists -----------------------------------------------------------------------
def test_staffing_header_errors(people, tmp_path):
    refused(write_csv(tmp_path / "a.csv", ["staff_name", "accession_number"], [["Anna", "ACC1"]]),
            "line 1: missing column(s) role", command="import_staffing")
    refused(write_csv(tmp_path / "b.csv", ["role", "accession_number"], [["nurse", "ACC1"]]),
            "line 1: a staff_name or employee_id column is required", command="import_staffing")
    refused(write_csv(tmp_path / "c.csv", ["role", "staff_name", "room"], [["nurse", "Anna", "ANGIO1"]]),
            "line 1: study_instance_uid, accession_number or room+start+end columns are required", command="import_staffing")
    refused(write_csv(tmp_path / "d.csv", ["role", "staff_name", "accession_number", "shoe_size"], [["nurse", "Anna", "A", "9"]]),
            "line 1: unexpected column(s) shoe_size", command="import_staffing")


def test_staffing_row_errors_are_all_reported_and_nothing_is_linked(people, angio, tmp_path):
    make_study("1.2.826.0.1.3680043.10.1077.900", device=angio, accession="ACC-OK",
               events=[("2025-06-10 09:00:00", 30.0, 1.2)])
    rows = [
        ["ACC-OK", "", "", "", "", "Anna Müller", "E100", "first operator"],        # fine on its own
        ["ACC-NONE", "", "", "", "", "", "E100", "first operator"],                 # no such study
        ["ACC-OK", "", "", "", "", "", "E999", "nurse"],                            # unknown employee
        ["", "", "ANGIO1", "2025-06-10T10:00", "2025-06-10T09:00", "", "E200", "nurse"],  # end before start
        ["", "", "ANGIO1", "tomorrow", "2025-06-10T09:00", "", "E200", "nurse"],    # not a timestamp
        ["ACC-OK", "", "", "", "", "", "", "nurse"],                                # nobody
        ["", "", "", "", "", "", "E200", "nurse"],                                  # no way to find the study
    ]
    text = refused(write_csv(tmp_path / "list.csv", STAFFING_HEADER, rows), command="import_staffing")
    for fragment in ("line 3: accession number 'ACC-NONE' matches no study", "line 4: unknown employee_id 'E999'",
                     "line 5: end 2025-06-10T09:00 is before start 2025-06-10T10:00",
                     "line 6: 'tomorrow' is not an ISO 8601 timestamp", "line 7: neither staff_name nor employee_id",
                     "line 8: no study_instance_uid, accession_number or room+start+end"):
        assert fragment in text, text
    assert "line 2:" not in text
