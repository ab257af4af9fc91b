"""Random, realistic procedures for the demo data and the benchmarks (devices, staff, patients; projection and
CT specs). No Django imports."""
from __future__ import annotations

import datetime as dt
import functools
import random
from dataclasses import dataclass
from typing import Any

from .core import (
    ANATOMY,
    CTDoseCheckSpec,
    CTEventSpec,
    CTRDSRSpec,
    Code,
    ParticipantLike,
    ProjectionEventSpec,
    ProjectionRDSRSpec,
    RP_IMAGE_INPUT_30CM,
    _rng_uid,
    deterministic_uid,
)

__all__ = [
    "PROJECTION_KINDS",
    "random_projection_spec",
    "random_ct_spec",
]


# ---------------------------------------------------------------------------
# Random, realistic procedures (demo data and benchmarks)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Device:
    manufacturer: str
    model: str
    station: str
    serial: str
    institution: str
    software: str

    @functools.cached_property
    def observer_uid(self) -> str:
        return deterministic_uid("dosereg-demo-device", self.manufacturer, self.model, self.serial)


_NORTH = "Northfield General Hospital"
_RIVER = "Riverside Clinic"
_DEVICES: dict[str, tuple[_Device, ...]] = {
    "mobile_carm": (
        _Device("GE OEC Medical Systems", "OEC Elite", "OECELITE01", "E1-20431", _NORTH, "4.2.1"),
        _Device("Siemens Healthineers", "Cios Alpha", "CIOSA-THEATRE3", "31077", _NORTH, "VA30"),
        _Device("Ziehm Imaging", "Vision RFD", "ZIEHM-RIV", "ZV-5532", _RIVER, "7.10"),
        _Device("Philips", "Zenition 70", "ZEN70-OR2", "PH-88213", _RIVER, "1.1.3"),
    ),
    "fixed_angio": (
        _Device("Siemens Healthineers", "Artis icono biplane", "ICONO-IR1", "121045", _NORTH, "VE20"),
        _Device("Philips", "Azurion 7 B20/15", "AZ7-CATH2", "AZ-77012", _NORTH, "2.2"),
        _Device("Canon Medical Systems", "Alphenix Biplane", "ALPHENIX-RIV", "CN-40219", _RIVER, "8.1"),
    ),
    "rf_room": (
        _Device("Siemens Healthineers", "Luminos dRF Max", "LUMINOS-RF1", "15521", _NORTH, "VF10"),
        _Device("Canon Medical Systems", "Ultimax-i", "ULTIMAX-RIV", "CU-1183", _RIVER, "6.2"),
    ),
    "dx": (
        _Device("Canon Inc.", "CXDI-710C", "CXDI-ED", "CX-33910", _NORTH, "3.2"),
        _Device("Carestream Health", "DRX-Evolution Plus", "DRX-RM4", "CS-90022", _NORTH, "5.7"),
        _Device("GE Healthcare", "Optima XR220amx", "XR220-MOBILE", "GE-44012", _RIVER, "1.8"),
    ),
    "ct": (
        _Device("SIEMENS", "SOMATOM go.Top", "CT-NF-1", "108877", _NORTH, "VA40"),
        _Device("GE MEDICAL SYSTEMS", "Revolution EVO", "CT-NF-2", "GE-CT-5521", _NORTH, "rev_evo.3"),
        _Device("Canon Medical Systems", "Aquilion ONE", "CT-RIV-1", "CN-CT-9917", _RIVER, "10.4"),
    ),
}

_SURNAMES = ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
             "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
             "Green", "Hall", "Wood", "Jackson", "Clarke", "Nguyen", "Kowalski", "Murphy")
_GIVEN_F = ("Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Sophia", "Emily", "Aisha", "Zofia")
_GIVEN_M = ("Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Arthur", "Oscar", "Omar", "Tomasz")
_STAFF = (("Dr Hughes^Alan", "authorizing"), ("Dr Okafor^Ngozi", "authorizing"),
          ("Dr Lindqvist^Eva", "authorizing"), ("Morgan^Sam", "administering"),
          ("Ahmed^Rana", "administering"), ("Fischer^Jonas", "administering"))

_DEFAULT_START = dt.datetime(2025, 1, 1, 7, 0)
_DEFAULT_DAYS = 670  # up to early November 2026


def _patient(rng: random.Random, study_date: dt.date, kind: str) -> dict[str, Any]:
    sex = rng.choice("MF") if rng.random() < 0.98 else "O"
    if kind == "mobile_carm":
        age = rng.choice((rng.randint(18, 60), rng.randint(55, 95)))
    elif kind == "fixed_angio":
        age = rng.randint(35, 90)
    else:
        age = rng.randint(1, 95) if rng.random() < 0.08 else rng.randint(18, 90)
    birth = study_date - dt.timedelta(days=int(age * 365.25) + rng.randint(0, 364))
    given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
    adult = age >= 18
    weight = round(rng.gauss(78 if sex == "M" else 68, 14), 1) if adult else round(4 + age * 3.2, 1)
    size = round(rng.gauss(1.77 if sex == "M" else 1.64, 0.07), 2) if adult else round(0.55 + age * 0.06, 2)
    pregnancy = None
    if sex == "F" and 12 <= age <= 52:
        r = rng.random()
        pregnancy = 1 if r < 0.55 else 4 if r < 0.75 else 2 if r < 0.77 else None
    return {
        "patient_id": f"P{rng.randrange(10**7, 10**8)}",
        "patient_name": f"{rng.choice(_SURNAMES)}^{given}",
        "patient_sex": sex,
        "birth_date": birth,
        "weight_kg": max(weight, 2.5) if rng.random() < 0.8 else None,
        "size_m": max(size, 0.45) if rng.random() < 0.7 else None,
        "pregnancy_status": pregnancy,
    }


def _study_start(rng: random.Random) -> dt.datetime:
    day = _DEFAULT_START + dt.timedelta(days=rng.randrange(_DEFAULT_DAYS))
    return day + dt.timedelta(minutes=rng.randrange(0, 11 * 60))


def _common(rng: random.Random, kind: str, device: _Device) -> dict[str, Any]:
    start = _study_start(rng)
    d = _patient(rng, start.date(), kind)
    d.update(
        study_instance_uid=_rng_uid(rng), sop_instance_uid=_rng_uid(rng),
        series_instance_uid=_rng_uid(rng), study_datetime=start,
        accession=f"A{rng.randrange(10**8, 10**9)}",
        manufacturer=device.manufacturer, model=device.model, station_name=device.station,
        device_serial=device.serial, device_observer_uid=device.observer_uid,
        software_versions=device.software, institution=device.institution,
    )
    return d


_MOBILE_REGIONS = ("hip", "femur", "knee", "ankle", "wrist", "lumbar_spine", "shoulder",
                   "cervical_spine", "hand")
_ANGIO_CASES = (  # (description, region, fluoro DAP scale Gy*cm2, acq DAP scale)
    ("Coronary angiography", "heart", 0.8, 2.5),
    ("PCI", "heart", 1.2, 3.0),
    ("Cerebral angiography", "head", 0.5, 4.0),
    ("Hepatic chemoembolisation", "abdomen", 1.5, 6.0),
    ("Peripheral angioplasty", "lower_leg", 0.4, 1.5),
    ("EVAR", "abdomen", 2.0, 5.0),
    ("Pelvic embolisation", "pelvis", 1.6, 5.5),
)
_RF_CASES = (("Barium swallow", "chest"), ("Small bowel follow-through", "abdomen"),
             ("Hysterosalpingogram", "pelvis"), ("Micturating cystogram", "pelvis"),
             ("Nephrostomy", "kidney"), ("Lumbar facet injection", "lumbar_spine"))
_DX_CASES = (("Chest PA", "chest", 0.05, 0.15), ("Abdomen AP", "abdomen", 0.8, 2.5),
             ("Pelvis AP", "pelvis", 0.6, 2.0), ("Lumbar spine AP/LAT", "lumbar_spine", 0.7, 3.0),
             ("Knee AP/LAT", "knee", 0.02, 0.06), ("Hand", "hand", 0.005, 0.02))


def _fluoro_event(rng: random.Random, t: dt.datetime, plane: str, region: Code, dap_scale: float,
                  dur: float, rate: float | None, protocol: str, field_cm2: float) -> ProjectionEventSpec:
    dap = round(dap_scale * dur / 10 * rng.uniform(0.3, 1.7), 5)
    return ProjectionEventSpec(
        datetime=t, plane=plane, event_type="fluoroscopy", protocol=protocol,
        dap_gy_cm2=dap, dose_rp_gy=round(dap / field_cm2, 6),
        kvp=round(rng.uniform(65, 105)), tube_current_ma=round(rng.uniform(5, 60), 1),
        pulse_rate=rate, pulse_width_ms=round(rng.uniform(3, 12), 1) if rate else None,
        irradiation_duration_s=round(dur, 1),
        positioner_primary_angle_deg=round(rng.uniform(-45, 45), 1),
        positioner_secondary_angle_deg=round(rng.uniform(-30, 30), 1),
        target_region=region, irradiation_event_uid=_rng_uid(rng))


def _acq_event(rng: random.Random, t: dt.datetime, plane: str, region: Code, dap_scale: float,
               kind: str, protocol: str, field_cm2: float) -> ProjectionEventSpec:
    frames = rng.randint(1, 3) if kind == "dx" else rng.randint(8, 180)
    dap = round(dap_scale * rng.uniform(0.3, 1.7) * (1 if kind == "dx" else frames / 60), 5)
    rate = None if kind == "dx" else rng.choice((2.0, 3.0, 7.5, 15.0, 30.0))
    event_type = "stationary"
    if kind == "fixed_angio" and rng.random() < 0.06:
        event_type = "rotational"
    pulse_width = round(rng.uniform(4, 12), 1) if rate else None
    duration = round(frames / rate, 2) if rate else round(rng.uniform(0.005, 0.2), 3)
    return ProjectionEventSpec(
        datetime=t, plane=plane, event_type=event_type, protocol=protocol,
        dap_gy_cm2=max(dap, 0.001), dose_rp_gy=round(max(dap, 0.001) / field_cm2, 6),
        kvp=round(rng.uniform(60, 125)), tube_current_ma=round(rng.uniform(100, 800), 1),
        pulse_rate=rate, pulse_width_ms=pulse_width, number_of_frames=frames,
        irradiation_duration_s=duration,
        exposure_time_ms=round(frames * pulse_width, 1) if pulse_width else round(duration * 1000, 1),
        positioner_primary_angle_deg=round(rng.uniform(-90, 90), 1) if kind != "dx" else None,
        positioner_secondary_angle_deg=round(rng.uniform(-40, 40), 1) if kind != "dx" else None,
        exposure_index=round(rng.uniform(200, 800)) if kind == "dx" else None,
        deviation_index=round(rng.uniform(-2, 2), 1) if kind == "dx" else None,
        target_region=region, irradiation_event_uid=_rng_uid(rng))


PROJECTION_KINDS = ("mobile_carm", "rf_room", "fixed_angio", "dx")
_KIND_WEIGHTS = (0.35, 0.25, 0.10, 0.30)


def random_projection_spec(rng: random.Random, *, kind: str | None = None,
                           n_events: int | None = None, biplane: bool | None = None,
                           **overrides: Any) -> ProjectionRDSRSpec:
    """A realistic randomised projection procedure, reproducible from ``rng``.

    kind: 'mobile_carm' (orthopaedic theatre, short fluoro, single plane),
    'rf_room' (fluoroscopy room), 'fixed_angio' (50-300 events, ~30% biplane),
    'dx' (radiography, 1-4 stationary events). Remaining keyword arguments
    override spec fields.
    """
    if kind is None:
        kind = rng.choices(PROJECTION_KINDS, _KIND_WEIGHTS)[0]
    if kind not in PROJECTION_KINDS:
        raise ValueError(f"kind must be one of {PROJECTION_KINDS}")
    device = rng.choice(_DEVICES[kind])
    common = _common(rng, kind, device)
    t = common["study_datetime"] + dt.timedelta(minutes=rng.randint(2, 15))
    events: list[ProjectionEventSpec] = []
    participants: list[ParticipantLike] = []
    extra: dict[str, Any] = {}

    if kind == "mobile_carm":
        region = ANATOMY[rng.choice(_MOBILE_REGIONS)]
        n = n_events if n_events is not None else rng.randint(1, 20)
        rate = rng.choice((None, 8.0, 15.0))
        for _ in range(n):
            dur = rng.uniform(0.5, 25)
            events.append(_fluoro_event(rng, t, "single", region, 0.25, dur, rate,
                                        rng.choice(("Standard", "Low Dose", "Bone")), 250.0))
            t += dt.timedelta(seconds=dur + rng.uniform(20, 400))
        extra.update(modality="RF", reference_point_definition=RP_IMAGE_INPUT_30CM,
                     study_description=f"Theatre fluoroscopy {region[2].lower()}",
                     procedure_intent="therapeutic", mechanical_data_available=rng.random() < 0.5)
        if rng.random() < 0.5:
            participants.append((f"{rng.choice(_SURNAMES)}^Surgeon", "administering"))
    elif kind == "fixed_angio":
        desc, region_key, fl_scale, acq_scale = rng.choice(_ANGIO_CASES)
        region = ANATOMY[region_key]
        two = biplane if biplane is not None else rng.random() < 0.3
        n = n_events if n_events is not None else rng.randint(50, 300)
        rate = rng.choice((7.5, 10.0, 15.0))
        for _ in range(n):
            plane = rng.choice("AB") if two else "single"
            if rng.random() < 0.7:
                dur = rng.uniform(1, 40)
                events.append(_fluoro_event(rng, t, plane, region, fl_scale, dur, rate,
                                            "Fluoro Normal", 90.0))
            else:
                dur = 5.0
                events.append(_acq_event(rng, t, plane, region, acq_scale, kind,
                                         rng.choice(("DSA 2fps", "Cine 15fps", "DA 3fps")), 90.0))
            t += dt.timedelta(seconds=dur + rng.uniform(5, 90))
        extra.update(modality="XA", study_description=desc,
                     procedure_intent=rng.choice(("diagnostic", "therapeutic", "combined")))
        auth = [s for s in _STAFF if s[1] == "authorizing"]
        adm = [s for s in _STAFF if s[1] == "administering"]
        participants.append((*rng.choice(auth), f"STAFF{rng.randint(100, 999)}"))
        participants.append((*rng.choice(adm), f"STAFF{rng.randint(100, 999)}"))
    elif kind == "rf_room":
        desc, region_key = rng.choice(_RF_CASES)
        region = ANATOMY[region_key]
        n = n_events if n_events is not None else rng.randint(3, 30)
        for _ in range(n):
            if rng.random() < 0.6:
                dur = rng.uniform(2, 60)
                events.append(_fluoro_event(rng, t, "single", region, 0.5, dur,
                                            rng.choice((3.0, 7.5, 15.0)), "Fluoro", 150.0))
            else:
                dur = 2.0
                events.append(_acq_event(rng, t, "single", region, 1.0, kind, "Spot", 150.0))
            t += dt.timedelta(seconds=dur + rng.uniform(10, 120))
        extra.update(modality="RF", study_description=desc)
        if rng.random() < 0.4:
            participants.append((*rng.choice(_STAFF[3:]),))
    else:  # dx
        desc, region_key, lo, hi = rng.choice(_DX_CASES)
        region = ANATOMY[region_key]
        n = n_events if n_events is not None else rng.randint(1, 4)
        for _ in range(n):
            events.append(_acq_event(rng, t, "single", region, rng.uniform(lo, hi), kind, desc, 600.0))
            t += dt.timedelta(seconds=rng.uniform(20, 120))
        extra.update(modality="DX", study_description=desc)

    spec = ProjectionRDSRSpec(**common, events=events, participants=participants, **extra)
    for key, value in overrides.items():
        if not hasattr(spec, key):
            raise TypeError(f"ProjectionRDSRSpec has no field {key!r}")
        setattr(spec, key, value)
    return spec


_CT_CASES = (  # (description, region, phantom, ctdivol range, length range mm)
    ("CT Head", "head", "head", (35.0, 65.0), (140, 200)),
    ("CT Chest", "chest", "body", (4.0, 14.0), (280, 380)),
    ("CT Abdomen Pelvis", "abdomen", "body", (7.0, 18.0), (380, 520)),
    ("CT Chest Abdomen Pelvis", "chest_abdomen_pelvis", "body", (7.0, 16.0), (600, 800)),
    ("CT Coronary Angiography", "heart", "body", (10.0, 40.0), (110, 160)),
    ("CT Cervical Spine", "cervical_spine", "body", (12.0, 25.0), (140, 200)),
)


def random_ct_spec(rng: random.Random, *, n_events: int | None = None,
                   **overrides: Any) -> CTRDSRSpec:
    """A realistic randomised CT exam (localizer plus 0-3 further acquisitions)."""
    device = rng.choice(_DEVICES["ct"])
    common = _common(rng, "ct", device)
    desc, region_key, phantom, (c_lo, c_hi), (l_lo, l_hi) = rng.choice(_CT_CASES)
    region = ANATOMY[region_key]
    n = n_events if n_events is not None else rng.randint(1, 4)
    dose_check = rng.random() < 0.6  # devices that report TID 10015 on every event
    t = common["study_datetime"] + dt.timedelta(minutes=rng.randint(1, 10))
    events = []
    for i in range(n):
        if i == 0:
            length = rng.uniform(l_lo, l_hi) + 100
            ctdi = rng.uniform(0.05, 0.4)
            ev = CTEventSpec(
                datetime=t, protocol="Topogram" if "SIEMENS" in device.manufacturer else "Scout",
                acquisition_type="constant_angle", target_region=region, ctdivol_mgy=round(ctdi, 2),
                dlp_mgy_cm=round(ctdi * length / 10, 2), phantom="body",
                scanning_length_mm=round(length), kvp=120.0, tube_current_ma=round(rng.uniform(20, 50)),
                exposure_time_s=round(length / 100, 2), irradiation_event_uid=_rng_uid(rng))
        else:
            length = rng.uniform(l_lo, l_hi)
            ctdi = rng.uniform(c_lo, c_hi)
            pitch = rng.choice((0.6, 0.8, 0.984, 1.0, 1.2, 1.375))
            rot = rng.choice((0.28, 0.35, 0.5, 1.0))
            ev = CTEventSpec(
                datetime=t, protocol=desc.replace("CT ", "") + ("" if i == 1 else f" phase {i}"),
                acquisition_type="sequenced" if region_key == "head" and rng.random() < 0.3 else "spiral",
                target_region=region, ctdivol_mgy=round(ctdi, 2),
                dlp_mgy_cm=round(ctdi * (length + 40) / 10, 2), phantom=phantom,
                scanning_length_mm=round(length), pitch_factor=pitch,
                kvp=rng.choice((80.0, 100.0, 120.0, 140.0)), tube_current_ma=round(rng.uniform(80, 450)),
                max_tube_current_ma=500.0, rotation_time_s=rot,
                exposure_time_s=round(length / (pitch * 38.4) * rot, 2),
                single_collimation_mm=0.6, total_collimation_mm=38.4,
                irradiation_event_uid=_rng_uid(rng))
        if dose_check:
            exceeded = rng.random() < 0.03
            ev.dose_check = CTDoseCheckSpec(
                ctdivol_alert_value_mgy=1000.0,
                ctdivol_notification_value_mgy=(ev.ctdivol_mgy * 0.9 if exceeded and ev.ctdivol_mgy is not None else None),
                ctdivol_forward_estimate_mgy=(ev.ctdivol_mgy if exceeded else None),
                reason_for_proceeding="Clinically justified" if exceeded else None,
                authorizing_person=rng.choice(_STAFF[:3])[0] if exceeded else None)
        events.append(ev)
        t += dt.timedelta(seconds=rng.uniform(20, 300))
    spec = CTRDSRSpec(**common, study_description=desc, events=events)
    for key, value in overrides.items():
        if not hasattr(spec, key):
            raise TypeError(f"CTRDSRSpec has no field {key!r}")
        setattr(spec, key, value)
    return spec
