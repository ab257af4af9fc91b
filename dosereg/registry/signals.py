"""Signals other apps listen to (the exposure app recomputes on these)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar

from django.dispatch import Signal

log = logging.getLogger(__name__)

# sent after commit with study_ids=[...], patient_ids=[...]; the ingest adds new_study_ids (studies it
# created: nothing can refer to them yet) and named_study_ids (those whose report names people)
studies_changed = Signal()

# Set by the ingest task (setting INGEST_DERIVED_INLINE): receivers of studies_changed then do their
# follow-up work (exposure recompute, staff sync) right away in the same worker, after the ingest
# committed, instead of queueing another task; on any error they fall back to queueing it.
derived_work_inline: ContextVar[bool] = ContextVar("derived_work_inline", default=False)


def follow_up(run: Callable[[], object], queue: Callable[[], object], *, what: str) -> None:
    """A receiver's follow-up work: ``run()`` now when the ingest worker asked for it inline, else (or if it
    fails) ``queue()`` it as a task."""
    if derived_work_inline.get():
        try:
            run()
            return
        except Exception:
            log.exception("inline %s failed; queueing it", what)
    queue()
