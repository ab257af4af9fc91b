"""What both dosimetry imports share: the refusal (``DosimetryImportError``) and result (``ImportResult``), reading
the file as an import, badge positions, the plausibility ceiling of one dose value, the already-imported check and
the staff alerts evaluated in the import's transaction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ..config import setting_value
from ..csv_files import CsvReadError, read_csv
from ..models import POS_COLLAR, POS_EYE, POS_RING, POS_WAIST, DosimetryImport

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


def read_import_csv(path: Path, error_class: type[DosimetryImportError]):
    """read_csv for an import: a file that cannot be read is refused as ``error_class`` (nothing written)."""
    try:
        return read_csv(path)
    except CsvReadError as exc:
        raise error_class(exc.errors, path.name) from None


def parse_dose(text: str, what: str, *, ceiling: float | None = None, unit: str = "") -> float:
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


def badge_row_errors(bid: str, badge, kind: str) -> list[str]:
    """The row's badge problems: none named, not registered, or of the other kind (``kind``: the kind this file
    format is for)."""
    from ..models import DosimeterBadge

    if not bid:
        return ["badge_id is empty"]
    if badge is None:
        return [f"unknown badge {bid!r} (register it and its wear periods first)"]
    if badge.kind != kind:
        if kind == DosimeterBadge.KIND_PASSIVE:
            return [f"badge {bid!r} is a real-time dosimeter; import its data with --format realtime_csv"]
        return [f"badge {bid!r} is a passive dosimeter; import its reports with --format badge_csv"]
    return []


def line_key(msg: str) -> int:
    try:
        return int(msg.split(":", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0


def evaluate_alerts(staff_ids: set[int]) -> None:
    """Alerts are evaluated in the import's transaction; their e-mails are sent after commit."""
    if staff_ids:
        from ..alerts import staff_alerts_evaluate

        staff_alerts_evaluate(staff_ids=set(staff_ids))
