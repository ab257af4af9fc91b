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
# the search reads the matching patients through the index instead of scanning every patient. (Migration 0006 created
# these three; 0008 replaced the one on patient_id, a prefix search, by PATIENT_ID_PREFIX_INDEX below.)
SEARCH_INDEXES = (
    ("search_patient_id_trgm", "registry_patient", "patient_id"),
    ("search_patient_name_trgm", "registry_patient", "name"),
    ("search_staff_name_trgm", "staff_staffmember", "name"),
)


create_search_indexes, drop_search_indexes = trigram_indexes(SEARCH_INDEXES, "the worklist's search")

# The search by patient ID is a prefix (``istartswith``; the patients list and the API read ``iexact`` too): a btree
# over the same UPPER(patient_id::text) with text_pattern_ops turns 'CP0000004%' into one range of the index, where
# the trigram index above read every patient sharing the ID's trigrams (at 600,000 patients, 1,162 candidates for
# 'CP00000042%', each rechecked: 17.5 ms from disk against 0.03 ms). Migration 0008 replaces the trigram index on patient_id by this one, so registry_patient,
# written by every ingest, keeps the same number of indexes (and a btree entry instead of ~10 trigram entries).
PATIENT_ID_PREFIX_INDEX = "search_patient_id_prefix"
PATIENT_ID_PREFIX_SQL = (f"CREATE INDEX IF NOT EXISTS {PATIENT_ID_PREFIX_INDEX} ON registry_patient "
                         "(UPPER(patient_id::text) text_pattern_ops)")
