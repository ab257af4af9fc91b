"""Summing a patient's skin-dose maps over a period (pure: no Django).

Two procedures' maps add cell by cell only when they lie on the same skin: the same phantom, the same patient
orientation and the same cell grid (PySkinDose's phantom cells are fixed to the body, so equal grids are the same
points of skin). Otherwise the period's value is the sum of the procedures' peak skin doses: conservative (an
upper bound), because the peaks may lie on different areas of skin. Each result says which it is.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

METHOD_SUMMED_MAP = "summed_map"
METHOD_PSD_SUM = "psd_sum"
METHOD_SINGLE = "single"

SUMMED_MAP_LABEL = ("largest cell of the procedures' skin-dose maps added cell by cell (same phantom, orientation "
                    "and skin cells)")
PSD_SUM_LABEL = ("conservative sum of the procedures' peak skin doses: an upper bound, as the peaks may lie on "
                 "different areas of skin")


@dataclass
class ProcedureSkinDose:
    study_id: int
    at: datetime | None
    psd_gy: float | None                       # None: not computable
    phantom: str = ""
    orientation: str = ""
    cells: dict[str, list[float]] | None = None  # x_cm, y_cm, z_cm, dose_gy
    kar_total_gy: float | None = None
    location: str = ""  # where the peak is, in words
    _grid: str | None = field(default=None, init=False, repr=False, compare=False)
    _dose: Any = field(default=None, init=False, repr=False, compare=False)

    def grid_key(self) -> str | None:
        """A digest of the map's cell positions (computed once): equal digests, the same points of skin."""
        c = self.cells
        if not c or not c.get("dose_gy"):
            return None
        if self._grid is None:
            h = hashlib.md5(usedforsecurity=False)
            for axis in ("x_cm", "y_cm", "z_cm"):
                h.update(np.asarray(c.get(axis) or [], dtype=float).tobytes())
            self._grid = h.hexdigest()
        return self._grid

    def dose_array(self) -> Any:
        if self._dose is None:
            self._dose = np.asarray((self.cells or {}).get("dose_gy") or [], dtype=float)
        return self._dose


@dataclass
class SkinDoseSum:
    window_days: int
    start: datetime | None
    end: datetime | None
    study_ids: list[int]
    peak_gy: float | None
    method: str                       # summed_map | psd_sum | single
    label: str
    reasons: list[str] = field(default_factory=list)  # why the maps could not be added (psd_sum)
    cells: dict[str, list[float]] | None = None        # the summed map (summed_map only)
    phantom: str = ""
    not_computable: list[int] = field(default_factory=list)  # studies in the period without a PSD
    same_as_days: int | None = None  # a shorter period holding the same procedures (its map is the same)


def sum_procedures(procs: list[ProcedureSkinDose], *, window_days: int = 0, start: datetime | None = None,
                   end: datetime | None = None, with_cells: bool = False) -> SkinDoseSum:
    """The skin dose of these procedures together: their maps added where they share the skin cells, else the
    conservative sum of their PSDs. Procedures without a PSD are listed (``not_computable``), not counted."""
    counted = [p for p in procs if p.psd_gy is not None]
    ids = sorted(p.study_id for p in procs)
    missing = sorted(p.study_id for p in procs if p.psd_gy is None)
    if not counted:
        return SkinDoseSum(window_days, start, end, ids, None, METHOD_PSD_SUM, PSD_SUM_LABEL, not_computable=missing)
    if len(counted) == 1:
        p = counted[0]
        return SkinDoseSum(window_days, start, end, ids, p.psd_gy, METHOD_SINGLE, "peak skin dose of one procedure",
                           cells=p.cells if with_cells else None, phantom=p.phantom, not_computable=missing)
    reasons: list[str] = []
    first = counted[0]
    if any(p.cells is None or not p.cells.get("dose_gy") for p in counted):
        reasons.append("a procedure has no stored skin-dose map")
    if len({p.phantom for p in counted}) > 1:
        reasons.append("different phantoms: " + ", ".join(sorted({p.phantom or "?" for p in counted})))
    if len({p.orientation for p in counted}) > 1:
        reasons.append("different patient orientations: " + ", ".join(sorted({p.orientation or "?" for p in counted})))
    if not reasons and len({p.grid_key() for p in counted}) > 1:
        reasons.append("different skin cell grids (phantom size or room settings changed)")
    if reasons:
        return SkinDoseSum(window_days, start, end, ids, round(sum(p.psd_gy or 0.0 for p in counted), 6),
                           METHOD_PSD_SUM, PSD_SUM_LABEL, reasons=reasons, phantom=first.phantom, not_computable=missing)
    assert first.cells is not None
    total = np.sum([p.dose_array() for p in counted], axis=0)
    peak = float(total.max())
    cells: dict[str, Any] | None = None
    if with_cells:
        cells = {axis: first.cells[axis] for axis in ("x_cm", "y_cm", "z_cm")} | {
            "dose_gy": [round(float(v), 6) for v in total]}
    return SkinDoseSum(window_days, start, end, ids, round(peak, 6), METHOD_SUMMED_MAP, SUMMED_MAP_LABEL,
                       cells=cells, phantom=first.phantom, not_computable=missing)


def worst_window(procs: list[ProcedureSkinDose], window_days: int, *, with_cells: bool = False) -> SkinDoseSum | None:
    """Of the periods of ``window_days`` ending at each dated procedure (closed at both ends, as the exposure
    windows), the one with the highest summed skin dose that holds at least two procedures with a PSD. None: no
    such period."""
    dated = sorted((p for p in procs if p.at is not None), key=lambda p: (p.at, p.study_id))  # type: ignore[arg-type, return-value]
    span = timedelta(days=window_days)
    best: SkinDoseSum | None = None
    best_key: tuple = ()
    for anchor in dated:
        assert anchor.at is not None
        inside = [p for p in dated if p.at is not None and anchor.at - span <= p.at <= anchor.at]
        if sum(1 for p in inside if p.psd_gy is not None) < 2:
            continue
        s = sum_procedures(inside, window_days=window_days, start=anchor.at - span, end=anchor.at)
        key = (s.peak_gy or 0.0, len(s.study_ids))
        if best is None or key > best_key:
            best, best_key = s, key
    if best is not None and with_cells and best.method == METHOD_SUMMED_MAP:
        inside = [p for p in dated if p.study_id in set(best.study_ids)]
        best = sum_procedures(inside, window_days=window_days, start=best.start, end=best.end, with_cells=True)
    return best
