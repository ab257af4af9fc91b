"""Fuzzing: thousands of mutated corpus files and builder outputs through the pure extractor, a few
hundred through the registry's ingest service. Each case ends as a DoseDocument or an ExtractionError
(a quarantined object), never another exception, and within a time bound.

Seeded and reproducible: a failure prints the seed (``tests.badinput.fuzz.mutate(data, Random(seed))``).
``DOSEREG_FUZZ_CASES`` scales the extractor run (default 5000).
"""
from __future__ import annotations

import io
import os
import random
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dosereg.rdsr import ExtractionError, builder as B, extract_bytes
from dosereg.rdsr.records import DoseDocument

from . import objects as O
from .fuzz import mutate

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom complains about every mutated value

CASES = int(os.environ.get("DOSEREG_FUZZ_CASES", "5000"))
INGEST_CASES = int(os.environ.get("DOSEREG_FUZZ_INGEST_CASES", "300"))
BOUND_S = 5.0  # one extraction; the largest corpus file parses in ~0.1 s
_SOURCES: list[tuple[str, bytes]] = []


def _implicit(data: bytes) -> bytes:
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def sources() -> list[tuple[str, bytes]]:
    """Small corpus files (all but the 3 MB one) + builder outputs of every kind."""
    if not _SOURCES:
        from tests.conftest import corpus_path

        if corpus_path().is_dir():
            for f in sorted(corpus_path().glob("*.dcm")):
                if f.stat().st_size < 500_000:
                    _SOURCES.append((f.name, f.read_bytes()))
        rng = random.Random(77)
        _SOURCES.extend([
            ("builder-projection", B.to_bytes(B.build_projection_rdsr(B.random_projection_spec(rng, kind="mobile_carm")))),
            ("builder-angio", B.to_bytes(B.build_projection_rdsr(B.random_projection_spec(rng, kind="fixed_angio", n_events=40)))),
            ("builder-ct", B.to_bytes(B.build_ct_rdsr(B.random_ct_spec(rng)))),
            ("builder-dx-image", B.to_bytes(B.build_dx_image())),
            ("builder-mr-image", B.to_bytes(B.build_mr_image())),
            ("builder-ct-implicit", _implicit(B.to_bytes(B.build_ct_rdsr(B.random_ct_spec(rng))))),
        ])
    return _SOURCES


def _extract(data: bytes):
    try:
        return extract_bytes(data)
    except ExtractionError as exc:
        return exc


def test_seeded_mutations_through_the_extractor(corpus_files):
    srcs = sources()
    master = random.Random(20251122)
    outcomes: Counter = Counter()
    failures: list[str] = []
    unexpected: list[str] = []
    slowest = (0.0, "")
    started = time.perf_counter()
    for _ in range(CASES):
        seed = master.getrandbits(32)
        rng = random.Random(seed)
        name, data = rng.choice(srcs)
        mutated = mutate(data, rng, other=rng.choice(srcs)[1])
        t = time.perf_counter()
        try:
            result = _extract(mutated)
        except Exception as exc:  # noqa: BLE001 - the point of the test
            failures.append(f"{name} seed={seed}: {type(exc).__name__}: {exc}")
            continue
        took = time.perf_counter() - t
        slowest = max(slowest, (took, f"{name} seed={seed}"))
        if took > BOUND_S:
            failures.append(f"{name} seed={seed}: took {took:.2f}s")
        if isinstance(result, DoseDocument):
            outcomes["document"] += 1
        else:
            assert result.reason, f"{name} seed={seed}: empty reason"
            outcomes[result.reason.split(":")[0][:50]] += 1
            if result.reason.startswith("could not extract dose data"):
                unexpected.append(f"{name} seed={seed}: {result.reason[:200]}")
    elapsed = time.perf_counter() - started
    print(f"\n{CASES} mutations in {elapsed:.1f}s, slowest {slowest[0] * 1000:.0f} ms ({slowest[1]}): {dict(outcomes)}")
    assert not failures, "\n".join(failures[:20])
    # the catch-all in extract_bytes would hide parser bugs behind a vague reason
    assert not unexpected, "\n".join(unexpected[:20])
    assert outcomes["document"] > CASES * 0.05 and sum(outcomes.values()) - outcomes["document"] > CASES * 0.2


@settings(max_examples=int(os.environ.get("DOSEREG_FUZZ_HYPOTHESIS", "300")), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_hypothesis_edits_through_the_extractor(data):
    """Structured edits (overwrite / insert / delete / truncate at drawn offsets): shrinkable failures."""
    name, src = data.draw(st.sampled_from(sources()), label="source")
    b = bytearray(src)
    start = O._meta_end(src) if src[128:132] == b"DICM" else 0
    edits = data.draw(st.lists(st.tuples(st.sampled_from(["overwrite", "insert", "delete", "truncate"]),
                                         st.integers(start, len(src) - 1), st.binary(min_size=1, max_size=12)),
                               min_size=1, max_size=4), label="edits")
    for op, pos, payload in edits:
        pos = min(pos, max(len(b) - 1, 0))
        if op == "overwrite":
            b[pos:pos + len(payload)] = payload
        elif op == "insert":
            b[pos:pos] = payload
        elif op == "delete":
            del b[pos:pos + len(payload) * 16]
        else:
            del b[pos:]
    t = time.perf_counter()
    result = _extract(bytes(b))
    assert time.perf_counter() - t < BOUND_S
    if isinstance(result, ExtractionError):
        assert result.reason and not result.reason.startswith("could not extract dose data"), result.reason
    else:
        assert isinstance(result, DoseDocument)


@pytest.mark.django_db
def test_mutations_through_the_registry_ingest_service(corpus_files, tmp_path):
    """What the listener does with each received object (spool, register under the C-STORE request's UID,
    ingest): every case ends ingested or quarantined with a reason, never another exception."""
    from dicom_listener.spool import Spool
    from dosereg.registry.models import DoseObject
    from dosereg.registry.ingest import dose_object_ingest
    from dosereg.registry.receiving import dose_object_register

    srcs = sources()
    spool = Spool(tmp_path / "spool")
    master = random.Random(4242)
    failures: list[str] = []
    outcomes: Counter = Counter()
    started = time.perf_counter()
    for i in range(INGEST_CASES):
        seed = master.getrandbits(32)
        rng = random.Random(seed)
        name, data = rng.choice(srcs)
        mutated = mutate(data, rng, other=rng.choice(srcs)[1])
        uid = f"2.25.{seed}.{i}"  # the listener files an object under the (validated) UID of the request
        t = time.perf_counter()
        try:
            stored = spool.store(uid, mutated)
            obj, _ = dose_object_register(sop_instance_uid=uid, sop_class_uid=O.RDSR_CLASS, path=stored.path,
                                          sha256=stored.sha256, size_bytes=stored.size_bytes, calling_ae="FUZZ",
                                          enqueue=False)
            obj = dose_object_ingest(dose_object_id=obj.pk)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{name} seed={seed}: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        took = time.perf_counter() - t
        if took > BOUND_S * 2:
            failures.append(f"{name} seed={seed}: took {took:.2f}s")
        outcomes[obj.status] += 1
        if obj.status == DoseObject.STATUS_QUARANTINED:
            if not obj.quarantine_reason:
                failures.append(f"{name} seed={seed}: quarantined without a reason")
        elif obj.status != DoseObject.STATUS_INGESTED:
            failures.append(f"{name} seed={seed}: left {obj.status}")
    print(f"\n{INGEST_CASES} mutated objects ingested in {time.perf_counter() - started:.1f}s: {dict(outcomes)}")
    assert not failures, "\n".join(failures[:20])
    assert outcomes[DoseObject.STATUS_INGESTED] and outcomes[DoseObject.STATUS_QUARANTINED]


def _on_postgresql() -> bool:
    from django.conf import settings as dj

    return "postgresql" in dj.DATABASES["default"]["ENGINE"]


@pytest.mark.django_db
@pytest.mark.parametrize("bad_uid", ["1.2.3\x00.4", "1." + "2" * 200])
def test_file_import_with_an_invalid_sop_uid_in_the_file(tmp_path, bad_uid):
    """manage.py import_dose / backfill path: a file whose own SOP Instance UID is garbage."""
    import pydicom
    from pydicom.dataelem import RawDataElement

    from dicom_listener.spool import Spool
    from dosereg.registry.models import DoseObject
    from dosereg.pipeline.flow import file_import

    ds = pydicom.dcmread(io.BytesIO(O.good("BADUID01")))
    raw = bad_uid.encode("latin-1")
    raw += b"\x00" * (len(raw) & 1)
    ds[0x00080018] = RawDataElement(0x00080018, "UI", len(raw), raw, 0, False, True)
    path = tmp_path / "bad-uid.dcm"
    ds.save_as(path, enforce_file_format=False)
    obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
    obj.refresh_from_db()
    assert obj.status in (DoseObject.STATUS_QUARANTINED, DoseObject.STATUS_INGESTED)
