"""JSON-able summary of a DoseDocument (what ``manage.py inspect_dose`` prints)."""
from __future__ import annotations

from dataclasses import asdict, fields
from datetime import date, datetime
from typing import Any

from .records import DoseDocument


def _iso(v: date | datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


def inspect_dict(doc: DoseDocument) -> dict[str, Any]:
    p = doc.patient
    d = doc.device
    return {
        "sop_instance_uid": doc.sop_instance_uid,
        "study_instance_uid": doc.study_instance_uid,
        "sop_class_uid": doc.sop_class_uid,
        "source_kind": doc.source_kind,
        "modality": doc.modality,
        "manufacturer": d.manufacturer,
        "model": d.model,
        "station_name": d.station_name,
        "device_observer_uid": d.device_observer_uid,
        "study_datetime": _iso(doc.study_datetime),
        "patient": {
            "id": p.id,
            "name": p.name,
            "sex": p.sex,
            "birth_date": _iso(p.birth_date),
            "age_years": p.age_years,
            "weight_kg": p.weight_kg,
            "size_m": p.size_m,
            "pregnancy_status": p.pregnancy_status,
        },
        "planes": [
            {
                "plane": pt.plane,
                "dap_total_gy_cm2": pt.dap_total_gy_cm2,
                "dose_rp_total_gy": pt.dose_rp_total_gy,
                "fluoro_dap_total_gy_cm2": pt.fluoro_dap_total_gy_cm2,
                "acquisition_dap_total_gy_cm2": pt.acquisition_dap_total_gy_cm2,
                "fluoro_time_total_s": pt.fluoro_time_total_s,
                "acquisition_time_total_s": pt.acquisition_time_total_s,
                "reference_point_definition": pt.reference_point_definition,
            }
            for pt in doc.planes
        ],
        "dlp_total_mgy_cm": doc.dlp_total_mgy_cm,
        "events": [_event(e) for e in doc.events],
        "participants": [{"name": x.name, "role": x.role} for x in doc.participants],
        "mr": (
            {"sar_w_kg": doc.mr.sar_w_kg, "db_dt_t_s": doc.mr.db_dt_t_s, "field_strength_t": doc.mr.field_strength_t}
            if doc.mr is not None
            else None
        ),
        "warnings": list(doc.warnings),
        "template_id": doc.template_id,
        "procedure_modality": doc.procedure_modality,
        # mammography: accumulated AGD per breast as reported (TID 10005); NM/PET administrations (TID 10022)
        "breasts": [{"laterality": b.laterality, "accumulated_agd_mgy": b.accumulated_agd_mgy} for b in doc.breasts],
        "radiopharmaceuticals": [_jsonable(asdict(a)) for a in doc.radiopharmaceuticals],
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, (date, datetime)):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _event(e) -> dict[str, Any]:
    """Every field the parser read for this event (units in the names), then the event's extra items
    (table positions, distances, filters, per-pulse summaries, private items)."""
    out: dict[str, Any] = {}
    for f in fields(e):
        if f.name == "extra":
            continue
        value = getattr(e, f.name)
        if value is None:
            continue
        out[f.name] = asdict(value) if f.name == "dose_check" else _jsonable(value)
    for key, value in e.extra.items():
        out.setdefault(key, _jsonable(value))
    return out
