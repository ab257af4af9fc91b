"""Signals other apps listen to (the exposure app recomputes on these)."""
from django.dispatch import Signal

# sent after commit with study_ids=[...], patient_ids=[...]; the ingest adds new_study_ids (studies it
# created: nothing can refer to them yet) and named_study_ids (those whose report names people)
studies_changed = Signal()

# Set by the ingest task (setting INGEST_DERIVED_INLINE): receivers of studies_changed then do their
# follow-up work (exposure recompute, staff sync) right away in the same worker, after the ingest
# committed, instead of queueing another task; on any error they fall back to queueing it.
from contextvars import ContextVar  # noqa: E402

derived_work_inline: ContextVar[bool] = ContextVar("derived_work_inline", default=False)
