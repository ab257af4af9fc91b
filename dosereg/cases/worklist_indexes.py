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

# The worklist filtered by device or modality (migration 0010): their rows in worklist order from their own ordered
# index. Through case_worklist they were the first matches of the whole list's order: a device whose cases all
# rank low read every higher-ranked active case first (1.8 s at 900,000 active cases). Their totals are kept counts
# (case_counts, 0009).
DEVICE_MODALITY_INDEXES = (("case_worklist_device", "device_id, "), ("case_worklist_modality", "modality, "))

# An exam-date range (Filters.date_from / date_to, alone or with a site or a site-restricted scope): its total reads
# the range of this index (index-only, the site beside the date) instead of every active case (of the site).
EXAM_SITE_SQL = f"CREATE INDEX IF NOT EXISTS case_exam_site ON cases_case (exam_date, site) WHERE {ACTIVE}"

# The rule filter (rule_keys LIKE '%,rule,%'): a rule few active cases (or none) have read every active case in
# worklist order looking for 50 (270 ms at 900,000 for none); the trigram index finds those few, and the planner,
# which knows the rules' shares from rule_keys' statistics, keeps the ordered scan for a common rule. pg_trgm: where
# migration 0006 could not create it, the filter stays unindexed.
RULE_KEYS_TRGM_SQL = (f"CREATE INDEX IF NOT EXISTS case_rule_keys_trgm ON cases_case USING gin (rule_keys gin_trgm_ops) "
                      f"WHERE {ACTIVE}")
