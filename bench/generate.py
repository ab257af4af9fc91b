#!/usr/bin/env python
"""Benchmark registry generator (issue 7): builder-made RDSRs, parsed by the project's parser, loaded fast.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dosereg_bench_pages_gen python bench/generate.py \\
        --events 1000000 [--studies 100000] [--patients 30000] [--templates 3000] [--workers 2] [--seed 1]

(the database must exist and be migrated: ``python manage.py migrate``; its registry is replaced.)

How (one run, PostgreSQL only):

1. **Templates.** ``--templates`` distinct procedures are made by the project's RDSR builder
   (``dosereg.rdsr.builder``: ``random_projection_spec`` for mobile C-arms, fluoroscopy rooms, fixed
   angiography (40-200 events) and radiography, ``random_ct_spec`` for CT; every device of the builder in
   ``--device-copies`` installations), serialised with ``to_bytes`` and parsed back with the project's own
   parser (``dosereg.rdsr.extract.extract_bytes``) in ``--workers`` processes. Each parsed document is written
   by the registry's own ingest writer (``dosereg.registry.document._write_document``: device and patient
   resolution, study upsert, events, plane totals, participants, study totals), exactly as an ingested object.
2. **Copies.** The template rows are moved aside and the registry is emptied (devices kept). Each of the
   ``--studies`` studies is a copy of a template (mix by kind, then adjusted so the events total exactly
   ``--events``) with its own patient (``--patients``, every patient at least one study, a skewed number of
   studies each; demographics from the builder's patient generator), its own date in the last two years, new
   Study/SOP Instance/Irradiation Event UIDs (derived from the copy number: re-serialising every copy with
   ``rewrite_uids`` would cost tens of minutes) and every dose value (KAP, Ka,r, CTDIvol, DLP of events, planes, objects
   and study totals) scaled by one log-normal factor per copy (sigma 0.35). The copies are made server-side by
   INSERT ... SELECT from the template rows (1M events in about a minute instead of a per-row Python loop).
3. **Derived data.** Protocol name mappings through the web services (``suggest_standard_name``,
   ``protocol_mapping_set``); cumulative exposure windows and alerts by the exposure app's own
   ``patient_exposure_recompute`` for every patient (``--workers`` processes; ``--exposure sql`` instead
   writes only the "now" windows with one SQL statement, for quick runs); an RSO's steady state of the
   alerts in SQL (``alert_workflow``: older alerts acknowledged and closed or on follow-up, as the alert
   services would record it); the protocol audit summaries by
   ``dosereg.protocols.services.summaries_rebuild_all``; ANALYZE.

Prints the time of each step. ``populate()`` is what ``bench/bench_pages.py`` calls.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
os.environ.setdefault("DOSEREG_PRODUCTION", "false")  # a benchmark on PostgreSQL is not a deployment (settings.PRODUCTION)

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

# (kind, share of studies); with fixed angiography at 40-200 events this mix averages about 10 events a study
KINDS = (("mobile_carm", 0.28), ("rf_room", 0.14), ("fixed_angio", 0.03), ("dx", 0.33), ("ct", 0.22))
DOSE_SIGMA = 0.35
UID_ROOT = "2.25.4242"

STUDY_DOSE = ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "dlp_total_mgy_cm", "ctdivol_max_mgy")
PLANE_DOSE = ("dap_total_gy_cm2", "dose_rp_total_gy", "fluoro_dap_total_gy_cm2", "acquisition_dap_total_gy_cm2",
              "fluoro_dose_rp_total_gy", "acquisition_dose_rp_total_gy")
EVENT_DOSE = ("dap_gy_cm2", "dose_rp_gy", "ctdivol_mgy", "dlp_mgy_cm")


def log(msg: str) -> None:
    print(f"[generate {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------
# 1. templates (worker processes: builder + parser only, no database)
# ---------------------------------------------------------------------------
def make_template(args: tuple[int, str, int, int]):
    """(index, kind, seed, device copies) -> (index, kind, size, sha256, DoseDocument). Pure: builder + parser."""
    from dosereg.rdsr import builder as B
    from dosereg.rdsr.extract import extract_bytes

    index, kind, seed, copies = args
    rng = random.Random(seed)
    if kind == "ct":
        spec = B.random_ct_spec(rng)
    elif kind == "fixed_angio":
        spec = B.random_projection_spec(rng, kind=kind, n_events=rng.randint(40, 200))
    else:
        spec = B.random_projection_spec(rng, kind=kind)
    c = rng.randrange(copies)
    if c:  # another installation of the same model
        spec.station_name = f"{spec.station_name}-{c + 1}"
        spec.device_serial = f"{spec.device_serial}-{c + 1}"
        spec.device_observer_uid = B.deterministic_uid("dosereg-bench-device", spec.manufacturer, spec.model,
                                                       spec.device_serial)
    ds = B.build_ct_rdsr(spec) if kind == "ct" else B.build_projection_rdsr(spec)
    data = B.to_bytes(ds)
    return index, kind, len(data), hashlib.sha256(data).hexdigest(), extract_bytes(data)


def template_plan(n: int, seed: int, copies: int) -> list[tuple[int, str, int, int]]:
    rng = random.Random(seed)
    kinds = [k for k, _ in KINDS]
    plan = []
    for i in range(n):
        # at least a few of every kind, then by share
        kind = kinds[i] if i < len(kinds) else rng.choices(kinds, [w for _, w in KINDS])[0]
        plan.append((i, kind, rng.getrandbits(64), copies))
    # slow kinds first, so the pool ends together
    plan.sort(key=lambda p: p[1] != "fixed_angio")
    return plan


def write_templates(n: int, seed: int, workers: int, copies: int) -> dict[int, str]:
    """Build, parse (pool) and write the templates through the ingest writer; {template study id: kind}."""
    import multiprocessing as mp

    from dosereg.registry.document import _write_document
    from dosereg.registry.models import DoseObject

    plan = template_plan(n, seed, copies)
    kinds: dict[int, str] = {}
    connection.close()  # no shared connection across fork
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        _fast_commits()
        for k, (index, kind, size, sha, doc) in enumerate(pool.imap_unordered(make_template, plan, chunksize=8)):
            with transaction.atomic():
                obj = DoseObject.objects.create(
                    sop_instance_uid=doc.sop_instance_uid, sop_class_uid=doc.sop_class_uid, sha256=sha, size_bytes=size,
                    path=f"bench://template/{index}", calling_ae="BENCH")
                _write_document(obj, doc, set())
            kinds[obj.study_id] = kind
            if (k + 1) % 500 == 0:
                log(f"  {k + 1}/{n} templates")
    return kinds


# ---------------------------------------------------------------------------
# 2. copies
# ---------------------------------------------------------------------------
def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _copy_text(v) -> str:
    if v is None:
        return r"\N"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        v = json.dumps(v)
    s = str(v)
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_rows(table: str, columns: list[str], rows) -> int:
    buf = io.StringIO()
    n = 0
    for row in rows:
        buf.write("\t".join(_copy_text(v) for v in row))
        buf.write("\n")
        n += 1
    buf.seek(0)
    with connection.cursor() as c:
        c.cursor.copy_expert(f"COPY {table} ({', '.join(_qn(x) for x in columns)}) FROM STDIN", buf)
    return n


def snapshot_templates() -> None:
    """Move the template rows aside (UNLOGGED tables) and empty the registry, devices kept."""
    from dosereg.registry.models import DoseObject, IrradiationEvent, Participant, PlaneTotal, Study

    t = {m: m._meta.db_table for m in (Study, DoseObject, PlaneTotal, IrradiationEvent, Participant)}
    with connection.cursor() as c:
        for name in ("bench_t_study", "bench_t_object", "bench_t_plane", "bench_t_event", "bench_t_participant", "bench_copy"):
            c.execute(f"DROP TABLE IF EXISTS {name}")
        c.execute(f"CREATE UNLOGGED TABLE bench_t_study AS SELECT * FROM {t[Study]}")
        c.execute(f"CREATE UNLOGGED TABLE bench_t_object AS SELECT * FROM {t[DoseObject]}")
        c.execute(f"CREATE UNLOGGED TABLE bench_t_plane AS SELECT * FROM {t[PlaneTotal]}")
        c.execute(f"""CREATE UNLOGGED TABLE bench_t_event AS
            SELECT e.*, row_number() OVER (PARTITION BY e.study_id ORDER BY e.id) AS ordinal,
                   extract(epoch FROM e.datetime - s.study_datetime) AS offset_s
            FROM {t[IrradiationEvent]} e JOIN {t[Study]} s ON s.id = e.study_id""")
        c.execute(f"CREATE UNLOGGED TABLE bench_t_participant AS SELECT * FROM {t[Participant]}")
        for name in ("bench_t_study", "bench_t_object", "bench_t_plane", "bench_t_event", "bench_t_participant"):
            c.execute(f"CREATE INDEX ON {name} ({'id' if name == 'bench_t_study' else 'study_id'})")
        c.execute("SET client_min_messages = warning")
        c.execute(f"TRUNCATE {t[Study]}, {t[DoseObject]}, registry_patient RESTART IDENTITY CASCADE")
        c.execute("RESET client_min_messages")


def _patients(n: int, rng: random.Random) -> tuple[list[tuple], list[tuple[str, date]]]:
    from django.utils import timezone

    from dosereg.rdsr import builder as B

    now = timezone.now()
    rows, demo = [], []
    for i in range(1, n + 1):
        kind = rng.choice(("mobile_carm", "fixed_angio", "ct", "dx", "rf_room"))
        p = B._patient(rng, (now - timedelta(days=rng.randrange(730))).date(), kind)  # the builder's demographics
        rows.append((i, f"BP{i:08d}", "BENCH", p["patient_name"], p["patient_sex"], p["birth_date"], False, None, now))
        demo.append((p["patient_sex"], p["birth_date"]))
    return rows, demo


def copy_plan(*, n_studies: int, n_events: int, n_patients: int, templates: dict[int, tuple[str, int]],
              rng: random.Random) -> list[tuple[int, int]]:
    """[(copy id, template study id)] with the kind mix of KINDS and exactly ``n_events`` events in total."""
    by_kind: dict[str, list[int]] = {}
    by_kind_events: dict[str, dict[int, list[int]]] = {}
    for sid, (kind, ev) in templates.items():
        by_kind.setdefault(kind, []).append(sid)
        by_kind_events.setdefault(kind, {}).setdefault(ev, []).append(sid)
    kinds = [k for k, _ in KINDS if k in by_kind]
    weights = [w for k, w in KINDS if k in by_kind]
    chosen = [rng.choice(by_kind[k]) for k in rng.choices(kinds, weights, k=n_studies)]
    total = sum(templates[s][1] for s in chosen)
    # adjust: swap templates within a kind (event counts of that kind are all present) until the total is exact
    adjustable = [i for i, s in enumerate(chosen) if templates[s][0] in ("mobile_carm", "rf_room", "fixed_angio")]
    rng.shuffle(adjustable)
    for i in adjustable:
        diff = n_events - total
        if diff == 0:
            break
        kind, ev = templates[chosen[i]]
        options = by_kind_events[kind]
        target = ev + diff
        best = min(options, key=lambda e: abs(e - target))
        if best != ev:
            chosen[i] = rng.choice(options[best])
            total += best - ev
    if total != n_events:
        log(f"  note: {total:,} events (could not hit {n_events:,} exactly with these templates)")
    return list(enumerate(chosen, start=1))


def replicate(*, n_studies: int, n_events: int, n_patients: int, kinds: dict[int, str], seed: int) -> dict:
    from django.utils import timezone

    from dosereg.registry.models import DoseObject, IrradiationEvent, Participant, Patient, PlaneTotal, Study

    rng = random.Random(seed + 1)
    with connection.cursor() as c:
        c.execute("SELECT id, event_count FROM bench_t_study")
        templates = {sid: (kinds[sid], ev) for sid, ev in c.fetchall()}
    t0 = time.perf_counter()
    rows, demo = _patients(n_patients, rng)
    copy_rows(Patient._meta.db_table, ["id", "patient_id", "issuer", "name", "sex", "birth_date", "pseudonymised",
                                       "merged_into_id", "created_at"], rows)
    log(f"  {n_patients:,} patients in {time.perf_counter() - t0:.1f} s")
    plan = copy_plan(n_studies=n_studies, n_events=n_events, n_patients=n_patients, templates=templates, rng=rng)
    # every patient one study, the rest skewed (log-normal weights: a few patients with dozens of studies)
    owners = list(range(1, n_patients + 1))[:n_studies]
    weights = [rng.lognormvariate(0, 1.1) for _ in range(n_patients)]
    owners += rng.choices(range(1, n_patients + 1), weights=weights, k=n_studies - len(owners))
    rng.shuffle(owners)
    now = timezone.now()
    with connection.cursor() as c:
        c.execute("""CREATE UNLOGGED TABLE bench_copy (copy_id bigint PRIMARY KEY, template_id bigint, patient_id bigint,
                     study_datetime timestamptz, scale float8, sex text, birth_date date)""")

    def copies():
        for (copy_id, tid), pid in zip(plan, owners):
            at = now - timedelta(days=rng.uniform(0.02, 730))
            sex, birth = demo[pid - 1]
            yield copy_id, tid, pid, at, rng.lognormvariate(0, DOSE_SIGMA), sex, birth

    t0 = time.perf_counter()
    copy_rows("bench_copy", ["copy_id", "template_id", "patient_id", "study_datetime", "scale", "sex", "birth_date"], copies())
    with connection.cursor() as c:
        c.execute("ANALYZE bench_copy")
    log(f"  copy plan in {time.perf_counter() - t0:.1f} s")

    def insert(model, template_table: str, join: str, overrides: dict[str, str], keep_id: bool = False) -> int:
        cols, exprs = [], []
        for f in model._meta.concrete_fields:
            if f.primary_key and not keep_id:
                continue
            cols.append(_qn(f.column))
            exprs.append(overrides.get(f.column, f"t.{_qn(f.column)}"))
        sql = (f"INSERT INTO {model._meta.db_table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
               f"FROM bench_copy c JOIN {template_table} t ON {join}")
        t0 = time.perf_counter()
        with connection.cursor() as cur:
            cur.execute(sql)
            n = cur.rowcount
        log(f"  {model._meta.db_table}: {n:,} rows in {time.perf_counter() - t0:.1f} s")
        return n

    scaled = lambda cols: {col: f"t.{_qn(col)} * c.scale" for col in cols}  # noqa: E731
    insert(Study, "bench_t_study", "t.id = c.template_id", {
        "id": "c.copy_id", "study_instance_uid": f"'{UID_ROOT}.1.' || c.copy_id", "patient_id": "c.patient_id",
        "study_datetime": "c.study_datetime", "accession_number": "'B' || lpad(c.copy_id::text, 9, '0')",
        "pregnancy_status": "CASE WHEN c.sex = 'F' THEN t.pregnancy_status ELSE '' END",
        "patient_sex": "c.sex",  # the copy of the patient record's sex (Study.patient_sex)
        "patient_age_years": "round((extract(epoch FROM c.study_datetime - c.birth_date::timestamptz) / 31557600.0)::numeric, 1)",
        "created_at": "c.study_datetime + interval '12 minutes'", "updated_at": "c.study_datetime + interval '12 minutes'",
        **scaled(STUDY_DOSE),
    }, keep_id=True)
    insert(DoseObject, "bench_t_object", "t.study_id = c.template_id", {
        "id": "c.copy_id", "sop_instance_uid": f"'{UID_ROOT}.2.' || c.copy_id", "study_id": "c.copy_id",
        "path": "'bench://' || c.copy_id", "received_at": "c.study_datetime + interval '10 minutes'",
        "enqueued_at": "c.study_datetime + interval '10 minutes'", "ingested_at": "c.study_datetime + interval '11 minutes'",
        "superseded_by_id": "NULL", "dlp_total_mgy_cm": "t.dlp_total_mgy_cm * c.scale",
    }, keep_id=True)
    insert(PlaneTotal, "bench_t_plane", "t.study_id = c.template_id",
           {"dose_object_id": "c.copy_id", "study_id": "c.copy_id", **scaled(PLANE_DOSE)})
    n_ev = insert(IrradiationEvent, "bench_t_event", "t.study_id = c.template_id", {
        "study_id": "c.copy_id", "dose_object_id": "c.copy_id",
        "irradiation_event_uid": f"'{UID_ROOT}.3.' || c.copy_id || '.' || t.ordinal",
        "datetime": "c.study_datetime + t.offset_s * interval '1 second'", **scaled(EVENT_DOSE),
    })
    insert(Participant, "bench_t_participant", "t.study_id = c.template_id",
           {"study_id": "c.copy_id", "dose_object_id": "c.copy_id"})
    with connection.cursor() as c:
        for model in (Study, DoseObject):
            t = model._meta.db_table
            c.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
        c.execute("""UPDATE registry_device d SET first_seen = x.lo, last_seen = x.hi
                     FROM (SELECT device_id, min(study_datetime) lo, max(study_datetime) hi FROM registry_study
                           GROUP BY device_id) x WHERE x.device_id = d.id""")
        for name in ("bench_t_study", "bench_t_object", "bench_t_plane", "bench_t_event", "bench_t_participant", "bench_copy"):
            c.execute(f"DROP TABLE {name}")
    return {"events": n_ev, "studies": n_studies, "patients": n_patients}


# ---------------------------------------------------------------------------
# 3. derived data
# ---------------------------------------------------------------------------
def map_protocols() -> int:
    """Map every vendor study description: the suggested standard name, else a new one (as a physicist would)."""
    from dosereg.registry.models import Study
    from dosereg.web import services as WS
    from dosereg.protocols.models import StandardName

    standards = list(StandardName.objects.all())
    n = 0
    for mod, desc in Study.objects.values_list("procedure_modality", "study_description").distinct().order_by():
        family = {"XA": "RF"}.get(mod, mod)
        std = WS.suggest_standard_name(desc, mod, standards) or WS.standard_name_create(name=desc, modality=family)
        WS.protocol_mapping_set(modality=mod, source_name=desc, standard_name=std)
        n += 1
    return n


def _fast_commits() -> None:
    """Bench loads only: commits need not wait for the WAL flush (durability, not consistency)."""
    with connection.cursor() as c:
        c.execute("SET synchronous_commit = off")


def _exposure_chunk(job: tuple[str, list[int]]) -> tuple[str, int, int, int]:
    """A worker's share: ("studies", study ids) derives the per-study facts in one batch (the service's own
    ``study_exposure_refresh``); ("patients", patient ids) recomputes each patient (``patient_exposure_recompute``)."""
    from dosereg.exposure import recompute as ES, study_facts as SF
    from dosereg.registry.models import Study

    kind, ids = job
    connection.close()  # this process's own connection
    _fast_commits()
    windows = alerts = 0
    if kind == "studies":
        with transaction.atomic():
            SF.study_exposure_refresh(list(Study.objects.filter(pk__in=ids).values(*SF.STUDY_FIELDS)))
    else:
        for pid in ids:
            r = ES.patient_exposure_recompute(patient_id=pid, notify=False)
            windows += r.windows_written
            alerts += len(r.alerts_created)
    connection.close()
    return kind, len(ids), windows, alerts


def exposure_by_service(workers: int) -> dict:
    """Every study and every patient through the exposure app's own services, in ``workers`` processes: first
    the per-study facts in batches of 2,000 studies, then every patient's windows and alerts (no e-mail)."""
    import multiprocessing as mp

    from dosereg.registry.models import Patient, Study

    study_ids = list(Study.objects.order_by("pk").values_list("pk", flat=True))
    patient_ids = list(Patient.objects.order_by("pk").values_list("pk", flat=True))
    connection.close()
    out = {"patients": 0, "windows": 0, "alerts": 0}
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        jobs = [("studies", study_ids[i:i + 2000]) for i in range(0, len(study_ids), 2000)]
        for _ in pool.imap_unordered(_exposure_chunk, jobs):
            pass
        log(f"  exposure: per-study facts of {len(study_ids):,} studies in {time.perf_counter() - t0:.0f} s")
        jobs = [("patients", patient_ids[i:i + 200]) for i in range(0, len(patient_ids), 200)]
        for _, n, w, a in pool.imap_unordered(_exposure_chunk, jobs):
            out["patients"] += n
            out["windows"] += w
            out["alerts"] += a
            if out["patients"] % 5000 < 200:
                log(f"  exposure: {out['patients']:,}/{len(patient_ids):,} patients ({time.perf_counter() - t0:.0f} s)")
    return out


def exposure_by_sql() -> dict:
    """Quick runs: only the windows ending now, summed in SQL from the study totals; no alerts."""
    from django.utils import timezone

    from dosereg.exposure.conf import windows_days
    from dosereg.exposure.models import PatientExposureWindow

    days = sorted(set(windows_days()))
    now = timezone.now()
    cols = {"patient_id": "s.patient_id", "window_days": "w", "start": "%(now)s - w * interval '1 day'", "end": "%(now)s",
            "procedure_count": "count(*)", "kap_gy_cm2": "sum(s.dap_total_gy_cm2)", "fluoro_time_s": "sum(s.fluoro_time_total_s)",
            "dlp_mgy_cm": "sum(s.dlp_total_mgy_cm)", "ctdivol_max_mgy": "max(s.ctdivol_max_mgy)",
            "kar_max_gy": "max(s.dose_rp_max_plane_gy)"}
    for f in PatientExposureWindow._meta.concrete_fields:
        if f.primary_key or f.column in cols or f.null:
            continue
        default = f.get_default()
        cols[f.column] = ("'" + json.dumps(default).replace("'", "''") + "'::jsonb" if isinstance(default, (dict, list))
                          else "%(now)s" if f.get_internal_type() == "DateTimeField" else repr(default).replace('"', "'")
                          if not isinstance(default, str) else "'" + default + "'")
    sql = (f"INSERT INTO {PatientExposureWindow._meta.db_table} ({', '.join(_qn(c) for c in cols)}) "
           f"SELECT {', '.join(cols.values())} FROM registry_study s CROSS JOIN unnest(%(days)s::int[]) w "
           f"WHERE s.patient_id IS NOT NULL AND s.study_datetime >= %(now)s - w * interval '1 day' "
           f"AND s.study_datetime <= %(now)s GROUP BY s.patient_id, w")
    # each record's exposure state as a recompute leaves it: its exams and last exam date (the patients list reads
    # them); an empty digest, so a real recompute of the patient runs in full
    from dosereg.exposure.models import PatientExposureState

    state_sql = (f"INSERT INTO {PatientExposureState._meta.db_table} (patient_id, inputs_digest, computed_now, "
                 f"valid_until, computed_at, study_count, last_study_at) "
                 f"SELECT p.id, '', %(now)s, NULL, %(now)s, count(s.id), max(s.study_datetime) FROM registry_patient p "
                 f"LEFT JOIN registry_study s ON s.patient_id = p.id WHERE p.merged_into_id IS NULL GROUP BY p.id "
                 f"ON CONFLICT (patient_id) DO UPDATE SET study_count = EXCLUDED.study_count, "
                 f"last_study_at = EXCLUDED.last_study_at")
    with connection.cursor() as c:
        c.execute(sql, {"now": now, "days": days})
        windows = c.rowcount
        c.execute(state_sql, {"now": now})
        return {"windows": windows, "alerts": 0}


def alert_workflow(*, seed: int) -> dict:
    """An RSO's steady state instead of every alert ever raised still open (SQL, for speed): each alert is dated
    when its report would have raised it (20 min after the study), alerts older than four weeks were acknowledged
    and closed (92 %) or put on follow-up (8 %, some overdue), newer ones are half acknowledged, half open. Writes
    what ``alert_acknowledge`` / ``alert_schedule_follow_up`` / ``alert_close`` write (status, who and when,
    an AlertEvent per transition)."""
    from django.utils import timezone

    from dosereg.exposure.models import Alert, AlertEvent
    from dosereg.web.services import user_create

    rso = user_create(username="bench-rso-desk", password=f"bench-{seed}-not-for-login", role="rso")
    a, e = Alert._meta.db_table, AlertEvent._meta.db_table
    pick = "((a.id * 2654435761 + %(seed)s) %% 100)"
    with connection.cursor() as c:
        c.execute(f"""UPDATE {a} a SET raised_at = COALESCE(s.study_datetime, a.window_end, a.raised_at) + interval '20 minutes'
                      FROM {a} a2 LEFT JOIN registry_study s ON s.id = a2.study_id WHERE a2.id = a.id""")
        c.execute(f"UPDATE {e} e SET at = a.raised_at FROM {a} a WHERE a.id = e.alert_id")
        c.execute(f"""UPDATE {a} a SET status = CASE WHEN {pick} < 92 THEN 'closed' ELSE 'follow_up' END,
                        acknowledged_by_id = %(user)s, acknowledged_at = a.raised_at + ({pick} %% 3 + 1) * interval '1 day',
                        closed_by_id = CASE WHEN {pick} < 92 THEN %(user)s END,
                        closed_at = CASE WHEN {pick} < 92 THEN a.raised_at + ({pick} %% 3 + {pick} %% 7 + 2) * interval '1 day' END,
                        close_note = CASE WHEN {pick} < 92 THEN 'reviewed: justified' ELSE '' END,
                        follow_up_due = CASE WHEN {pick} >= 92 THEN (a.raised_at + ({pick} * 7 %% 60 + 30) * interval '1 day')::date END,
                        follow_up_note = CASE WHEN {pick} >= 92 THEN 'skin check' ELSE '' END
                      WHERE a.status = 'open' AND a.raised_at < %(cutoff)s""",
                  {"seed": seed, "user": rso.pk, "cutoff": timezone.now() - timedelta(days=28)})
        c.execute(f"""UPDATE {a} a SET status = 'acknowledged', acknowledged_by_id = %(user)s,
                        acknowledged_at = LEAST(a.raised_at + interval '1 day', now())
                      WHERE a.status = 'open' AND {pick} < 50""", {"seed": seed, "user": rso.pk})
        c.execute(f"""INSERT INTO {e} (alert_id, at, actor_id, action, note)
                      SELECT a.id, a.acknowledged_at, %(user)s, 'acknowledged', '' FROM {a} a
                        WHERE a.acknowledged_by_id = %(user)s AND a.status IN ('acknowledged', 'closed')
                      UNION ALL SELECT a.id, a.acknowledged_at, %(user)s, 'follow_up_scheduled', 'due ' || a.follow_up_due
                        FROM {a} a WHERE a.acknowledged_by_id = %(user)s AND a.status = 'follow_up'
                      UNION ALL SELECT a.id, a.closed_at, %(user)s, 'closed', a.close_note FROM {a} a
                        WHERE a.closed_by_id = %(user)s""", {"user": rso.pk})
        c.execute(f"SELECT status, count(*) FROM {a} GROUP BY status")
        return {f"alerts_{k}": v for k, v in c.fetchall()}


def populate(n_events: int, *, n_studies: int | None = None, n_patients: int | None = None, templates: int = 3000,
             workers: int = 2, seed: int = 1, device_copies: int = 2, exposure: str = "service") -> dict:
    """Fill the current (migrated, PostgreSQL) database; returns sizes and the time of each step."""
    if connection.vendor != "postgresql":
        raise SystemExit("bench/generate.py needs PostgreSQL (DATABASE_URL)")
    n_studies = n_studies or max(1, n_events // 10)
    n_patients = n_patients or max(1, int(n_studies * 0.3))
    templates = min(templates, n_studies)
    steps: dict[str, float] = {}
    t_all = t0 = time.perf_counter()
    log(f"templates: {templates:,} builder-made RDSRs, parsed in {workers} processes, written by the ingest writer")
    kinds = write_templates(templates, seed, workers, device_copies)
    steps["templates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    snapshot_templates()
    log(f"copies: {n_studies:,} studies, {n_events:,} events, {n_patients:,} patients")
    size = replicate(n_studies=n_studies, n_events=n_events, n_patients=n_patients, kinds=kinds, seed=seed)
    with connection.cursor() as c:
        c.execute("ANALYZE")
    steps["copies"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    size["mapped_names"] = map_protocols()
    steps["mappings"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log(f"exposure ({exposure})")
    size.update(exposure_by_service(workers) if exposure == "service" else exposure_by_sql())
    size.update(alert_workflow(seed=seed))
    steps["exposure"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from dosereg.protocols.services import summaries_rebuild_all

    size["summary_buckets"] = summaries_rebuild_all()["buckets"]
    steps["protocol_summaries"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with connection.cursor() as c:
        c.execute("VACUUM ANALYZE") if connection.get_autocommit() else c.execute("ANALYZE")
    steps["analyze"] = time.perf_counter() - t0
    steps["total"] = time.perf_counter() - t_all
    log("done: " + ", ".join(f"{k} {v:.0f} s" for k, v in steps.items()))
    return {**size, "steps": steps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--studies", type=int, default=None, help="default events/10")
    ap.add_argument("--patients", type=int, default=None, help="default studies x 0.3")
    ap.add_argument("--templates", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device-copies", type=int, default=2, help="installations of each builder device model")
    ap.add_argument("--exposure", choices=("service", "sql"), default="service")
    args = ap.parse_args()
    r = populate(args.events, n_studies=args.studies, n_patients=args.patients, templates=args.templates,
                 workers=args.workers, seed=args.seed, device_copies=args.device_copies, exposure=args.exposure)
    print(json.dumps(r, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
