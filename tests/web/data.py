"""Registry data for the web tests, made by the project's RDSR builder and sent
through the real ingest service (spool -> register -> ingest), plus users per role."""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth.models import Group
from django.utils import timezone

PASSWORD = "web-test-pass-1"
ROLES = ("rso", "physicist", "staff", "patient", "patient2", "admin")

PATIENTS = {
    # key: (patient id, DICOM name, sex, birth date)
    "a": ("PW0001", "Alpha^Ann", "F", dt.date(1978, 5, 17)),
    "b": ("PW0002", "Beta^Bob", "M", dt.date(1960, 1, 2)),
    "c": ("PW0003", "Gamma^Gus", "M", dt.date(1990, 3, 3)),
}


@dataclass
class WebData:
    patients: dict = field(default_factory=dict)      # key -> Patient
    studies: dict = field(default_factory=dict)       # label -> Study
    users: dict = field(default_factory=dict)         # role -> User
    quarantined: list = field(default_factory=list)
    tmp: Path | None = None


def _naive(d: dt.datetime) -> dt.datetime:
    return timezone.make_naive(d, timezone.get_default_timezone()) if timezone.is_aware(d) else d


def build_registry(tmp_path: Path, *, now: dt.datetime | None = None, seed: int = 5) -> WebData:
    from dicom_listener.spool import Spool
    from dosereg.rdsr import builder as B
    from dosereg.registry.models import Patient, Study
    from dosereg.pipeline.flow import file_import

    now = now or timezone.now()
    rng = random.Random(seed)
    spool = Spool(tmp_path / "spool")
    out_dir = tmp_path / "rdsr"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = WebData(tmp=tmp_path)

    def ident(key):
        pid, name, sex, birth = PATIENTS[key]
        return {"patient_id": pid, "patient_name": name, "patient_sex": sex, "birth_date": birth}

    plan = [
        # label, patient, kind, days ago, overrides
        ("a_angio", "a", "fixed_angio", 10, {"study_description": "Coronary angiography"}),
        ("a_ct", "a", "ct", 30, {"study_description": "CT Chest"}),
        ("a_rf_preg", "a", "rf_room", 45, {"pregnancy_status": 2, "study_description": "Barium swallow"}),
        ("a_mr", "a", "mr", 20, {"study_description": "Intraoperative MRI head"}),
        ("b_carm", "b", "mobile_carm", 5, {"study_description": "Hip fracture fixation"}),
        ("b_dx", "b", "dx", 15, {"study_description": "Chest PA"}),
        ("c_ct", "c", "ct", 3, {"study_description": "CT Chest"}),
        ("c_ct2", "c", "ct", 40, {"study_description": "CT CHEST W/O"}),
    ]
    for i, (label, key, kind, days, extra) in enumerate(plan):
        when = _naive(now - dt.timedelta(days=days, hours=i))
        fields = {**ident(key), "study_datetime": when, **extra}
        if kind == "ct":
            ds = B.build_ct_rdsr(B.random_ct_spec(rng, **fields))
        elif kind == "mr":
            ds = B.build_mr_image(B.MRImageSpec(**fields, acquisition_datetime=when, sar_w_kg=1.4))
        else:
            ds = B.build_projection_rdsr(B.random_projection_spec(rng, kind=kind, **fields))
        path = B.write(ds, out_dir / f"{label}.dcm")
        obj, _ = file_import(path=path, spool=spool)
        assert obj.status == "ingested", (label, obj.quarantine_reason)
        data.studies[label] = Study.objects.get(pk=obj.study_id)
    bad = out_dir / "broken.dcm"
    bad.write_bytes(b"DICM" + b"\x00" * 200)
    obj, _ = file_import(path=bad, spool=spool)
    data.quarantined.append(obj)
    for key, (pid, *_rest) in PATIENTS.items():
        data.patients[key] = Patient.objects.get(patient_id=pid)
    return data


def ensure_seed_data() -> None:
    """Re-apply the migrations' seed data when a live-server test's flush removed it (idempotent)."""
    import importlib

    from django.apps import apps as django_apps

    from dosereg.web.seeds import seed_all

    seed_all(django_apps)
    for app, module in (("exposure", "dosereg.exposure.migrations.0002_seed_defaults"),
                        ("staff", "dosereg.staff.migrations.0002_seed_defaults")):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if app == "exposure":
            from dosereg.exposure.models import RuleSet

            if RuleSet.objects.exists():
                continue
        else:
            from dosereg.staff.models import StaffSetting

            if StaffSetting.objects.exists():
                continue
        mod.seed(django_apps, None)


def make_users(data: WebData) -> WebData:
    from dosereg.web.models import PatientAccount
    from dosereg.web.services import _sha, user_create

    for role in ("rso", "physicist", "staff", "admin"):
        data.users[role] = user_create(username=f"t-{role}", password=PASSWORD, role=role)
    for role, key in (("patient", "a"), ("patient2", "b")):
        user = user_create(username=f"t-{role}", password=PASSWORD, role="patient")
        PatientAccount.objects.create(patient=data.patients[key], user=user, token_sha256=_sha(f"tok-{role}"),
                                      expires_at=timezone.now(), verified_at=timezone.now())
        data.users[role] = user
    # staff dosimetry record for the staff user, with monthly badge readings (through the staff app's services)
    try:
        from dosereg.staff import services as staff_services
        from dosereg.staff.dosimetry.badges import import_badge_csv
    except ImportError:
        return data
    member = staff_services.staff_create(name="Test^Staff", employee_id="E-T-1", role="first_operator",
                                         user=data.users["staff"])
    today = timezone.localdate()
    start = dt.date(today.year - 1, 1, 1)
    collar = staff_services.badge_create(badge_id="B-COLLAR-1", position="collar")
    waist = staff_services.badge_create(badge_id="B-WAIST-1", position="waist")
    for b in (collar, waist):
        staff_services.badge_assign(badge=b, staff=member, start=start)
    lines = ["badge_id,wear_start,wear_end,hp10_msv,hp3_msv,hp007_msv"]
    month = start
    i = 0
    while True:
        nxt = dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)
        end = nxt - dt.timedelta(days=1)
        if end >= today:
            break
        lines.append(f"B-COLLAR-1,{month},{end},{0.3 + (i % 4) * 0.15:.2f},{0.35 + (i % 3) * 0.2:.2f},{0.4:.2f}")
        lines.append(f"B-WAIST-1,{month},{end},{'M' if i % 3 == 0 else f'{0.05 + (i % 2) * 0.04:.2f}'},,")
        month, i = nxt, i + 1
    path = data.tmp / "badges.csv"
    path.write_text("\n".join(lines) + "\n")
    import_badge_csv(path)
    assert Group.objects.filter(name="rso").exists()
    return data
