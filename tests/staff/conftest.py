"""Staff-exposure fixtures: people, badges, procedures, and the files a dosimetry service, a real-time
dosimeter system and a theatre list would produce (generated here, written to tmp_path)."""
from __future__ import annotations

import csv
from datetime import date, datetime, timezone as dt_timezone
from pathlib import Path

import pytest

from dosereg.registry.models import Device, DoseObject, IrradiationEvent, Study
from dosereg.staff.models import DosimeterBadge
from dosereg.staff.services import badge_assign, badge_create, staff_create

UTC = dt_timezone.utc


def at(text: str) -> datetime:
    """'2025-06-10 09:00:00' in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def write_csv(path: Path, header: list[str], rows: list[list], *, delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(header)
        for r in rows:
            w.writerow(r)
    return path


BADGE_HEADER = ["badge_id", "position", "employee_id", "name", "wear_start", "wear_end", "hp10_msv", "hp3_msv", "hp007_msv"]
REALTIME_HEADER = ["badge_id", "timestamp", "dose_usv", "dose_rate_usv_h"]
STAFFING_HEADER = ["accession_number", "study_instance_uid", "room", "start", "end", "staff_name", "employee_id", "role"]


def make_study(uid: str, *, device: Device | None = None, events: list[tuple[str, float | None, float]] = (),
               study_datetime: str | None = None, accession: str = "", dap_total: float | None = None) -> Study:
    """A registry study built directly (as the ingest would leave it): events = [(time, duration_s, dap)]."""
    first = events[0][0] if events else study_datetime
    study = Study.objects.create(
        study_instance_uid=uid, device=device, accession_number=accession, procedure_modality="XA",
        study_datetime=at(study_datetime or first) if (study_datetime or first) else None,
        dap_total_gy_cm2=dap_total if dap_total is not None else (sum(e[2] for e in events) if events else None),
        event_count=len(events),
    )
    obj = DoseObject.objects.create(sop_instance_uid=f"{uid}.1", path="/dev/null", sha256=uid[-16:].rjust(16, "0"),
                                    status=DoseObject.STATUS_INGESTED, study=study, device=device)
    IrradiationEvent.objects.bulk_create([
        IrradiationEvent(study=study, dose_object=obj, irradiation_event_uid=f"{uid}.e{i}", datetime=at(t),
                         irradiation_duration_s=dur, dap_gy_cm2=dap, event_type="fluoroscopy")
        for i, (t, dur, dap) in enumerate(events)
    ])
    return study


@pytest.fixture
def angio(db) -> Device:
    return Device.objects.create(manufacturer="Siemens", model="Artis zee", station_name="ANGIO1", display_name="ANGIO1", modality="XA")


@pytest.fixture
def people(db) -> dict:
    """A cardiologist (4 passive badges + real-time), a nurse (real-time only), a radiographer (pregnant later)."""
    anna = staff_create(name="Müller^Anna", employee_id="E100", role="first_operator", department="Cardiology",
                        email="anna.muller@hospital.test", aliases=["Dr A. Mueller"])
    nora = staff_create(name="Nora Jones-Smith", employee_id="E200", role="nurse", department="Cath lab", email="nora@hospital.test")
    rita = staff_create(name="Rita Okafor", employee_id="E300", role="radiographer", department="Radiology", email="rita@hospital.test")
    start = date(2024, 12, 1)
    badges = {}
    for bid, pos, who in [("LX-1001", "collar", anna), ("LX-1002", "waist", anna), ("LX-1003", "eye", anna), ("LX-1004", "ring", anna),
                          ("LX-3001", "collar", rita), ("LX-3002", "waist", rita), ("LX-2001", "collar", nora)]:
        badges[bid] = badge_create(badge_id=bid, position=pos)
        badge_assign(badge=badges[bid], staff=who, start=start)
    for bid, who in [("RS-A", anna), ("RS-N", nora)]:
        badges[bid] = badge_create(badge_id=bid, position="collar", kind=DosimeterBadge.KIND_REALTIME)
        badge_assign(badge=badges[bid], staff=who, start=start)
    return {"anna": anna, "nora": nora, "rita": rita, "badges": badges}


def q1_badge_rows() -> list[list]:
    """Anna's Q1 2025 monthly reports plus April, as a dosimetry service sends them ('M' and 'Unused' included)."""
    return [
        # badge, position, employee, name, start, end, Hp(10), Hp(3), Hp(0.07)
        ["LX-1001", "Collar", "E100", "MULLER^ANNA", "2025-01-01", "2025-01-31", "4.00", "4.20", ""],
        ["LX-1002", "Under apron", "E100", "MULLER^ANNA", "2025-01-01", "2025-01-31", "0.20", "", ""],
        ["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-01-01", "2025-01-31", "", "3.00", ""],
        ["LX-1004", "Ring", "E100", "MULLER^ANNA", "2025-01-01", "2025-01-31", "", "", "10.0"],
        ["LX-1001", "Collar", "E100", "MULLER^ANNA", "2025-02-01", "2025-02-28", "5.00", "5.10", ""],
        ["LX-1002", "Under apron", "E100", "MULLER^ANNA", "2025-02-01", "2025-02-28", "M", "", ""],
        ["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-02-01", "2025-02-28", "", "3.50", ""],
        ["LX-1004", "Ring", "E100", "MULLER^ANNA", "2025-02-01", "2025-02-28", "", "", "6.0"],
        ["LX-1001", "Collar", "E100", "MULLER^ANNA", "2025-03-01", "2025-03-31", "6.00", "6.30", ""],
        ["LX-1002", "Under apron", "E100", "MULLER^ANNA", "2025-03-01", "2025-03-31", "0.30", "", ""],
        ["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-03-01", "2025-03-31", "", "Unused", ""],
        ["LX-1004", "Ring", "E100", "MULLER^ANNA", "2025-03-01", "2025-03-31", "", "", "M"],
        ["LX-1001", "Collar", "E100", "MULLER^ANNA", "2025-04-01", "2025-04-30", "1.00", "1.00", ""],
        ["LX-1002", "Under apron", "E100", "MULLER^ANNA", "2025-04-01", "2025-04-30", "0.05", "", ""],
        ["LX-1003", "Eye", "E100", "MULLER^ANNA", "2025-04-01", "2025-04-30", "", "4.00", ""],
        ["LX-1004", "Ring", "E100", "MULLER^ANNA", "2025-04-01", "2025-04-30", "", "", "M"],
        # the nurse's collar badge: everything below the minimum reportable dose
        ["LX-2001", "Collar", "E200", "JONES-SMITH^NORA", "2025-01-01", "2025-01-31", "M", "M", ""],
        ["LX-2001", "Collar", "E200", "JONES-SMITH^NORA", "2025-02-01", "2025-02-28", "M", "M", ""],
    ]


@pytest.fixture
def badge_file(tmp_path) -> Path:
    return write_csv(tmp_path / "landauer_2025Q1.csv", BADGE_HEADER, q1_badge_rows())


# Procedures on 2025-06-10 in ANGIO1 (UTC):
#   S1 events 09:00:00 (30 s) and 09:10:00 (60 s): core 09:00:00-09:11:00, window [08:59:00, 09:12:00)
#   S2 events 09:12:30 (30 s) and 09:19:00 (60 s): core 09:12:30-09:20:00, window [09:11:30, 09:21:00)
#   S3 no event times, Study DateTime 11:00:00: fallback 10:30-11:30, window [10:29:00, 11:31:00)
@pytest.fixture
def procedures(db, angio) -> dict:
    return {
        "S1": make_study("1.2.826.0.1.3680043.10.9001.1", device=angio, accession="ACC1",
                         events=[("2025-06-10 09:00:00", 30.0, 12.0), ("2025-06-10 09:10:00", 60.0, 28.0)]),
        "S2": make_study("1.2.826.0.1.3680043.10.9001.2", device=angio, accession="ACC2",
                         events=[("2025-06-10 09:12:30", 30.0, 20.0), ("2025-06-10 09:19:00", 60.0, 30.0)]),
        "S3": make_study("1.2.826.0.1.3680043.10.9001.3", device=angio, accession="ACC3", study_datetime="2025-06-10 11:00:00",
                         dap_total=5.0),
    }


REALTIME_A = [
    # timestamp, µSv, expected procedure
    ("2025-06-10T08:58:59", 5.0, None),   # 1 s before S1's window opens
    ("2025-06-10T08:59:00", 1.0, "S1"),   # window start is inclusive
    ("2025-06-10T09:05:00", 10.0, "S1"),
    ("2025-06-10T09:11:40", 3.0, "S1"),   # in both margins: 40 s from S1's end, 50 s from S2's start
    ("2025-06-10T09:11:45", 2.0, "S2"),   # in both margins, 45 s from each: the later procedure wins the tie
    ("2025-06-10T09:12:00", 4.0, "S2"),   # S1's window end is exclusive
    ("2025-06-10T09:15:00", 20.0, "S2"),
    ("2025-06-10T09:21:00", 7.0, None),   # S2's window end is exclusive
    ("2025-06-10T10:29:00", 1.0, "S3"),   # fallback window from Study DateTime
    ("2025-06-10T11:31:00", 9.0, None),
]


@pytest.fixture
def realtime_file(tmp_path) -> Path:
    rows = [["RS-A", ts, f"{usv:.1f}", "350"] for ts, usv, _ in REALTIME_A]
    return write_csv(tmp_path / "dosemanager_export_A.csv", REALTIME_HEADER, rows)


@pytest.fixture
def realtime_cumulative_file(tmp_path) -> Path:
    rows = [["RS-N", "2025-06-10T09:11:00+00:00", "100.0"], ["RS-N", "2025-06-10T09:13:00+00:00", "130.0"],
            ["RS-N", "2025-06-10T09:16:00+00:00", "160.0"], ["RS-N", "2025-06-10T09:22:00+00:00", "170.0"]]
    return write_csv(tmp_path / "dosemanager_export_N.csv", ["badge_id", "timestamp", "cumulative_usv"], rows)


@pytest.fixture
def staffing_file(tmp_path, procedures) -> Path:
    rows = [
        ["ACC1", "", "", "", "", "MULLER^ANNA", "", "First operator"],
        ["", procedures["S2"].study_instance_uid, "", "", "", "", "E100", "Primary operator"],
        ["", "", "ANGIO1", "2025-06-10T10:45:00", "2025-06-10T11:15:00", "Dr. Anna Mueller", "", "operator"],
        ["ACC2", "", "", "", "", "Jones Nora", "", "Scrub nurse"],
    ]
    return write_csv(tmp_path / "theatre_list_2025-06-10.csv", STAFFING_HEADER, rows)
