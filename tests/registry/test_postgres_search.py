"""PostgreSQL specifics of the study browser's search (issue 17): the "protocol or study name contains" filter has
trigram indexes that the planner uses, and dosereg's sessions run without JIT compilation."""
from __future__ import annotations

import pytest
from django.db import connection

from dosereg.registry.models import Study
from tests.conftest import require

pytestmark = pytest.mark.django_db


def _postgres():
    require(connection.vendor == "postgresql", "PostgreSQL")  # skips on a laptop, fails with CI=true


def test_jit_is_off_for_dosereg_sessions():
    _postgres()
    with connection.cursor() as c:
        c.execute("SHOW jit")
        assert c.fetchone()[0] == "off"


def test_the_text_filter_uses_the_trigram_indexes():
    _postgres()
    with connection.cursor() as c:
        c.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", ["registry_%_trgm"])
        assert {r[0] for r in c.fetchall()} == {"registry_st_protocols_trgm", "registry_st_description_trgm"}
        c.execute("SET LOCAL enable_seqscan = off")  # tiny test tables: ask whether the index can answer at all
        for qs in (Study.objects.filter(protocol_names__icontains="chest"),
                   Study.objects.filter(study_description__icontains="chest")):
            sql, params = qs.query.sql_with_params()
            c.execute("EXPLAIN " + sql, params)
            plan = "\n".join(r[0] for r in c.fetchall())
            assert "_trgm" in plan, plan


# every study-browser order that has an index (registry migrations 0012-0016), in the direction it is indexed
INDEXED_ORDERS = ["date", "-date", "modality", "-modality", "description", "-description", "standard", "-standard",
                  "-kap", "-kar", "-fluoro", "-ctdivol", "-dlp", "-events", "-age"]


@pytest.mark.parametrize("sort", INDEXED_ORDERS)
def test_each_indexed_browser_order_is_read_from_an_index(sort):
    """One ascending index serves both directions of a NOT NULL column (read backwards), so the ingest keeps one
    index fewer per column: the page query must still come from an index, with no sort of every study."""
    from dosereg.web.browse import StudyFilters, ordered

    _postgres()
    qs = ordered(Study.objects.all(), StudyFilters(sort=sort)).values("pk")[:50]
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as c:
        c.execute("SET LOCAL enable_seqscan = off")
        c.execute("SET LOCAL enable_sort = off")
        c.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in c.fetchall())
    assert "Index" in plan and "Sort" not in plan, plan


# the sorts by a column of the study's device or patient: no index of the study holds them, so the page's ids are
# read one key value at a time (dosereg.web.browse_groups), each value's studies from an index, newest first
# (sex: the date index at 100k studies, bench/RESULTS.md; on the test's empty tables the planner may walk each
# patient's (patient, date) index instead: either is an index walk)
JOINED_ORDERS = {"site": ("study_device_date",), "device": ("study_device_date",), "sex": ("study_sex_date",)}


@pytest.mark.parametrize("sort", [s for k in JOINED_ORDERS for s in (k, "-" + k)])
def test_each_joined_browser_order_is_read_from_an_index_one_value_at_a_time(sort):
    """Page 1, the last page (read backwards) and the pages after / before a cursor: every study read comes from
    an index walk of one device (one sex: the study's copy of it on the (sex, date, id) index), limited; the result is only ordered by the value's position within the
    walk (an incremental sort on the already ordered values: PostgreSQL stops when the page is full), never a scan
    and sort of every study."""
    from dosereg.access.scope import EVERY_SITE
    from dosereg.web import browse
    from dosereg.web.browse_groups import group_walk_ids

    _postgres()
    assert not browse.walks_groups(browse.read_filters({"sort": sort, "kap_gy_cm2_min": "1"}))  # a row filter: plain
    # a modality or a date range: the walk's indexes hold them (the modality is included), so they walk too
    for query in ({"sort": sort}, {"sort": sort, "modality": "CT"}, {"sort": sort, "since": "2026-01-01"}):
        f = browse.read_filters(query)
        assert browse.walks_groups(f), query
        qs = browse.filtered_studies(f)
        for kwargs in ({"reverse": False}, {"reverse": True}, {"reverse": False, "cursor": 1},
                       {"reverse": True, "cursor": 1}):
            ids = group_walk_ids(qs, f, scope=EVERY_SITE, limit=50, **kwargs)
            sql, params = Study.objects.filter(pk__in=ids).values("pk").query.sql_with_params()
            with connection.cursor() as c:
                c.execute("SET LOCAL enable_seqscan = off")
                c.execute("SET LOCAL enable_bitmapscan = off")
                c.execute("EXPLAIN " + sql, params)
                plan = "\n".join(r[0] for r in c.fetchall())
            assert "Seq Scan on registry_study " not in plan, plan
            assert any(i in plan for i in JOINED_ORDERS[sort.lstrip("-")]) and "Presorted Key" in plan, plan
            if "modality" in query and sort.lstrip("-") != "sex":
                # a device's studies of other modalities are passed over in the index, not fetched one by one
                assert "Index Only Scan using study_device_date" in plan, plan


def test_a_keyset_pages_rows_before_its_cursor_are_counted_from_the_sort_index():
    """The row numbers of a page after a cursor, sorted by standard name: a count of a range of the sort's index,
    read without the table (the index includes the column), not LOWER() of every study."""
    from dosereg.access.scope import EVERY_SITE
    from dosereg.web import browse

    _postgres()
    f = browse.read_filters({"sort": "-standard", "after": "1"})
    captured = []
    with connection.execute_wrapper(lambda execute, sql, params, many, context: (captured.append((sql, params)),
                                                                                 execute(sql, params, many, context))[1]):
        browse._keyset_counts(browse.filtered_studies(f), f, 1, EVERY_SITE)
    (sql, params), = captured
    with connection.cursor() as c:
        c.execute("SET LOCAL enable_seqscan = off")
        c.execute("SET LOCAL enable_bitmapscan = off")
        c.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in c.fetchall())
    assert "Index Only Scan using registry_study_sort_standard_" in plan, plan
