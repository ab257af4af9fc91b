"""The worklist's ordered partial indexes (active cases by severity, then exam date newest first, NULLS LAST).

NULLS LAST in an index is PostgreSQL's: migrations create these there only, outside the models' state (SQLite,
the embedded default, cannot create them)."""
from __future__ import annotations

from dosereg.registry.pg_indexes import trigram_indexes

ACTIVE = "status IN ('open', 'acknowledged', 'follow_up')"


def index_sql(name: str, lead: str = "") -> str:
    return (f"CREATE INDEX IF NOT EXISTS {name} ON cases_case ({lead}sort_rank DESC, exam_date DESC NULLS LAST, "
            f"id DESC) WHERE {ACTIVE}")


# The worklist's search by patient (ID prefix, name) and staff name (selectors.Filters.q): Django's istartswith /
# icontains read UPPER(column::text) LIKE '...%' / '%...%', which these trigram indexes (pg_trgm) serve as written:
# the search reads the matching patients through the index instead of scanning every patient.
SEARCH_INDEXES = (
    ("search_patient_id_trgm", "registry_patient", "patient_id"),
    ("search_patient_name_trgm", "registry_patient", "name"),
    ("search_staff_name_trgm", "staff_staffmember", "name"),
)


create_search_indexes, drop_search_indexes = trigram_indexes(SEARCH_INDEXES, "the worklist's search")
