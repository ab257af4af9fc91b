"""Writes of the protocol audit summaries: marking buckets dirty, rebuilding them, the watermark.

See ``models`` for what a bucket, a summary row and the watermark are. Everything here is idempotent and
safe to run concurrently with ingest and with itself:

* a bucket is rebuilt under its row lock (``SELECT ... FOR UPDATE SKIP LOCKED``); marking it dirty
  (an upsert) waits for that lock, so a change that commits while the bucket is rebuilt leaves it dirty;
* the watermark moves up only together with marking the new studies' buckets dirty (one transaction), and a
  rebuild reads studies up to the watermark it sees, so no study is counted twice or missed by the page.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, timezone as dt_timezone

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone

from dosereg.ops.failures import step_failure_record
from dosereg.registry.inserts import upsert
from dosereg.registry.models import Study

from .age_bands import age_class
from .histogram import Summary
from .models import (SUMMARY_QUANTITIES, ProtocolMapping, ProtocolSummary, StandardName, SummaryBucket, SummaryMember,
                     SummaryState)

STUDY_COLUMNS = ("id", "study_datetime", "procedure_modality", "study_description", "patient_age_years",
                 *SUMMARY_QUANTITIES)
_FIRST_QUANTITY = STUDY_COLUMNS.index(SUMMARY_QUANTITIES[0])


# ---------------------------------------------------------------------------
# buckets (pure)
# ---------------------------------------------------------------------------
def month_of(at: datetime) -> date:
    """The bucket month (UTC) of an instant."""
    at = at.astimezone(dt_timezone.utc)
    return date(at.year, at.month, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=dt_timezone.utc)
    end = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=dt_timezone.utc)
    return start, end


def bucket_key(device_id: int | None, at: datetime | None) -> tuple[int, date] | None:
    """(device key, month) of a study; None for a study without a date (it is in no period)."""
    if at is None:
        return None
    return (device_id or 0, month_of(at))


class GroupAccumulator:
    """The procedures of one (modality, description, age class) and a Summary per quantity reported."""

    __slots__ = ("n", "quantities")

    def __init__(self) -> None:
        self.n = 0
        self.quantities: dict[str, Summary] = {}


def summarise_studies(rows: Iterable[tuple]) -> dict[tuple[str, str, int], GroupAccumulator]:
    """{(modality, study description, age class): GroupAccumulator} of study rows shaped like ``STUDY_COLUMNS``
    (the age class: ``age_bands.age_class`` of the patient's age at the study, as the selectors compute it in SQL)."""
    groups: dict[tuple[str, str, int], GroupAccumulator] = {}
    for row in rows:
        key = (row[2], row[3], age_class(row[4]))
        g = groups.get(key)
        if g is None:
            g = groups[key] = GroupAccumulator()
        g.n += 1
        for q, v in zip(SUMMARY_QUANTITIES, row[_FIRST_QUANTITY:]):
            if v is not None and math.isfinite(v):  # NaN / infinity (an imported or legacy row) is not a dose
                s = g.quantities.get(q)
                if s is None:
                    s = g.quantities[q] = Summary()
                s.add(v)
    return groups


def summary_rows(bucket_id: int, groups: dict[tuple[str, str, int], GroupAccumulator]) -> list[ProtocolSummary]:
    out = []
    for (modality, description, cls), g in groups.items():
        fields = {}
        for q, s in g.quantities.items():
            fields.update({f"{q}_n": s.n, f"{q}_sum": s.total, f"{q}_min": s.minimum, f"{q}_max": s.maximum,
                           f"{q}_bins": s.encoded_bins()})
        out.append(ProtocolSummary(bucket_id=bucket_id, modality=modality, study_description=description,
                                   age_class=cls, n_studies=g.n, **fields))
    return out


# ---------------------------------------------------------------------------
# marking
# ---------------------------------------------------------------------------
def buckets_mark_dirty(keys: Iterable[tuple[int, date]]) -> int:
    """Mark (device key, month) buckets dirty, creating the missing ones (one statement)."""
    now = timezone.now()
    rows = []
    for device_key, month in sorted(set(keys)):  # a fixed order: concurrent markers lock rows in the same order
        start, end = month_bounds(month)
        rows.append(SummaryBucket(device_key=device_key, month=month, starts_at=start, ends_at=end, dirty=True,
                                  marked_at=now))
    # one statement, atomic by itself (bulk_create would open a transaction around it)
    return upsert(SummaryBucket, rows, unique_fields=["device_key", "month"], update_fields=["dirty", "marked_at"])


def _mapped_name():
    """The standard name a study's (modality, study description) is mapped to, as a correlated subquery."""
    return Subquery(ProtocolMapping.objects.filter(source_name=OuterRef("study_description"),
                                                   modality=OuterRef("procedure_modality"))
                    .values("standard_name__name")[:1])


def study_standard_names_refresh(*, pairs: Iterable[tuple[str, str]] = (), study_ids: Iterable[int] = ()) -> int:
    """Set ``Study.standard_name`` (the copy the study browser sorts on) from the current mappings, for the studies
    of these (modality, study description) pairs (a mapping edited) and of these ids (one UPDATE)."""
    cond = Q()
    for modality, description in sorted(set(pairs)):
        cond |= Q(procedure_modality=modality, study_description=description)
    ids = sorted(set(study_ids))
    if ids:
        cond |= Q(pk__in=ids)
    if not cond:
        return 0
    return Study.objects.filter(cond).update(standard_name=_mapped_name())


def _studies_named(ids: list[int]) -> list[tuple]:
    """Read these studies' (device id, study date) and refresh their standard names from the current mappings:
    one statement on PostgreSQL (the read carries each study's mapped name; the UPDATE follows only for a study
    whose name changed, i.e. rarely: a new study of a mapped protocol), two elsewhere."""
    if connection.vendor != "postgresql":
        study_standard_names_refresh(study_ids=ids)
        return list(Study.objects.filter(pk__in=ids).values_list("device_id", "study_datetime"))
    qn = connection.ops.quote_name
    study, mapping, name = qn(Study._meta.db_table), qn(ProtocolMapping._meta.db_table), qn(StandardName._meta.db_table)
    with connection.cursor() as cur:
        cur.execute(f"SELECT s.id, s.device_id, s.study_datetime, s.standard_name, "
                    f"(SELECT n.name FROM {mapping} m JOIN {name} n ON n.id = m.standard_name_id "
                    f"WHERE m.source_name = s.study_description AND m.modality = s.procedure_modality LIMIT 1) "
                    f"FROM {study} s WHERE s.id = ANY(%s)", [ids])
        rows = cur.fetchall()
    changed = [r[0] for r in rows if r[3] != r[4]]
    if changed:
        study_standard_names_refresh(study_ids=changed)
    return [(r[1], r[2]) for r in rows]


def studies_mark_dirty(study_ids: Iterable[int], new_study_ids: Iterable[int] = ()) -> int:
    """The pipeline's protocols step for these studies: set their standard names from the current mappings and
    mark their buckets dirty, where they are now and where they were summarised (2 statements on PostgreSQL: the
    studies' read, which carries their mapped names, and the upsert; a third when a name changed). A deleted study is found by its membership;
    ``new_study_ids`` (just created) have none."""
    ids = sorted(set(study_ids))
    if not ids:
        return 0
    old = sorted(set(ids) - set(new_study_ids or ()))
    keys = set(SummaryMember.objects.filter(study_id__in=old).values_list("bucket__device_key", "bucket__month")) \
        if old else set()
    for device_id, at in _studies_named(ids):
        key = bucket_key(device_id, at)
        if key:
            keys.add(key)
    return buckets_mark_dirty(keys)


# ---------------------------------------------------------------------------
# rebuilding
# ---------------------------------------------------------------------------
def _watermark(*, for_update: bool = False) -> SummaryState:
    qs = SummaryState.objects.select_for_update() if for_update else SummaryState.objects
    state = qs.filter(pk=1).first()
    if state is None:
        SummaryState.objects.bulk_create([SummaryState(pk=1, max_study_id=0)], ignore_conflicts=True)
        state = qs.get(pk=1)
    return state


def watermark_advance(*, limit: int = 50000) -> int:
    """Take up to ``limit`` studies newer than the watermark: mark their buckets dirty and move the watermark
    past them, in one transaction. Returns how many studies were taken."""
    with transaction.atomic():
        state = _watermark(for_update=True)
        rows = list(Study.objects.filter(pk__gt=state.max_study_id).order_by("pk")
                    .values_list("pk", "device_id", "study_datetime")[:limit])
        if not rows:
            return 0
        buckets_mark_dirty(k for k in (bucket_key(dev, at) for _, dev, at in rows) if k)
        state.max_study_id = rows[-1][0]
        state.save(update_fields=["max_study_id", "updated_at"])
    return len(rows)


def _bucket_studies(bucket: SummaryBucket, max_study_id: int):
    qs = Study.objects.filter(study_datetime__gte=bucket.starts_at, study_datetime__lt=bucket.ends_at,
                              pk__lte=max_study_id, has_ionising_dose=True, not_patient_reason="")
    qs = qs.filter(device_id=bucket.device_key) if bucket.device_key else qs.filter(device__isnull=True)
    return qs.values_list(*STUDY_COLUMNS)


def bucket_rebuild(bucket_id: int) -> bool:
    """Rebuild one dirty bucket from its studies up to the watermark. False when it is clean or another
    process is rebuilding it."""
    with transaction.atomic():
        bucket = SummaryBucket.objects.select_for_update(skip_locked=True).filter(pk=bucket_id, dirty=True).first()
        if bucket is None:
            return False
        w = _watermark().max_study_id
        rows = list(_bucket_studies(bucket, w))
        ProtocolSummary.objects.filter(bucket=bucket).delete()
        ProtocolSummary.objects.bulk_create(summary_rows(bucket.pk, summarise_studies(rows)), batch_size=1000)
        SummaryMember.objects.filter(bucket=bucket).delete()
        SummaryMember.objects.bulk_create([SummaryMember(study_id=r[0], bucket_id=bucket.pk) for r in rows],
                                          batch_size=2000, update_conflicts=True, unique_fields=["study_id"],
                                          update_fields=["bucket"])
        times = [r[1] for r in rows]
        bucket.dirty = False
        bucket.built_at = timezone.now()
        bucket.n_studies = len(rows)
        bucket.first_study_at = min(times) if times else None
        bucket.last_study_at = max(times) if times else None
        bucket.save(update_fields=["dirty", "built_at", "n_studies", "first_study_at", "last_study_at"])
    return True


def summaries_refresh(*, max_buckets: int = 500, max_new_studies: int = 200000) -> dict:
    """The periodic job: take new studies (watermark), then rebuild up to ``max_buckets`` dirty buckets,
    oldest mark first. What is left waits for the next run; the page reads it exactly meanwhile."""
    taken = 0
    while taken < max_new_studies:
        n = watermark_advance(limit=min(50000, max_new_studies - taken))
        taken += n
        if n < 50000:
            break
    ids = list(SummaryBucket.objects.filter(dirty=True).order_by("marked_at", "pk").values_list("pk", flat=True)[:max_buckets])
    rebuilt = failed = 0
    for pk in ids:
        try:
            rebuilt += bucket_rebuild(pk)
        except (OperationalError, InterfaceError):
            raise  # the database is away: the task retries
        except Exception as exc:  # noqa: BLE001 - one unreadable row must not freeze every device's audit
            failed += 1
            step_failure_record("protocol summary bucket rebuild", pk, exc)
    left = SummaryBucket.objects.filter(dirty=True).count()
    return {"new_studies": taken, "rebuilt": rebuilt, "dirty_left": left, **({"failed": failed} if failed else {})}


def summaries_rebuild_all(*, chunk_size: int = 20000) -> dict:
    """Rebuild every summary from the study table in one transaction (management command, after bulk loads).

    Streams the studies in (device, date) order, so memory holds one batch of buckets at a time. Pages keep
    reading the previous summaries until it commits; ingest that marks a bucket meanwhile waits for the commit
    and then marks the new row dirty."""
    qn = connection.ops.quote_name
    with transaction.atomic():
        state = _watermark(for_update=True)
        w = Study.objects.aggregate(m=Max("pk"))["m"] or 0
        with connection.cursor() as c:
            for model in (SummaryMember, ProtocolSummary, SummaryBucket):
                c.execute(f"DELETE FROM {qn(model._meta.db_table)}")
        qs = (Study.objects.filter(pk__lte=w, has_ionising_dose=True, not_patient_reason="", study_datetime__isnull=False)
              .order_by("device_id", "study_datetime").values_list("device_id", *STUDY_COLUMNS))
        now = timezone.now()
        pending: list[tuple[tuple[int, date], list[tuple]]] = []
        totals = {"studies": 0, "buckets": 0}

        def flush() -> None:
            buckets = []
            for (device_key, month), rows in pending:
                start, end = month_bounds(month)
                buckets.append(SummaryBucket(device_key=device_key, month=month, starts_at=start, ends_at=end,
                                             dirty=False, built_at=now, n_studies=len(rows),
                                             first_study_at=rows[0][1], last_study_at=rows[-1][1]))
            SummaryBucket.objects.bulk_create(buckets)  # sets the pks (RETURNING)
            summaries: list[ProtocolSummary] = []
            members: list[SummaryMember] = []
            for bucket, (_, rows) in zip(buckets, pending):
                summaries.extend(summary_rows(bucket.pk, summarise_studies(rows)))
                members.extend(SummaryMember(study_id=r[0], bucket_id=bucket.pk) for r in rows)
            ProtocolSummary.objects.bulk_create(summaries, batch_size=1000)
            SummaryMember.objects.bulk_create(members, batch_size=5000)
            totals["buckets"] += len(buckets)
            pending.clear()

        key: tuple[int, date] | None = None
        rows: list[tuple] = []
        held = 0
        for row in qs.iterator(chunk_size=chunk_size):
            k = bucket_key(row[0], row[2])
            if k != key:
                if rows:
                    assert key is not None  # the query excludes undated studies (the only None key)
                    pending.append((key, rows))
                    held += len(rows)
                    if held >= chunk_size:
                        flush()
                        held = 0
                key, rows = k, []
            rows.append(row[1:])
            totals["studies"] += 1
        if rows:
            assert key is not None  # the query excludes undated studies (the only None key)
            pending.append((key, rows))
        if pending:
            flush()
        state.max_study_id = w
        state.save(update_fields=["max_study_id", "updated_at"])
    if connection.vendor == "postgresql":
        with connection.cursor() as c:
            for model in (SummaryBucket, ProtocolSummary, SummaryMember):
                c.execute(f"ANALYZE {qn(model._meta.db_table)}")
    return {**totals, "max_study_id": w}
