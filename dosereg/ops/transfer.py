"""Full export/import of the dose registry as JSON lines (migration between installations).

Every record refers to others by natural keys, never by primary keys:

    patient        (issuer, patient_id)
    device         its identifiers [(kind, value), ...] (serial, observer UID, station)
    study          Study Instance UID
    dose object    (SOP Instance UID, content SHA-256)
    event          (study, Irradiation Event UID); planes, participants, MR exams by their dose object

The first line is a header ({"format": "dosereg-registry", "version": 1, ...}). Import
is one transaction, skips records that already exist (natural key) and sends no
signals: no alerts or e-mails are raised by an import (recompute exposure afterwards).
"""
from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import IO

from django.db import connection, models, transaction
from django.db.models import Case, F, OuterRef, Q, Subquery, Value, When
from django.utils import timezone

from dosereg.ops.failures import step_failure_record
from dosereg.registry.models import (
    BreastDose,
    Device,
    DeviceIdentifier,
    DeviceIdentity,
    DeviceSoftwareVersion,
    DoseObject,
    IrradiationEvent,
    MRExam,
    Participant,
    Patient,
    PlaneTotal,
    RadiopharmaceuticalAdministration,
    Study,
)
# child records of a dose object, by record type (mammography per-breast AGD and NM administrations: issue 16)
CHILDREN = {"plane": PlaneTotal, "event": IrradiationEvent, "participant": Participant, "mr": MRExam,
            "breast": BreastDose, "administration": RadiopharmaceuticalAdministration}

FORMAT = "dosereg-registry"
VERSION = 1
CHUNK = 2000


class TransferError(Exception):
    pass


def _open(path: Path | str, mode: str, gz: bool | None = None) -> IO[str]:
    path = Path(path)
    if path.suffix == ".gz" if gz is None else gz:
        # what gzip.open(path, mode + "t", encoding="utf-8") does, with a type mypy can follow
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def _plain_fields(model) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not f.primary_key and not f.is_relation]


def _dump(value):
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _fields(obj, fields: list[models.Field]) -> dict:
    return {f.name: _dump(getattr(obj, "_readable_" + f.name, None) if f.name in getattr(obj, "_guarded", ())
                          else getattr(obj, f.attname)) for f in fields}


# PostgreSQL stores timestamps beyond year 9999 (e.g. 9999-12-31 23:00 at -14:00, written before the ingest
# bounded dates) that Python cannot read: one such value made the whole export fail.
_MAX_READABLE = datetime(9999, 12, 30, tzinfo=dt_timezone.utc)


def _readable_rows(model, problems: list[tuple[str, str]]) -> Iterator:
    """``model``'s rows in pk order. Rows with a datetime Python cannot read are exported with that value null
    and listed in ``problems`` (recorded as failures by the caller); every other row as it is."""
    qs = model.objects.order_by("pk")
    names = [f.name for f in _plain_fields(model) if isinstance(f, models.DateTimeField)]
    bad = Q()
    for name in names:
        bad |= Q(**{f"{name}__gt": _MAX_READABLE})
    bad_pks = list(model.objects.filter(bad).values_list("pk", flat=True)[:10000]) if names else []
    if not bad_pks:
        yield from qs.iterator(chunk_size=CHUNK)
        return
    problems += [(f"{model._meta.label} {pk}", "a datetime beyond year 9999 (unreadable); exported as null")
                 for pk in bad_pks]
    guarded = qs.defer(*names).annotate(**{
        f"_readable_{n}": Case(When(**{f"{n}__lte": _MAX_READABLE}, then=F(n)), default=Value(None),
                               output_field=models.DateTimeField()) for n in names})
    for obj in guarded.iterator(chunk_size=CHUNK):
        obj._guarded = names
        yield obj


def _load_fields(model, data: dict) -> dict:
    out = {}
    by_name = {f.name: f for f in _plain_fields(model)}
    for name, value in data.items():
        f = by_name.get(name)
        if f is None:
            continue  # a field of a newer/older version: ignored
        if value is not None and isinstance(f, (models.DateTimeField, models.DateField)):
            value = f.to_python(value)
            if isinstance(value, datetime) and timezone.is_naive(value):
                value = timezone.make_aware(value, timezone.get_default_timezone())
        out[name] = value
    return out


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------
def _device_keys() -> dict[int, list[list[str]]]:
    keys: dict[int, list[list[str]]] = {}
    for dev_id, kind, value in DeviceIdentifier.objects.order_by("device_id", "kind", "value").values_list(
            "device_id", "kind", "value"):
        keys.setdefault(dev_id, []).append([kind, value])
    return keys


def _device_ref(device_id: int | None, keys: dict) -> list | None:
    if device_id is None:
        return None
    return keys.get(device_id, [["export-device", str(device_id)]])[0]


def registry_records(problems: list[tuple[str, str]] | None = None) -> Iterator[dict]:
    """Every registry record as a JSON-able dict, in dependency order. ``problems`` collects the rows that
    could not be exported as stored (see ``_readable_rows``)."""
    problems = [] if problems is None else problems
    dev_keys = _device_keys()
    patient_key = {pk: [issuer, pid] for pk, issuer, pid in Patient.objects.values_list("pk", "issuer", "patient_id")}
    study_uid = dict(Study.objects.values_list("pk", "study_instance_uid"))
    object_key = {pk: [sop, sha] for pk, sop, sha in DoseObject.objects.values_list("pk", "sop_instance_uid", "sha256")}

    pf = _plain_fields(Patient)
    for p in _readable_rows(Patient, problems):
        yield {"t": "patient", "k": patient_key[p.pk], "f": _fields(p, pf),
               "merged_into": patient_key.get(p.merged_into_id)}
    df = _plain_fields(Device)
    sw: dict[int, list] = {}
    for dev_id, version, first in DeviceSoftwareVersion.objects.order_by("pk").values_list(
            "device_id", "software_versions", "first_seen"):
        sw.setdefault(dev_id, []).append([version, _dump(first)])
    idf = _plain_fields(DeviceIdentity)
    identities: dict[int, list] = {}
    identity_key: dict[int, str] = {}
    for ident in DeviceIdentity.objects.order_by("pk"):
        identities.setdefault(ident.device_id, []).append(_fields(ident, idf))
        identity_key[ident.pk] = ident.key
    for d in _readable_rows(Device, problems):
        yield {"t": "device", "k": dev_keys.get(d.pk, [["export-device", str(d.pk)]]), "f": _fields(d, df),
               "software": sw.get(d.pk, []), "identities": identities.get(d.pk, [])}
    sf = _plain_fields(Study)
    for s in _readable_rows(Study, problems):
        yield {"t": "study", "k": s.study_instance_uid, "f": _fields(s, sf),
               "patient": patient_key.get(s.patient_id), "device": _device_ref(s.device_id, dev_keys),
               "identity": identity_key.get(s.received_identity_id) if s.received_identity_id else None}
    of = _plain_fields(DoseObject)
    for o in _readable_rows(DoseObject, problems):
        yield {"t": "object", "k": object_key[o.pk], "f": _fields(o, of), "study": study_uid.get(o.study_id),
               "device": _device_ref(o.device_id, dev_keys), "superseded_by": object_key.get(o.superseded_by_id)}
    for t, model in CHILDREN.items():
        fields = _plain_fields(model)
        for row in _readable_rows(model, problems):
            yield {"t": t, "f": _fields(row, fields), "study": study_uid[row.study_id],
                   "object": object_key[row.dose_object_id]}


def registry_export(out: Path | str) -> dict[str, int]:
    """Write the registry to ``out`` (.jsonl or .jsonl.gz); returns record counts per type."""
    counts: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    snapshot = connection.vendor == "postgresql" and not connection.in_atomic_block
    with transaction.atomic():
        if snapshot:  # one consistent snapshot while the system keeps ingesting
            with connection.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with _open(tmp, "w", gz=out.suffix == ".gz") as fh:
            fh.write(json.dumps({"format": FORMAT, "version": VERSION, "exported_at": timezone.now().isoformat()}) + "\n")
            for rec in registry_records(problems):
                try:
                    line = json.dumps(rec, separators=(",", ":"), default=str)
                except (TypeError, ValueError) as exc:  # one record must not stop the export: recorded, skipped
                    problems.append((f"{rec.get('t')} {rec.get('k')}", f"not exported: {exc}"))
                    continue
                counts[rec["t"]] = counts.get(rec["t"], 0) + 1
                fh.write(line + "\n")
    tmp.replace(out)
    for key, what in problems:  # after the read-only snapshot: recorded in ops (TaskFailure) and logged
        step_failure_record("registry export", key, ValueError(what))
    if problems:
        counts["problems"] = len(problems)
    return counts


# ---------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------
def _records(path: Path | str) -> Iterable[dict]:
    with _open(path, "r") as fh:
        header = json.loads(fh.readline() or "{}")
        if header.get("format") != FORMAT:
            raise TransferError(f"{path} is not a dosereg registry export")
        if header.get("version", 0) > VERSION:
            raise TransferError(f"{path} has format version {header['version']}; this dosereg reads {VERSION}")
        for n, line in enumerate(fh, 2):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TransferError(f"{path}:{n}: {exc}") from exc


def _restore_auto(model, objs: list, saved: list[dict], names: list[str]) -> None:
    """bulk_create stamps auto_now(_add) fields with now: put the exported values back."""
    if not objs or not names:
        return
    for obj, values in zip(objs, saved):
        for name in names:
            setattr(obj, name, values.get(name))
    model.objects.bulk_update(objs, names, batch_size=500)


def _auto_names(model) -> list[str]:
    return [f.name for f in _plain_fields(model) if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]


class _Importer:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.patients = {(i, p): pk for pk, i, p in Patient.objects.values_list("pk", "issuer", "patient_id")}
        self.devices = {(k, v): d for d, k, v in DeviceIdentifier.objects.values_list("device_id", "kind", "value")}
        self.studies = {u: pk for pk, u in Study.objects.values_list("pk", "study_instance_uid")}
        self.objects = {(s, h): pk for pk, s, h in DoseObject.objects.values_list("pk", "sop_instance_uid", "sha256")}
        self.existing_objects = set(self.objects.values())
        self.merges: list[tuple[tuple, tuple]] = []
        self.supersedes: list[tuple[tuple, tuple]] = []
        self.buffer: dict[str, list[dict]] = {}

    def _count(self, t: str, created: bool) -> None:
        target = self.counts if created else self.skipped
        target[t] = target.get(t, 0) + 1

    def _bulk(self, model, rows: list[dict], build) -> list:
        objs = [build(r) for r in rows]
        model.objects.bulk_create(objs, batch_size=500)
        _restore_auto(model, objs, [r["f"] for r in rows], _auto_names(model))
        return objs

    def patient(self, rows: list[dict]) -> None:
        new = [r for r in rows if tuple(r["k"]) not in self.patients]
        new_ids = {id(r) for r in new}
        for r in rows:
            self._count("patient", id(r) in new_ids)
            if r.get("merged_into"):
                self.merges.append((tuple(r["k"]), tuple(r["merged_into"])))
        objs = self._bulk(Patient, new, lambda r: Patient(**_load_fields(Patient, r["f"])))
        for o in objs:
            self.patients[(o.issuer, o.patient_id)] = o.pk

    def device(self, rows: list[dict]) -> None:
        for r in rows:
            keys = [tuple(k) for k in r["k"]]
            found = next((self.devices[k] for k in keys if k in self.devices), None)
            self._count("device", found is None)
            if found is None:
                d = Device(**_load_fields(Device, r["f"]))
                d.save()
                _restore_auto(Device, [d], [r["f"]], _auto_names(Device))
                found = d.pk
                DeviceSoftwareVersion.objects.bulk_create(
                    [DeviceSoftwareVersion(device_id=found, software_versions=v) for v, _ in r.get("software", [])],
                    ignore_conflicts=True)
                for v, first in r.get("software", []):
                    if first:
                        DeviceSoftwareVersion.objects.filter(device_id=found, software_versions=v).update(
                            first_seen=_load_fields(DeviceSoftwareVersion, {"first_seen": first})["first_seen"])
            DeviceIdentity.objects.bulk_create([DeviceIdentity(device_id=found, **_load_fields(DeviceIdentity, f))
                                                for f in r.get("identities", [])], ignore_conflicts=True)
            missing = [DeviceIdentifier(device_id=found, kind=k, value=v) for k, v in keys
                       if (k, v) not in self.devices and k != "export-device"]
            DeviceIdentifier.objects.bulk_create(missing, ignore_conflicts=True)
            for k in keys:
                self.devices.setdefault(k, found)

    def _dev(self, ref) -> int | None:
        return self.devices.get(tuple(ref)) if ref else None

    def study(self, rows: list[dict]) -> None:
        new = [r for r in rows if r["k"] not in self.studies]
        new_ids = {id(r) for r in new}
        for r in rows:
            self._count("study", id(r) in new_ids)

        keys = {r["identity"] for r in new if r.get("identity")}
        identity_ids = dict(DeviceIdentity.objects.filter(key__in=keys).values_list("key", "pk")) if keys else {}

        def build(r):
            return Study(**_load_fields(Study, r["f"]), patient_id=self.patients.get(tuple(r["patient"])) if r["patient"] else None,
                         device_id=self._dev(r["device"]), received_identity_id=identity_ids.get(r.get("identity")))
        created = []
        for o in self._bulk(Study, new, build):
            self.studies[o.study_instance_uid] = o.pk
            created.append(o.pk)
        # the copy of the patient record's sex (Study.patient_sex) as this registry holds the record (an export
        # from before the column has none)
        Study.objects.filter(pk__in=created, patient__isnull=False).update(
            patient_sex=Subquery(Patient.objects.filter(pk=OuterRef("patient_id")).values("sex")[:1]))

    def object(self, rows: list[dict]) -> None:
        new = [r for r in rows if tuple(r["k"]) not in self.objects]
        new_ids = {id(r) for r in new}
        for r in rows:
            self._count("object", id(r) in new_ids)
            if r.get("superseded_by"):
                self.supersedes.append((tuple(r["k"]), tuple(r["superseded_by"])))

        def build(r):
            return DoseObject(**_load_fields(DoseObject, r["f"]), study_id=self.studies.get(r["study"]) if r["study"] else None,
                              device_id=self._dev(r["device"]))
        for o in self._bulk(DoseObject, new, build):
            self.objects[(o.sop_instance_uid, o.sha256)] = o.pk

    def _children(self, t: str, model, rows: list[dict]) -> None:
        keep = []
        for r in rows:
            obj_pk = self.objects.get(tuple(r["object"]))
            created = obj_pk is not None and obj_pk not in self.existing_objects and r["study"] in self.studies
            self._count(t, created)
            if created:
                keep.append((r, obj_pk))
        objs = [model(**_load_fields(model, r["f"]), study_id=self.studies[r["study"]], dose_object_id=pk) for r, pk in keep]
        if model is IrradiationEvent:
            model.objects.bulk_create(objs, batch_size=500, ignore_conflicts=True)
        else:
            model.objects.bulk_create(objs, batch_size=500)

    def add(self, rec: dict) -> None:
        t = rec.get("t")
        if t not in ("patient", "device", "study", "object", *CHILDREN):
            raise TransferError(f"unknown record type {t!r}")
        buf = self.buffer.setdefault(t, [])
        buf.append(rec)
        if len(buf) >= 1000:
            self.flush(t)

    def flush(self, t: str | None = None) -> None:
        order = ["patient", "device", "study", "object", *CHILDREN]
        for name in order if t is None else [t]:
            rows = self.buffer.pop(name, [])
            if not rows:
                continue
            if name in CHILDREN:
                self._children(name, CHILDREN[name], rows)
            else:
                getattr(self, name)(rows)

    def finish(self) -> None:
        self.flush()
        for child, target in self.merges:
            if child in self.patients and target in self.patients:
                Patient.objects.filter(pk=self.patients[child], merged_into__isnull=True).update(
                    merged_into_id=self.patients[target])
        for child, target in self.supersedes:
            if child in self.objects and target in self.objects and self.objects[child] not in self.existing_objects:
                DoseObject.objects.filter(pk=self.objects[child]).update(superseded_by_id=self.objects[target])


def registry_import(path: Path | str) -> dict:
    """Load an export into this registry (existing records, by natural key, are kept as they are)."""
    imp = _Importer()
    with transaction.atomic():
        types_seen: list[str | None] = []
        for rec in _records(path):
            t = rec.get("t")
            # records come in dependency order; flush earlier types before later ones refer to them
            if t not in types_seen:
                imp.flush()
                types_seen.append(t)
            imp.add(rec)
        imp.finish()
    return {"created": imp.counts, "skipped": imp.skipped}
