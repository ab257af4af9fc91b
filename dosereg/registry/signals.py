"""Signals other apps listen to (the exposure app recomputes on these)."""
from django.dispatch import Signal

# sent after commit with study_ids=[...], patient_ids=[...]
studies_changed = Signal()
