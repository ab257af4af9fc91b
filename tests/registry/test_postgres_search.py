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
