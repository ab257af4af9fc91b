"""Peak skin dose (PSD) and skin-dose maps from dosereg's own normalised irradiation events.

Pure module (no Django): the caller gives the events (from :func:`events_from_document`, or built from registry
rows) and the room's geometry settings; the computation is PySkinDose's (``pyskindose`` on PyPI, MIT licence),
which implements the event-by-event method reviewed by AAPM TG-357 / EFOMP (Andersson et al., Med Phys 2021,
doi:10.1002/mp.14910): each beam is projected from the source onto a patient phantom lying on the table and pad;
the reference-point air kerma Ka,r is corrected by the inverse square law from the reference point to each skin
cell, backscatter (as a function of beam quality and field size), air-to-tissue medium correction and table/pad
transmission where the beam passes through them.

PySkinDose is fed dosereg's parsed and unit-normalised events, not the file: its own RDSR reader fails on files
without ManufacturerModelName or a collimated field area. What dosereg owns here is the selection of events (each
skipped event has a stated reason), the device's geometry convention (table axes and angle signs, per
manufacturer and model, from PySkinDose's normalisation table or a room setting), and the validation
(tests/skindose).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dosereg.rdsr.records import DoseDocument

log = logging.getLogger(__name__)

METHOD = ("PySkinDose {version}: event-by-event beam projection onto a {phantom} phantom with inverse-square, "
          "backscatter, medium and table/pad corrections (AAPM TG-357 / EFOMP method, Andersson et al., "
          "Med Phys 2021)")
UNCERTAINTY = ("Estimates made this way agree with film measurements within about ±10–25 % in published "
               "comparisons; treat this one as ±25–40 % unless the room's table, pad and Ka,r calibration "
               "factors have been validated.")
KAR_ESTIMATE_LABEL = ("Ka,r-based estimate: the sum of the reference-point air kerma of all events. It is an "
                      "upper-bound surrogate (every field assumed on the same skin), not a skin dose.")
# PySkinDose places the interventional reference point 15 cm from the isocentre toward the source.
IRP_FROM_ISOCENTER_CM = 15.0
PHANTOMS = ("plane", "cylinder", "human")


@dataclass
class SkinEvent:
    """One projection irradiation event in dosereg's units (names carry them)."""

    uid: str
    event_type: str | None = None          # fluoroscopy | stationary | stepping | rotational
    plane: str | None = None               # single | A | B
    dose_rp_gy: float | None = None
    kvp: float | None = None
    positioner_primary_angle_deg: float | None = None
    positioner_secondary_angle_deg: float | None = None
    distance_source_to_detector_mm: float | None = None
    distance_source_to_isocenter_mm: float | None = None
    table_longitudinal_position_mm: float | None = None
    table_lateral_position_mm: float | None = None
    table_height_position_mm: float | None = None
    collimated_field_area_m2: float | None = None
    filters: list[dict[str, Any]] = field(default_factory=list)  # {"material", "thickness_min_mm", "thickness_max_mm"}
    reference_point_definition: str | None = None
    # field size at the detector plane (cm): from the collimated field area (a square) or vendor shutter positions
    field_size_lat_cm: float | None = None
    field_size_long_cm: float | None = None


@dataclass
class GeometryConvention:
    """How a device reports table position and angles, mapped onto PySkinDose's coordinate system."""

    source: str                               # where the convention comes from (PySkinDose table / room setting)
    translation_offset_cm: tuple[float, float, float] = (0.0, 0.0, 0.0)   # x (long), y (vertical), z (lateral)
    translation_direction: tuple[int, int, int] = (1, 1, 1)
    rotation_direction: dict[str, int] = field(default_factory=lambda: {k: 1 for k in ("Ap1", "Ap2", "Ap3", "At1", "At2", "At3")})
    field_size_mode: str = "CFA"              # CFA: side = sqrt(collimated field area) at the detector plane
    detector_side_length_cm: float = 40.0


@dataclass
class RoomSettings:
    """Per-room settings a physicist keeps (versioned in the database; plain values here)."""

    table_pad_transmission: float = 0.8      # k_tab, table and pad together
    transmission_source: str = "estimate (PySkinDose default 0.8); measure it for this room"
    inherent_filtration_mm_al: float = 3.1
    table_length_cm: float = 281.5
    table_width_cm: float = 45.0
    table_thickness_cm: float = 5.0
    pad_thickness_cm: float = 4.0
    phantom: str = "plane"                    # plane | cylinder | human
    human_mesh: str = "hudfrid"
    patient_orientation: str = "head_first_supine"
    convention: GeometryConvention | None = None  # None: PySkinDose's table for the manufacturer/model


@dataclass
class SkinDoseResult:
    computable: bool
    psd_gy: float | None = None
    psd_location: dict[str, Any] | None = None
    phantom: str | None = None
    patient_orientation: str | None = None
    corrections: dict[str, Any] = field(default_factory=dict)
    events_used: list[str] = field(default_factory=list)
    events_skipped: list[dict[str, str]] = field(default_factory=list)
    method: str = ""
    uncertainty: str = UNCERTAINTY
    not_computable_reason: str | None = None
    kar_total_gy: float | None = None        # the labelled Ka,r-based estimate
    kar_estimate_label: str = KAR_ESTIMATE_LABEL
    assumptions: list[str] = field(default_factory=list)
    dose_map: dict[str, list[float]] | None = None  # skin cells: x, y, z (cm), dose_gy

    def as_dict(self, *, with_map: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_map:
            out.pop("dose_map")
        return out


# ---------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------
def events_from_document(doc: DoseDocument) -> list[SkinEvent]:
    return [skin_event(e.irradiation_event_uid or f"event-{i + 1}", vars(e), e.extra) for i, e in enumerate(doc.events)]


def _private(extra: dict, *names: str) -> float | None:
    priv = extra.get("private") or {}
    for name in names:
        v = priv.get(name)
        if isinstance(v, dict):
            v = v.get("value")
        if isinstance(v, (int, float)) and math.isfinite(v):
            return float(v)
    return None


def skin_event(uid: str, values: dict[str, Any], extra: dict[str, Any]) -> SkinEvent:
    """A skin-dose event from an event's values (a parsed record's or a registry row's) and its extra items.

    Where the standard item is absent, vendor private items that carry the same quantity are used (Philips:
    Final Distance Source to Detector, Table Height Position, shutter positions)."""
    def val(name: str) -> float | None:
        return _f(values.get(name)) if values.get(name) is not None else _f(extra.get(name))

    e = SkinEvent(
        uid=uid, event_type=values.get("event_type"), plane=values.get("plane"),
        dose_rp_gy=val("dose_rp_gy"), kvp=val("kvp"),
        positioner_primary_angle_deg=val("positioner_primary_angle_deg"),
        positioner_secondary_angle_deg=val("positioner_secondary_angle_deg"),
        distance_source_to_detector_mm=(val("distance_source_to_detector_mm")
                                        or _private(extra, "Final Distance Source to Detector")),
        distance_source_to_isocenter_mm=val("distance_source_to_isocenter_mm"),
        table_longitudinal_position_mm=val("table_longitudinal_position_mm"),
        table_lateral_position_mm=val("table_lateral_position_mm"),
        table_height_position_mm=(val("table_height_position_mm")
                                  if val("table_height_position_mm") is not None
                                  else _private(extra, "Table Height Position", "Final Table Height Position")),
        collimated_field_area_m2=val("collimated_field_area_m2"),
        filters=list(extra.get("filters") or []),
        reference_point_definition=values.get("reference_point_definition"),
    )
    shutters = [_private(extra, f"Wedges and Shutters/{side} Shutter") for side in ("Left", "Right", "Top", "Bottom")]
    # the shutters first: the rectangle they give is better than the square of an area (the parser derives
    # Collimated Field Area from the same shutters when the standard item is absent)
    if all(v is not None for v in shutters) and e.distance_source_to_detector_mm:
        # Philips: shutter positions (mm) given at 100 cm from the source; scaled to the detector plane
        left, right, top, bottom = (v or 0.0 for v in shutters)
        scale = e.distance_source_to_detector_mm / 1000.0
        e.field_size_long_cm = (left + right) / 10.0 * scale
        e.field_size_lat_cm = (top + bottom) / 10.0 * scale
    elif e.collimated_field_area_m2 is not None:
        e.field_size_long_cm = e.field_size_lat_cm = math.sqrt(e.collimated_field_area_m2) * 100.0
    return e


def _f(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


_REQUIRED = (
    ("dose_rp_gy", "no reference air kerma (Ka,r)"),
    ("kvp", "no tube voltage (kVp): beam quality unknown"),
    ("positioner_primary_angle_deg", "no positioner primary angle"),
    ("positioner_secondary_angle_deg", "no positioner secondary angle"),
    ("distance_source_to_isocenter_mm", "no source-to-isocentre distance"),
    ("distance_source_to_detector_mm", "no source-to-detector distance"),
    ("table_longitudinal_position_mm", "no table longitudinal position"),
    ("table_lateral_position_mm", "no table lateral position"),
    ("table_height_position_mm", "no table height position"),
    ("field_size_lat_cm", "no collimated field area or shutter positions (field size unknown)"),
)


def _skip_reason(e: SkinEvent) -> str | None:
    if e.event_type not in (None, "fluoroscopy", "stationary", "stepping", "rotational"):
        return f"not a projection event ({e.event_type})"
    if e.dose_rp_gy is not None and e.dose_rp_gy == 0:
        return "Ka,r is zero"
    missing = [why for attr, why in _REQUIRED if getattr(e, attr) is None]
    if missing:
        return "; ".join(missing)
    if (e.distance_source_to_detector_mm or 0) <= (e.distance_source_to_isocenter_mm or 0):
        return "source-to-detector distance not beyond the isocentre"
    return None


def _filter_mm(e: SkinEvent, word: str) -> float:
    total = 0.0
    for f in e.filters:
        if word in str(f.get("material") or "").lower():
            lo, hi = f.get("thickness_min_mm"), f.get("thickness_max_mm")
            vals = [v for v in (lo, hi) if isinstance(v, (int, float))]
            total += sum(vals) / len(vals) if vals else 0.0
    return total


# ---------------------------------------------------------------------------
# geometry conventions
# ---------------------------------------------------------------------------
def _pyskindose_dir() -> Path:
    import pyskindose

    return Path(pyskindose.__file__).parent


def convention_for(manufacturer: str | None, model: str | None) -> GeometryConvention | None:
    """PySkinDose's normalisation entry for this manufacturer and model (manufacturer matched on its first word,
    "Philips Medical Systems" = "Philips"; model exactly, case-insensitive), or None."""
    if not manufacturer or not model:
        return None
    table = json.loads((_pyskindose_dir() / "normalization_settings.json").read_text())["normalization_settings"]
    man, mod = manufacturer.casefold(), model.casefold()
    for entry in table:
        if man.split()[0] == entry["manufacturer"].casefold().split()[0] and mod in [m.casefold() for m in entry["models"]]:
            off, tdir, rdir = entry["translation_offset"], entry["translation_direction"], entry["rotation_direction"]
            sign = {"+": 1, "-": -1}
            return GeometryConvention(
                source=f"PySkinDose normalisation table: {entry['manufacturer']} {', '.join(entry['models'])}",
                translation_offset_cm=(float(off["x"]), float(off["y"]), float(off["z"])),
                translation_direction=(sign[tdir["x"]], sign[tdir["y"]], sign[tdir["z"]]),
                rotation_direction={k: sign[v] for k, v in rdir.items()},
                field_size_mode="CFA",  # dosereg passes the collimated field area (no vendor shutter distances)
                detector_side_length_cm=float(entry["detector_side_length"]),
            )
    return None


# ---------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------
_PATCHED = False


def _k_isq(source, cells, dref):
    """PySkinDose 25.1.1's ``calculate_k_isq`` takes the norm along axis 0 when 3 or fewer skin cells are hit (a
    small field at the phantom's edge): for 1 or 2 cells that fails with an array broadcast error, and for exactly
    3 cells it silently returns the wrong factors. Same formula, always per cell."""
    import numpy as np

    cells = np.atleast_2d(cells)
    return np.square(dref / np.linalg.norm(cells - source, axis=1))


_K_MED_TABLES: dict[str, Any] = {}


def _k_med(data_norm, field_area, event, corrections_db):
    """PySkinDose's ``calculate_k_med`` (medium correction, Benmakhlouf et al. table 2), the same lookup, with the
    correction table read once per process instead of once per irradiation event (most of its run time)."""
    import numpy as np
    import pandas as pd
    from pyskindose.db_connect import db_connect

    df = _K_MED_TABLES.get(corrections_db)
    if df is None:
        conn = db_connect(db_name=corrections_db)[0]
        df = pd.read_sql_query("SELECT kvp_kv, hvl_mmal, field_side_length_cm, mu_en_quotient "
                               "FROM correction_medium_and_backscatter", conn)
        conn.close()
        _K_MED_TABLES[corrections_db] = df
    kvp, hvl = data_norm.kVp[event], data_norm.HVL[event]
    fsl_mean = np.mean(np.sqrt(field_area))
    fsl = min([5, 10, 20, 25, 35], key=lambda x: abs(x - fsl_mean))
    kvp_round = min(df.loc[df["field_side_length_cm"] == fsl, "kvp_kv"], key=lambda x: abs(x - kvp))
    hvl_round = min(df.loc[(df["field_side_length_cm"] == fsl) & (df["kvp_kv"] == kvp_round), "hvl_mmal"],
                    key=lambda x: abs(x - hvl))
    return float(df.loc[(df["hvl_mmal"] == hvl_round) & (df["kvp_kv"] == kvp_round)
                        & (df["field_side_length_cm"] == fsl), "mu_en_quotient"].iloc[0])


def _patch_pyskindose() -> None:
    """Replace, where PySkinDose calls them, the one defective function (``_k_isq``) and the one whose run time
    dominated (``_k_med``: same lookup, table cached). tests/skindose checks parity with PySkinDose's own run."""
    global _PATCHED
    if _PATCHED:
        return
    from pyskindose.calculate_dose import add_correction_and_event_dose_to_output as a
    from pyskindose.calculate_dose import perform_calculations_for_new_geometries as m

    logging.getLogger("pyskindose").setLevel(logging.WARNING)  # its per-run INFO lines are not for our logs

    m.calculate_k_isq = _k_isq
    a.calculate_k_med = _k_med
    _PATCHED = True


def _corrections_db() -> str:
    """PySkinDose's correction tables (HVL, backscatter, table/pad) as the SQLite file it builds on first use."""
    path = Path(os.environ.get("SKINDOSE_CORRECTIONS_DB") or Path(tempfile.gettempdir()) / "dosereg-pyskindose-corrections.db")
    return str(path)


_HVL_KEYS: dict[str, set[tuple]] = {}


def _hvl_available(conn: sqlite3.Connection, db_path: str, kvp: float, inherent_mm_al: float, cu_mm: float,
                   al_mm: float) -> bool:
    """Whether PySkinDose's HVL table has this beam quality (its lookup: kV and Al rounded, Cu exact)."""
    keys = _HVL_KEYS.get(db_path)
    if keys is None:
        keys = {(round(k), round(i, 1), c, a) for k, i, c, a in conn.execute(
            "SELECT kvp_kv, filtration_inherent_mmal, filtration_added_mmcu, filtration_added_mmal FROM hvl_combined")}
        _HVL_KEYS[db_path] = keys
    return (round(kvp), round(inherent_mm_al, 1), cu_mm, round(al_mm)) in keys


def compute(events: Sequence[SkinEvent], *, manufacturer: str | None, model: str | None,
            room: RoomSettings | None = None, with_map: bool = True) -> SkinDoseResult:
    """PSD (Gy), its location and the skin-dose map from ``events``; or "not computable" with the reason and the
    labelled Ka,r-based estimate."""
    room = room or RoomSettings()
    if room.phantom not in PHANTOMS:
        raise ValueError(f"phantom must be one of {PHANTOMS}, not {room.phantom!r}")
    kars = [e.dose_rp_gy for e in events if e.dose_rp_gy is not None]
    result = SkinDoseResult(computable=False, kar_total_gy=sum(kars) if kars else None, phantom=room.phantom,
                            patient_orientation=room.patient_orientation)
    candidates = []
    for e in events:
        reason = _skip_reason(e)
        if reason:
            result.events_skipped.append({"uid": e.uid, "reason": reason})
        else:
            candidates.append(e)
    if not candidates:  # decided without loading PySkinDose (pandas, scipy)
        result.not_computable_reason = ("the report carries no usable beam geometry (C-arm angles, source "
                                        "distances, table position, field size, kVp and Ka,r per event); mobile "
                                        "C-arms usually report none" if events else "no irradiation events")
        return result

    convention = room.convention or convention_for(manufacturer, model)
    if convention is None:
        result.not_computable_reason = (
            f"no table and angle convention known for {manufacturer or 'unknown manufacturer'} "
            f"{model or 'unknown model'}: a physicist must set this room's geometry convention")
        result.events_skipped += [{"uid": e.uid, "reason": "device geometry convention unknown"} for e in candidates]
        return result

    import pandas as pd
    from importlib.metadata import version as _dist_version

    from pyskindose.calculate_dose.calculate_dose import calculate_dose
    from pyskindose.constants import PHANTOM_MODEL_PAD, PHANTOM_MODEL_TABLE
    from pyskindose.db_connect import db_connect
    from pyskindose.helpers.calculate_rotation_matrices import calculate_rotation_matrices
    from pyskindose.phantom_class import Phantom
    from pyskindose.settings import initialize_settings

    psd_version = _dist_version("pyskindose")
    _patch_pyskindose()
    db_path = _corrections_db()
    with contextlib.redirect_stdout(io.StringIO()):
        conn = db_connect(db_name=db_path)[0]
    used: list[SkinEvent] = []
    for e in candidates:
        cu, al = _filter_mm(e, "copper"), _filter_mm(e, "alumin")
        if _hvl_available(conn, db_path, float(e.kvp or 0), room.inherent_filtration_mm_al, cu, al):
            used.append(e)
        else:
            result.events_skipped.append({"uid": e.uid, "reason": (
                f"no half-value layer in the correction tables for {e.kvp:g} kV, {cu:g} mm Cu, "
                f"{al:g} mm Al added filtration")})
    conn.close()
    if not used:
        result.not_computable_reason = "no event's beam quality is in the correction tables (kV and filtration)"
        return result

    off, tdir, rdir = convention.translation_offset_cm, convention.translation_direction, convention.rotation_direction
    # PySkinDose recomputes beam, hits and field sizes only when an event's geometry differs from the previous
    # event's: events in geometry order (the dose map is a sum, so the order does not change it) reuse them
    used.sort(key=lambda e: tuple(-1e9 if v is None else v for v in (
        e.table_longitudinal_position_mm, e.table_lateral_position_mm, e.table_height_position_mm,
        e.positioner_primary_angle_deg, e.positioner_secondary_angle_deg, e.field_size_lat_cm, e.field_size_long_cm)))
    rows = []
    for e in used:
        dsd, dsi = (e.distance_source_to_detector_mm or 0) / 10.0, (e.distance_source_to_isocenter_mm or 0) / 10.0
        rows.append({
            "model": model, "DSD": dsd, "DSI": dsi, "DID": dsd - dsi, "DSIRP": dsi - IRP_FROM_ISOCENTER_CM,
            "acquisition_type": e.event_type or "", "acquisition_plane": e.plane or "single",
            "Tx": off[0] + tdir[0] * (e.table_longitudinal_position_mm or 0) / 10.0,
            "Ty": off[1] + tdir[1] * (e.table_height_position_mm or 0) / 10.0,
            "Tz": off[2] + tdir[2] * (e.table_lateral_position_mm or 0) / 10.0,
            "At1": 0.0, "At2": 0.0, "At3": 0.0,
            "Ap1": rdir.get("Ap1", 1) * (e.positioner_primary_angle_deg or 0.0),
            "Ap2": rdir.get("Ap2", 1) * (e.positioner_secondary_angle_deg or 0.0),
            "Ap3": 0.0,
            "DSL": convention.detector_side_length_cm, "FS_lat": round(e.field_size_lat_cm or 0.0, 3),
            "FS_long": round(e.field_size_long_cm or 0.0, 3),
            "kVp": float(e.kvp or 0), "K_IRP": (e.dose_rp_gy or 0.0) * 1000.0,  # mGy
            "filter_thickness_Cu": _filter_mm(e, "copper"), "filter_thickness_Al": _filter_mm(e, "alumin"),
        })
    data_norm = calculate_rotation_matrices(pd.DataFrame(rows))

    settings = initialize_settings({
        "mode": "calculate_dose", "rdsr_filename": "", "estimate_k_tab": True,
        "k_tab_val": room.table_pad_transmission, "inherent_filtration": room.inherent_filtration_mm_al,
        "silence_pydicom_warnings": True, "corrections_db_path": db_path,
        "plot": {"interactivity": False, "dark_mode": False, "notebook_mode": False, "plot_dosemap": False,
                 "colorscale": "jet", "max_events_for_patient_inclusion": 0, "plot_event_index": 0},
        "phantom": {
            "model": room.phantom, "human_mesh": room.human_mesh,
            "patient_offset": {"d_lon": 0, "d_ver": 0, "d_lat": 0},
            "patient_orientation": room.patient_orientation,
            "dimension": {
                "plane_length": 120, "plane_width": 40, "plane_resolution": "sparse",
                "cylinder_length": 150, "cylinder_radii_a": 20, "cylinder_radii_b": 10, "cylinder_resolution": "sparse",
                "table_length": room.table_length_cm, "table_width": room.table_width_cm,
                "table_thickness": room.table_thickness_cm, "pad_length": room.table_length_cm,
                "pad_width": room.table_width_cm, "pad_thickness": room.pad_thickness_cm,
            },
        },
    })
    settings.output_format = "dict"
    table = Phantom(phantom_model=PHANTOM_MODEL_TABLE, phantom_dim=settings.phantom.dimension)
    pad = Phantom(phantom_model=PHANTOM_MODEL_PAD, phantom_dim=settings.phantom.dimension)
    with _quiet():
        patient, output = calculate_dose(normalized_data=data_norm, settings=settings, table=table, pad=pad)

    dose_mgy = output["dose_map"]
    result.events_used = [e.uid for e in used]
    if not float(dose_mgy.max()) > 0.0:
        result.not_computable_reason = (
            f"no beam of the {len(used)} usable events reaches the {room.phantom} phantom's skin with this geometry: "
            "check the room's table convention and the patient's position")
        return result
    peak = int(dose_mgy.argmax())
    psd_gy = float(dose_mgy[peak]) / 1000.0
    ref = getattr(patient, "r_ref", patient.r)  # the phantom on the table at its starting position
    x, y, z = (float(v) for v in ref[peak])
    result.computable = True
    result.psd_gy = psd_gy
    result.psd_location = {"x_cm": round(x, 1), "y_cm": round(y, 1), "z_cm": round(z, 1),
                           "description": _describe(room, ref, peak)}
    result.method = METHOD.format(version=psd_version, phantom=room.phantom)
    result.corrections = _corrections_at(output, peak, room)
    result.assumptions = [
        f"geometry convention: {convention.source}",
        f"table and pad transmission {room.table_pad_transmission:g} ({room.transmission_source})",
        f"inherent filtration {room.inherent_filtration_mm_al:g} mm Al",
        "interventional reference point 15 cm from the isocentre toward the source",
        "field size at the detector plane: a square of side sqrt(collimated field area), or the vendor's shutter "
        "positions scaled from 100 cm to the detector",
        f"patient orientation: {room.patient_orientation.replace('_', ' ')}",
    ]
    if with_map:
        r = ref
        result.dose_map = {"x_cm": [round(float(v), 2) for v in r[:, 0]], "y_cm": [round(float(v), 2) for v in r[:, 1]],
                           "z_cm": [round(float(v), 2) for v in r[:, 2]],
                           "dose_gy": [round(float(v) / 1000.0, 6) for v in dose_mgy]}
    return result


@contextlib.contextmanager
def _quiet():
    """PySkinDose draws a tqdm progress bar on stderr; a worker's log is no place for it."""
    old = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if old is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old


def _corrections_at(output: dict, cell: int, room: RoomSettings) -> dict[str, Any]:
    """The correction factors applied at the PSD cell, over the events whose beam hit it."""
    factors: dict[str, list[float]] = {"inverse_square": [], "backscatter": [], "medium": [], "table_pad": []}
    for ev, hits in enumerate(output["hits"]):
        hits = list(hits) if hasattr(hits, "__len__") else []
        if not hits or not hits[cell]:
            continue
        idx = sum(1 for h in hits[:cell] if h)  # corrections are stored for the hit cells only, in order
        for key, out_key in (("inverse_square", "k_isq"), ("backscatter", "k_bs"), ("medium", "k_med"), ("table_pad", "k_tab")):
            values = output.get(out_key)
            if values is None:
                continue
            v = values[ev]
            try:
                val = float(v[idx]) if hasattr(v, "__len__") else float(v)
            except (IndexError, TypeError, ValueError):
                continue
            factors[key].append(val)
    return {k: ({"min": round(min(v), 4), "max": round(max(v), 4), "events": len(v)} if v else None)
            for k, v in factors.items()} | {"table_pad_setting": room.table_pad_transmission}


def _describe(room: RoomSettings, r, cell: int) -> str:
    """Where on the body, in words: along the body from the head end, and the side facing the beam."""
    x, y, z = (float(v) for v in r[cell])
    zs = [float(v) for v in r[:, 2]]
    head, feet = max(zs), min(zs)
    length = head - feet or 1.0
    frac = (head - z) / length
    along = "upper third" if frac < 1 / 3 else "middle third" if frac < 2 / 3 else "lower third"
    if room.phantom == "plane":
        side = "back (posterior skin, on the table)"
    else:
        ys, xs = [float(v) for v in r[:, 1]], [float(v) for v in r[:, 0]]
        cy, cx = (max(ys) + min(ys)) / 2, (max(xs) + min(xs)) / 2
        dy, dx = y - cy, x - cx
        if abs(dy) >= abs(dx):
            side = "back (posterior)" if dy > 0 else "front (anterior)"
        else:
            side = "left side" if dx > 0 else "right side"
    return f"{side}, {along} of the phantom's length from the head end"
