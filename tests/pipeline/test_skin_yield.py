"""The skin task yields to the ingest (issue 15 part 4): a worker that takes only the skin queue waits while ingest
tasks wait in the broker, for at most SKIN_YIELD_MAX_S, so a peak-skin-dose computation never competes with a
backlog of ingests; a worker that also takes the ingest queue computes at once. Against the real Redis."""
from __future__ import annotations

import os
import uuid

import pytest

from dosereg.ops.health import broker_queue_length
from dosereg.pipeline import flow, tasks
from tests.conftest import require

REDIS = os.environ.get("DOSEREG_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def broker(settings):
    """A Redis client, with the broker settings pointing at it under a key prefix of this test's own."""
    import redis

    client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception:
        require(False, f"Redis at {REDIS}")
    prefix = f"dosereg-yield-{uuid.uuid4().hex[:8]}:"
    settings.REDIS_URL = REDIS
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS, global_keyprefix=prefix)
    settings.SKIN_YIELD_MAX_S = 600
    settings.SKIN_YIELD_POLL_S = 1
    flow._BROKER_CLIENT.clear()
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    flow._BROKER_CLIENT.clear()


class FakeTime:
    """A clock the wait's sleeps advance; ``on_sleep`` runs after each sleep (drains the queue in a test)."""

    def __init__(self, on_sleep=None):
        self.now, self.sleeps, self.on_sleep = 1000.0, [], on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def test_queue_length_counts_every_priority_list_under_the_broker_key_prefix(broker):
    client, prefix = broker
    assert broker_queue_length(client) == 0
    client.rpush(f"{prefix}dosereg:5", b"ingest")  # an ingest task at INGEST_TASK_PRIORITY 5
    client.rpush(f"{prefix}dosereg", b"e-mail")  # priority 0 is the plain list
    client.rpush("dosereg:5", b"someone else's")  # another deployment's key, without this prefix: not counted
    try:
        assert broker_queue_length(client) == 2
        assert broker_queue_length(client, "skin") == 0
    finally:
        client.lrem("dosereg:5", 0, b"someone else's")


def test_the_skin_step_waits_while_ingests_wait_and_goes_on_when_the_queue_is_empty(broker):
    client, prefix = broker
    client.rpush(f"{prefix}dosereg:5", b"ingest 1", b"ingest 2")
    t = FakeTime(on_sleep=lambda n: client.lpop(f"{prefix}dosereg:5"))  # the ingest worker takes one per second
    assert flow.skin_dose_wait_for_ingest(sleep=t.sleep, clock=t.clock) == 2.0
    assert t.sleeps == [1, 1]
    # an empty queue: no wait at all
    t = FakeTime()
    assert flow.skin_dose_wait_for_ingest(sleep=t.sleep, clock=t.clock) == 0.0 and t.sleeps == []


def test_the_wait_is_bounded_so_a_never_idle_registry_still_gets_its_skin_doses(broker, settings):
    client, prefix = broker
    client.rpush(f"{prefix}dosereg:5", b"a backlog that never drains")
    settings.SKIN_YIELD_MAX_S = 5
    t = FakeTime()
    assert flow.skin_dose_wait_for_ingest(sleep=t.sleep, clock=t.clock) == 5.0
    assert len(t.sleeps) == 5
    # never past half the broker's visibility timeout: the waiting task's message is unacknowledged meanwhile, and
    # Redis would hand it to a second worker
    settings.SKIN_YIELD_MAX_S = 10_000
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS, visibility_timeout=20)
    t = FakeTime()
    assert flow.skin_dose_wait_for_ingest(sleep=t.sleep, clock=t.clock) == 10.0


@pytest.mark.parametrize("change", ["no broker", "eager", "off", "broker unreachable"])
def test_never_waits_without_a_broker_when_turned_off_or_when_the_broker_cannot_be_asked(broker, settings, change):
    client, prefix = broker
    client.rpush(f"{prefix}dosereg:5", b"ingest")
    if change == "no broker":
        settings.REDIS_URL = None
    elif change == "eager":
        settings.CELERY_TASK_ALWAYS_EAGER = True
    elif change == "off":
        settings.SKIN_YIELD_MAX_S = 0
    else:
        settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: the wait is advice, never a failure
    t = FakeTime()
    assert flow.skin_dose_wait_for_ingest(sleep=t.sleep, clock=t.clock) == 0.0 and t.sleeps == []


def test_only_a_worker_that_does_not_take_the_ingest_queue_waits(monkeypatch):
    """The demo's one worker takes both queues (-Q dosereg,skin): waiting there would hold an ingest process."""
    calls = []
    monkeypatch.setattr(flow, "skin_dose_wait_for_ingest", lambda: calls.append("wait") or 0.0)
    monkeypatch.setattr(flow, "skin_dose_studies", lambda ids: calls.append(("compute", ids)) or len(ids))
    queues = tasks.skin_dose_studies_task.app.amqp.queues
    saved = queues._consume_from
    try:
        for consume, expected in ((["skin"], ["wait", ("compute", [7])]),
                                  (["dosereg", "skin"], [("compute", [7])])):
            calls.clear()
            queues._consume_from = None
            queues.select(consume)  # what the worker's -Q does before its pool forks
            assert tasks.skin_dose_studies_task.run([7]) == 1
            assert calls == expected, consume
        # outside a worker (no -Q): the default queue is consumed, nothing waits
        queues._consume_from = None
        calls.clear()
        tasks.skin_dose_studies_task.run([7])
        assert calls == [("compute", [7])]
    finally:
        queues._consume_from = saved
