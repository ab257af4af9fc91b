"""Issue #18 acceptance, CI sample: a hostile corpus (dates, UIDs, identities, encodings, values, sizes,
structures, duplicates, fuzz; ``tests/hostile/corpus.py``) through the real listener subprocess, Redis, a
Celery worker and PostgreSQL, over four parallel associations. Afterwards: the listener and the worker are
alive and answer, every acknowledged object is registered or quarantined with a reason, refused objects
left nothing, the spool reconciles with the registry, no two patient identities share a patient row, and
no page or API answer about the affected patients is a 500.

The full 10,000 objects: ``python bench/run.py hostile`` (figures in bench/RESULTS.md)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.e2e.conftest import ECHOSCU, dcmtk, pg_url, redis_url, stack, wait_port  # noqa: F401 (fixtures)

from .corpus import generate
from .run import send_corpus, summary, verify, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]

SAMPLE = int(os.environ.get("HOSTILE_SAMPLE", "260"))  # every family many times; about 2 min on 2 busy cores


def test_hostile_corpus_sample_through_the_real_listener(stack, tmp_path):
    stack.env["DICOM_MAX_OBJECT_BYTES"] = str(16 * 1024 * 1024)
    # as Stack.start_listener, with more time to come up: on a loaded 2-core host it can take over 20 s
    stack.listener = stack._spawn([sys.executable, "manage.py", "run_listener", "--port", str(stack.port),
                                   "--address", "127.0.0.1"], "listener")
    wait_port(stack.port, timeout=120)
    stack.start_worker(concurrency=2)

    records = send_corpus(stack.port, generate(SAMPLE, seed=1801, prefix="HS"), parallel=4,
                          workdir=tmp_path / "send")
    assert len(records) >= SAMPLE
    acked = {r.sop_uid for r in records if r.acked}
    assert wait_settled(acked, timeout_s=240) == 0, stack.logs()

    # both processes survived the corpus and still answer
    assert stack.listener.poll() is None and all(w.poll() is None for w in stack.workers), stack.logs()
    e = subprocess.run([ECHOSCU, "-aet", "MODALITY1", "-aec", "DOSEREG", "127.0.0.1", str(stack.port)],
                       capture_output=True, text=True, timeout=30)
    assert e.returncode == 0, e.stderr

    rep = verify(records, spool_dir=stack.spool, max_patients_paged=60)
    print(summary(rep))
    assert rep.problems == [], summary(rep)
    # the corpus did what it is for: every family reached the registry, refusals happened, quarantines happened
    fams = rep.per_family
    assert {"dates", "uids", "identities", "encodings", "values", "sizes", "structures", "duplicates", "fuzz",
            "control"} <= set(fams)
    assert fams["uids"].get("refused", 0) > 0
    assert rep.outcomes.get("quarantined", 0) > 0 and rep.outcomes.get("ingested", 0) > 0
    assert fams["control"] == {"ingested": fams["control"]["ingested"]}  # every ordinary report ingested
    assert rep.reconcile["files"] > 0 and rep.reconcile["unregistered"] == 0
    assert rep.patients_checked > 20 and rep.pages_checked > 100
