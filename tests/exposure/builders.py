"""Small RDSR files made with the project's builder (dosereg.rdsr.builder)."""
from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from dosereg.rdsr import builder as b

_n = itertools.count(1)


def rf_rdsr(directory: Path, *, when: dt.datetime, kar: float, kap: float, patient_id: str = "EXP-1", issuer: str = "DOSEREG",
            region: str = "chest", pregnancy: int | None = None, study_uid: str | None = None, sop_uid: str | None = None,
            description: str | None = "Angiography", fluoro_s: float = 60.0, station: str = "ANGIO1", modality: str = "RF",
            institution: str = "Northfield General Hospital", birth_date: dt.date | None = dt.date(1980, 1, 1)) -> Path:
    ev = b.ProjectionEventSpec(datetime=when + dt.timedelta(minutes=1), event_type="fluoroscopy", dap_gy_cm2=kap, dose_rp_gy=kar,
                               irradiation_duration_s=fluoro_s, pulse_rate=7.5, kvp=70, tube_current_ma=10,
                               target_region=b.ANATOMY[region])
    spec = b.ProjectionRDSRSpec(
        patient_id=patient_id, issuer_of_patient_id=issuer, patient_sex="F", birth_date=birth_date, pregnancy_status=pregnancy,
        study_datetime=when, study_instance_uid=study_uid, sop_instance_uid=sop_uid, study_description=description,
        modality=modality, events=[ev], station_name=station, device_serial=f"SN-{station}", institution=institution,
    )
    return b.write(b.build_projection_rdsr(spec), directory / f"rf-{next(_n)}.dcm")


def ct_rdsr(directory: Path, *, when: dt.datetime, ctdivol: float, dlp: float, region: str = "chest", patient_id: str = "EXP-CT",
            phantom: str = "body", protocol: str = "Chest routine", dose_check=None, pregnancy: int | None = None,
            birth_date: dt.date | None = dt.date(1970, 1, 1)) -> Path:
    ev = b.CTEventSpec(datetime=when + dt.timedelta(minutes=1), protocol=protocol, target_region=b.ANATOMY[region],
                       ctdivol_mgy=ctdivol, dlp_mgy_cm=dlp, phantom=phantom, dose_check=dose_check)
    spec = b.CTRDSRSpec(patient_id=patient_id, study_datetime=when, events=[ev], pregnancy_status=pregnancy, birth_date=birth_date,
                        patient_sex="F", study_description=protocol)
    return b.write(b.build_ct_rdsr(spec), directory / f"ct-{next(_n)}.dcm")
