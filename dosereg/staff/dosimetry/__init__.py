"""Dosimetry imports: periodic badge reports (``badges``) and real-time personal dosimeter exports (``realtime``).

Both imports are all-or-nothing: every row is validated first, every problem is reported with
its line number, and the rows are written in one transaction only when there is none.
Re-importing a file with the same SHA-256 changes nothing; rows already stored under their
natural key (badge + wear period + quantity; badge + timestamp) with the same values are left alone.
The files are read by ``dosereg.staff.csv_files``; what both imports share is ``common``. A dose above
the plausibility ceiling (``common.DOSE_CEILING_MSV``) is refused with its line.

This package owns ``import_dosimetry`` (the ``import_dosimetry`` command's entry, by format).
"""
from __future__ import annotations

from pathlib import Path

from ..models import DosimetryImport
from .badges import import_badge_csv
from .common import DosimetryImportError, ImportResult
from .realtime import import_realtime_csv


def import_dosimetry(path: Path | str, *, fmt: str, **kwargs) -> ImportResult:
    if fmt == DosimetryImport.FORMAT_BADGE:
        return import_badge_csv(path, **{k: v for k, v in kwargs.items() if k in ("today",)})
    if fmt == DosimetryImport.FORMAT_REALTIME:
        return import_realtime_csv(path, **{k: v for k, v in kwargs.items() if k in ("tz_name", "utc_offset", "now")})
    raise DosimetryImportError([f"unknown format {fmt!r}; expected badge_csv or realtime_csv"])
