"""Two sites for the RSO site-scoping tests: distinct devices at "St Anne Hospital" (A) and "Bayside Hospital" (B),
studies made by the project's RDSR builder and sent through the real ingest (spool -> register -> ingest), a
pregnancy alert at each site, a patient examined at both, and RSOs assigned to one site each.

The web tests' own data (``data.build_registry``) are at two other sites (the builder's demo hospitals), so a
site-A RSO must see none of them either."""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

from django.utils import timezone

from .data import PASSWORD

SITE_A = "St Anne Hospital"
SITE_B = "Bayside Hospital"

SITE_PATIENTS = {
    # key: (patient id, DICOM name, sex, birth date)
    "sa": ("PSA0001", "Ødegård^Åse", "F", dt.date(1990, 6, 1)),
    "sb": ("PSB0001", "Kowalska^Małgorzata", "F", dt.date(1991, 7, 2)),
    "ab": ("PSAB001", "Papadopoulou^Ελένη", "F", dt.date(1992, 8, 3)),
}
DEVICES = {
    # site: (institution, serial, station, observer UID)
    "A": (SITE_A, "SCOPE-A-RF", "ANNE-RF1", "2.25.411100000000000000000000000000001"),
    "B": (SITE_B, "SCOPE-B-RF", "BAY-RF1", "2.25.411100000000000000000000000000002"),
}
PLAN = [
    # label, patient, site, days ago, DICOM pregnancy status (2 = possibly pregnant -> an alert), description
    ("sa_rf", "sa", "A", 5, 2, "Site A barium swallow"),
    ("sb_rf", "sb", "B", 6, 2, "Site B barium swallow"),
    ("ab_a", "ab", "A", 8, 1, "Both-sites swallow at A"),
    ("ab_b", "ab", "B", 9, 2, "Both-sites swallow at B"),
]


@dataclass
class SiteData:
    patients: dict = field(default_factory=dict)   # key -> Patient
    studies: dict = field(default_factory=dict)    # label -> Study
    alerts: dict = field(default_factory=dict)     # study label -> its pregnancy Alert (sa_rf, sb_rf, ab_b)
    users: dict = field(default_factory=dict)      # "rso_a", "rso_b" -> User


def build_two_sites(tmp_path: Path, *, now: dt.datetime | None = None, seed: int = 11) -> SiteData:
    from dicom_listener.spool import Spool
    from dosereg.rdsr import builder as B
    from dosereg.registry.models import Patient, Study
    from dosereg.pipeline.flow import file_import

    now = now or timezone.now()
    rng = random.Random(seed)
    spool = Spool(tmp_path / "site-spool")
    out_dir = tmp_path / "site-rdsr"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = SiteData()
    for i, (label, key, site, days, pregnancy, desc) in enumerate(PLAN):
        pid, name, sex, birth = SITE_PATIENTS[key]
        institution, serial, station, observer = DEVICES[site]
        when = timezone.make_naive(now - dt.timedelta(days=days, hours=i), timezone.get_default_timezone())
        ds = B.build_projection_rdsr(B.random_projection_spec(
            rng, kind="rf_room", patient_id=pid, patient_name=name, patient_sex=sex, birth_date=birth,
            study_datetime=when, study_description=desc, pregnancy_status=pregnancy, institution=institution,
            manufacturer="Scope Medical", model="Scope RF", device_serial=serial, station_name=station,
            device_observer_uid=observer))
        obj, _ = file_import(path=B.write(ds, out_dir / f"{label}.dcm"), spool=spool)
        assert obj.status == "ingested", (label, obj.quarantine_reason)
        study = Study.objects.select_related("device").get(pk=obj.study_id)
        assert study.device.institution == institution, (label, study.device.institution)
        data.studies[label] = study
    for key, (pid, *_rest) in SITE_PATIENTS.items():
        data.patients[key] = Patient.objects.get(patient_id=pid)
    return data


def find_alerts(data: SiteData) -> SiteData:
    """The pregnancy alerts, once the exposure recompute (an on-commit hook of the ingest) has run."""
    from dosereg.exposure.models import Alert

    for label in ("sa_rf", "sb_rf", "ab_b"):
        alert = Alert.objects.filter(study=data.studies[label], quantity="pregnancy").first()
        assert alert is not None, f"no pregnancy alert for {label}"
        data.alerts[label] = alert
    return data


def make_site_users(data: SiteData) -> SiteData:
    """RSOs of one site each; A's name is assigned with other case and spaces (names compare trimmed, caseless)."""
    from dosereg.web.services import site_assignment_set, user_create

    for key, sites in (("rso_a", [f"  {SITE_A.upper()} "]), ("rso_b", [SITE_B])):
        user = user_create(username=f"t-{key.replace('_', '-')}", password=PASSWORD, role="rso")
        site_assignment_set(user=user, sites=sites)
        data.users[key] = user
    return data
