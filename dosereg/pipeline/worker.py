"""The in-process ingest worker of the embedded default (no broker: Celery tasks run eagerly).

The listener's C-STORE handler only stores, registers and answers; it hands the object's id to ``submit``. One
daemon thread takes the ids in order and runs the ingest task's function on each (ingest, then the follow-up
steps; their queued tasks run eagerly in this thread, e-mail included), so the handler's latency never includes
parsing, alerts or e-mail. When idle it runs the spool sweeper, which re-ingests anything stranded (an object
registered by a listener that stopped before ingesting it, a row the handler could not write)."""
from __future__ import annotations

import logging
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connection

log = logging.getLogger(__name__)

_STOP = object()


class InProcessWorker:
    def __init__(self, *, spool=None, sweep_interval_s: float | None = None) -> None:
        self.spool = spool
        self.sweep_interval_s = settings.SWEEP_INTERVAL_S if sweep_interval_s is None else sweep_interval_s
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dosereg-ingest", daemon=True)

    def start(self) -> InProcessWorker:
        self._thread.start()
        return self

    def submit(self, dose_object_id: int) -> bool:
        """Queue an object's ingest (the listener's dispatch); returns at once."""
        self._queue.put(dose_object_id)
        return True

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted object was ingested and followed up (tests, the demo)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished_tasks

    def stop(self, timeout: float = 60.0) -> None:
        """Finish what was submitted, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=max(0.1, self.sweep_interval_s))
            except queue.Empty:
                self._sweep()
                continue
            try:
                if item is _STOP:
                    connection.close()  # this thread's own connection
                    return
                self._ingest(item)
            finally:
                self._queue.task_done()

    def _ingest(self, dose_object_id: int) -> None:
        from .tasks import ingest_object_task

        close_old_connections()
        try:
            ingest_object_task(dose_object_id)  # the task's own function, as a Celery worker would run it
        except Exception:  # the object stays "received": the sweeper hands it over again
            log.exception("ingest of dose object %s failed; the sweeper retries it", dose_object_id)
            connection.close()

    def _sweep(self) -> None:
        from dosereg.registry.receiving import dose_objects_sweep

        close_old_connections()
        try:
            # stale objects are queued again through registry.receiving.enqueue_ingest: eager here, so in this thread
            dose_objects_sweep(spool=self.spool)
        except Exception:
            log.exception("spool sweep failed")
            connection.close()
