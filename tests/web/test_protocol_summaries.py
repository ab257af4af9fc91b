"""Protocol audit from pre-aggregated monthly summaries (dosereg.protocols): agreement with the exact
quartiles within the stated tolerance, freshness (new studies, changed and moved studies, mapping edits,
periods cutting a month) and a query count that does not grow with the number of studies."""
from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dosereg.pipeline.flow import follow_up
from dosereg.protocols import histogram as H
from dosereg.protocols import services as PS
from dosereg.protocols.models import SUMMARY_QUANTITIES, SummaryBucket, SummaryMember, SummaryState
from dosereg.registry.models import Device, Study
from dosereg.registry.changes import StudyChanges
from dosereg.web import selectors, services
from dosereg.protocols.models import ProtocolMapping, StandardName

TOL = H.MAX_RELATIVE_ERROR + 1e-12


# ---------------------------------------------------------------------------
# the histogram itself (pure)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 17, 100, 2500])
def test_histogram_quartiles_within_half_a_percent(n):
    rng = random.Random(n)
    for spread in (0.05, 1.0, 3.0):
        values = [math.exp(rng.gauss(1.0, spread)) for _ in range(n)]
        s = H.Summary.of(values)
        exact = H.exact_quantiles(values, (0.25, 0.5, 0.75))
        assert s.n == n and s.minimum == min(values) and s.maximum == max(values)
        assert s.total == pytest.approx(sum(values))
        for est, ex in zip(s.quartiles(), exact):
            assert abs(est / ex - 1) <= TOL, (n, spread, est, ex)


def test_histogram_matches_percentile_cont_semantics_and_merges():
    assert H.exact_quantiles([1.0, 2.0, 3.0, 4.0], (0.25, 0.5, 0.75)) == list(selectors._quartiles([1.0, 2.0, 3.0, 4.0]))
    assert H.Summary.of([5.0]).quartiles() == (5.0, 5.0, 5.0)
    assert H.Summary.of([]).quartiles() == (None, None, None)
    zeros = H.Summary.of([0.0, 0.0, 0.0, 2.0])
    assert zeros.quartiles()[:2] == (0.0, 0.0)
    rng = random.Random(3)
    a = [rng.lognormvariate(0, 2) for _ in range(300)]
    b = [rng.lognormvariate(2, 1) for _ in range(200)]
    merged = H.Summary.of(a)
    sb = H.Summary.of(b)
    merged.merge_encoded(sb.n, sb.total, sb.minimum, sb.maximum, sb.encoded_bins())
    whole = H.Summary.of(a + b)
    assert merged.bins == whole.bins and merged.n == whole.n and merged.quartiles() == whole.quartiles()
    assert H.decode_bins(whole.encoded_bins()) == whole.bins and sum(whole.bins.values()) == 500
    assert sum(c for _, _, c in whole.histogram(max_bars=20)) == whole.n and len(whole.histogram(max_bars=20)) <= 20


# ---------------------------------------------------------------------------
# the page and the selector against exact values
# ---------------------------------------------------------------------------
def _studies(n: int, *, seed: int = 7, days: int = 420) -> list[Study]:
    """n ionising studies on the registry's devices, spread over ``days``, with log-normal doses."""
    rng = random.Random(seed)
    now = timezone.now()
    devices = list(Device.objects.values_list("pk", "modality"))
    names = {"CT": ["CT Chest", "CT Head", "CT CHEST W/O"], "DX": ["Chest PA", "Knee"],
             "RF": ["Coronary angiography", "Hip fracture fixation", "Barium swallow"]}
    rows = []
    for i in range(n):
        dev, dev_modality = rng.choice(devices)
        mod = dev_modality if dev_modality in names else "RF"
        ct = mod == "CT"
        rows.append(Study(
            study_instance_uid=f"2.25.77{seed}{i}", device_id=dev if rng.random() > 0.02 else None,
            study_datetime=now - timedelta(minutes=rng.randrange(days * 24 * 60)),
            study_description=rng.choice(names[mod]), procedure_modality=mod, event_count=1,
            dap_total_gy_cm2=None if ct else round(rng.lognormvariate(1, 1.2), 4),
            dose_rp_max_plane_gy=None if ct or mod == "DX" else round(rng.lognormvariate(-2, 1), 5),
            fluoro_time_total_s=None if ct or mod == "DX" else float(rng.randint(0, 900)),
            ctdivol_max_mgy=round(rng.uniform(2, 60), 2) if ct else None,
            dlp_total_mgy_cm=round(rng.lognormvariate(6, 0.5), 1) if ct else None,
        ))
    return Study.objects.bulk_create(rows, batch_size=1000)


def _exact(since, until, modality: str = "") -> dict:
    """{(device, std, modality): (n, {quantity: (n, min, max, q1, med, q3)})} straight from the study table."""
    std = {(m.modality, m.source_name): m.standard_name_id for m in ProtocolMapping.objects.all()}
    groups: dict = {}
    qs = Study.objects.filter(study_datetime__gte=since, study_datetime__lt=until, has_ionising_dose=True)
    if modality:
        qs = qs.filter(procedure_modality=modality)
    for row in qs.values_list("device_id", "procedure_modality", "study_description", *SUMMARY_QUANTITIES):
        mapped = std.get((row[1], row[2]))
        key = (row[0], mapped, row[1], "" if mapped else row[2])  # an unmapped name is a group of its own
        g = groups.setdefault(key, {"n": 0, **{q: [] for q in SUMMARY_QUANTITIES}})
        g["n"] += 1
        for q, v in zip(SUMMARY_QUANTITIES, row[3:]):
            if v is not None:
                g[q].append(v)
    out = {}
    for key, g in groups.items():
        out[key] = (g["n"], {q: (len(g[q]), min(g[q]), max(g[q]), *H.exact_quantiles(g[q], (0.25, 0.5, 0.75)))
                             for q in SUMMARY_QUANTITIES if g[q]})
    return out


def _assert_agrees(audit: dict, exact: dict) -> int:
    seen = 0
    got = {(r["device_id"], r["standard_name"].pk if r["standard_name"] else None, r["modality"], r["description"]): r
           for r in audit["rows"]}
    assert set(got) == set(exact)
    for key, (n, quantities) in exact.items():
        r = got[key]
        assert r["n"] == n, key
        shown = {q["key"]: q for q in r["quantities"]}
        assert set(shown) == set(quantities), key
        for qk, (qn, qmin, qmax, q1, med, q3) in quantities.items():
            q = shown[qk]
            assert (q["n"], q["min"], q["max"]) == (qn, qmin, qmax), (key, qk)
            for est, ex in ((q["q1"], q1), (q["median"], med), (q["q3"], q3)):
                assert est == ex or abs(est / ex - 1) <= TOL, (key, qk, est, ex)
            seen += 1
    return seen


def _period():
    now = timezone.now()
    return now - timedelta(days=365), now + timedelta(days=1)


def test_summaries_agree_with_exact_quartiles(web_data, client):
    client.force_login(web_data.users["physicist"])
    _studies(1500)
    since, until = period = _period()
    exact = _exact(since, until)
    before = selectors.protocol_audit(since=since, until=until)  # nothing summarised yet: read exactly (binned)
    assert _assert_agrees(before, exact) > 10
    r = PS.summaries_rebuild_all()
    assert r["max_study_id"] == Study.objects.order_by("-pk").first().pk
    assert not SummaryBucket.objects.filter(dirty=True).exists()
    after = selectors.protocol_audit(since=since, until=until)
    _assert_agrees(after, exact)
    # the same numbers whether read from the summaries or from the studies
    key = lambda a: sorted((r["device_id"] or 0, r["modality"], str(r["standard_name"]), r["description"], r["n"],  # noqa: E731
                            [(q["key"], q["q1"], q["median"], q["q3"]) for q in r["quantities"]]) for r in a["rows"])
    assert key(before) == key(after)
    if connection.vendor == "postgresql":  # against the database's own percentile_cont (the former implementation)
        from django.db.models import Case, Count, F, Value, When

        aggs = {"n": Count("id")}
        for q in SUMMARY_QUANTITIES:
            for p, tag in ((0.25, "q1"), (0.5, "med"), (0.75, "q3")):
                aggs[f"{q}__{tag}"] = selectors.Percentile(q, p)
        exact_db = (selectors.audit_studies(since=since, until=until).annotate(std=selectors._standard_name_subquery())
                    .annotate(descr=Case(When(std__isnull=True, then=F("study_description")), default=Value("")))
                    .values("device_id", "std", "procedure_modality", "descr").annotate(**aggs).order_by())
        shown = {(r["device_id"], r["standard_name"].pk if r["standard_name"] else None, r["modality"], r["description"]): r
                 for r in after["rows"]}
        compared = 0
        for e in exact_db:
            r = shown[(e["device_id"], e["std"], e["procedure_modality"], e["descr"])]
            assert r["n"] == e["n"]
            for q in r["quantities"]:
                for tag, est in (("q1", q["q1"]), ("med", q["median"]), ("q3", q["q3"])):
                    ex = e[f"{q['key']}__{tag}"]
                    assert est == ex or abs(est / ex - 1) <= TOL, (q["key"], tag, est, ex)
                    compared += 1
        assert compared > 50
    assert 'data-summary-note' in client.get(reverse("web:protocol_audit")).content.decode()
    # a period cutting months at both ends, and a modality filter
    now = timezone.now()
    for since, until, mod in ((now - timedelta(days=200, hours=5), now - timedelta(days=31, hours=7), ""),
                              (now - timedelta(days=90), now - timedelta(days=2), "CT")):
        _assert_agrees(selectors.protocol_audit(since=since, until=until, modality=mod), _exact(since, until, mod))
    # the histogram of one row, from the summaries
    from dosereg.protocols.selectors import group_histogram

    row = max(after["rows"], key=lambda r: r["n"])
    q = row["quantities"][0]
    hist = group_histogram(since=period[0], until=period[1], quantity=q["key"], device_id=row["device_id"],
                           standard_name_id=row["standard_name"].pk if row["standard_name"] else None,
                           description=row["description"])
    assert (hist["n"], hist["min"], hist["max"]) == (q["n"], q["min"], q["max"])
    assert sum(b[2] for b in hist["bars"]) == q["n"]
    # one device
    dev = Device.objects.first()
    audit = selectors.protocol_audit(since=now - timedelta(days=365), until=now + timedelta(days=1), device_id=dev.pk)
    assert {r["device_id"] for r in audit["rows"]} <= {dev.pk}
    assert sum(r["n"] for r in audit["rows"]) == Study.objects.filter(
        device=dev, study_datetime__gte=now - timedelta(days=365), has_ionising_dose=True).count()


def test_query_count_does_not_grow_with_studies(web_data, client):
    since, until = _period()
    client.force_login(web_data.users["physicist"])
    url = reverse("web:protocol_audit")
    PS.summaries_rebuild_all()

    def count_selector():
        with CaptureQueriesContext(connection) as ctx:
            selectors.protocol_audit(since=since, until=until)
        return len(ctx.captured_queries)

    def count_page():
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    small = (count_selector(), count_page())
    _studies(3000, seed=11)
    assert (count_selector(), count_page()) == small  # not summarised yet: same statements
    PS.summaries_refresh()
    assert (count_selector(), count_page()) == small
    assert small[0] <= 5


def test_new_study_through_ingest_shows_at_once_and_after_refresh(web_data, tmp_path, client,
                                                                 django_capture_on_commit_callbacks):
    from dosereg.rdsr import builder as B
    from dosereg.pipeline.flow import file_import
    from dicom_listener.spool import Spool

    PS.summaries_rebuild_all()
    since, until = _period()
    client.force_login(web_data.users["physicist"])

    def ct_chest_n():
        return sum(r["n"] for r in selectors.protocol_audit(since=since, until=until)["rows"]
                   if r["modality"] == "CT")

    before = ct_chest_n()
    ds = B.build_ct_rdsr(B.random_ct_spec(random.Random(99), study_description="CT Chest", patient_id="PW0003",
                                          study_datetime=timezone.make_naive(timezone.now() - timedelta(days=2))))
    path = B.write(ds, tmp_path / "new.dcm")
    with django_capture_on_commit_callbacks(execute=True):
        obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
    assert obj.status == "ingested"
    assert ct_chest_n() == before + 1  # newer than the watermark: read exactly
    new = Study.objects.get(pk=obj.study_id)
    assert SummaryBucket.objects.filter(device_key=new.device_id, month=PS.month_of(new.study_datetime), dirty=True).exists()
    assert client.get(reverse("web:protocol_audit")).status_code == 200
    r = PS.summaries_refresh()
    assert r["dirty_left"] == 0 and SummaryState.objects.get().max_study_id >= new.pk
    assert SummaryMember.objects.filter(study_id=new.pk).exists()
    assert ct_chest_n() == before + 1


def test_changed_moved_and_deleted_studies_mark_their_buckets(web_data, django_capture_on_commit_callbacks):
    _studies(300, seed=5)
    PS.summaries_rebuild_all()
    since, until = _period()
    s = Study.objects.filter(dap_total_gy_cm2__isnull=False, device__isnull=False,
                             study_datetime__gte=since + timedelta(days=60)).order_by("pk").first()
    old_month = PS.month_of(s.study_datetime)
    # a re-ingest changed the study's dose and moved it three months back
    Study.objects.filter(pk=s.pk).update(dap_total_gy_cm2=12345.0, study_datetime=s.study_datetime - timedelta(days=92))
    with django_capture_on_commit_callbacks(execute=True):
        follow_up(StudyChanges((s.pk,), ()), inline=True)
    dirty = set(SummaryBucket.objects.filter(dirty=True).values_list("device_key", "month"))
    assert (s.device_id, old_month) in dirty
    assert (s.device_id, PS.month_of(s.study_datetime - timedelta(days=92))) in dirty
    _assert_agrees(selectors.protocol_audit(since=since, until=until), _exact(since, until))  # dirty: read exactly
    PS.summaries_refresh()
    assert not SummaryBucket.objects.filter(dirty=True).exists()
    audit = selectors.protocol_audit(since=since, until=until)
    _assert_agrees(audit, _exact(since, until))
    assert any(q["max"] == 12345.0 for r in audit["rows"] for q in r["quantities"])
    # deleted (post_delete marks its bucket on commit)
    with django_capture_on_commit_callbacks(execute=True):
        Study.objects.filter(pk=s.pk).delete()
    assert SummaryBucket.objects.filter(dirty=True).exists()
    audit = selectors.protocol_audit(since=since, until=until)
    assert not any(q["max"] == 12345.0 for r in audit["rows"] for q in r["quantities"])
    _assert_agrees(audit, _exact(since, until))


def test_mapping_edit_updates_the_page(web_data, client):
    _studies(200, seed=9)
    PS.summaries_rebuild_all()
    client.force_login(web_data.users["physicist"])
    std = StandardName.objects.create(name="Knee radiograph", modality="DX")
    since, until = _period()

    def knee_rows():
        return [r for r in selectors.protocol_audit(since=since, until=until)["rows"] if r["standard_name"] == std]

    assert knee_rows() == []
    r = client.post(reverse("web:protocol_names"), {"name": "DX:Knee", "standard_name": std.pk, "confirm": "yes"})
    assert r.status_code == 302
    rows = knee_rows()
    n_knee = Study.objects.filter(study_description="Knee", study_datetime__gte=since, has_ionising_dose=True).count()
    assert rows and sum(r["n"] for r in rows) == n_knee
    assert "Knee radiograph" in client.get(reverse("web:protocol_audit")).content.decode()
    services.protocol_mapping_set(modality="DX", source_name="Knee", standard_name=None)
    assert knee_rows() == []


def test_refresh_task_and_rebuild_command(web_data):
    from dosereg.protocols.tasks import refresh_protocol_summaries_task

    _studies(100, seed=2)
    r = refresh_protocol_summaries_task.apply().get()
    assert r["new_studies"] == Study.objects.count() and r["dirty_left"] == 0
    assert refresh_protocol_summaries_task.apply().get() == {"new_studies": 0, "rebuilt": 0, "dirty_left": 0}
    call_command("rebuild_protocol_summaries")
    since, until = _period()
    _assert_agrees(selectors.protocol_audit(since=since, until=until), _exact(since, until))
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["refresh-protocol-summaries"]["task"] == "dosereg.refresh_protocol_summaries"


def test_one_device_or_modality_reads_the_same_groups_as_the_whole_audit(web_data):
    """audit_groups narrowed to a device or a modality gives exactly the whole audit's groups of that device or
    modality, with clean, dirty and cut buckets and studies past the watermark all in play (the exact reads are
    one LATERAL subquery per bucket, whose parameters come before the bucket's own)."""
    from dosereg.protocols.selectors import audit_groups

    _studies(600, seed=11)
    PS.summaries_rebuild_all()
    _studies(40, seed=12)  # past the watermark
    SummaryBucket.objects.filter(pk__in=SummaryBucket.objects.order_by("pk").values("pk")[:3]).update(dirty=True)
    since, until = timezone.now() - timedelta(days=200), timezone.now() - timedelta(days=20)  # cuts two months
    whole = audit_groups(since=since, until=until)
    assert sum(g.n for g in whole.values()) == Study.objects.filter(
        study_datetime__gte=since, study_datetime__lt=until, has_ionising_dose=True, not_patient_reason="").count()

    def summary(groups):
        return {k: (g.n, {q: (s.n, s.minimum, s.maximum) for q, s in g.quantities.items()}) for k, g in groups.items()}

    devices = {k.device_id for k in whole}
    assert len(devices) >= 2
    for device_id in devices - {None}:
        assert summary(audit_groups(since=since, until=until, device_id=device_id)) == \
            {k: v for k, v in summary(whole).items() if k.device_id == device_id}
    for modality in {k.modality for k in whole}:
        assert summary(audit_groups(since=since, until=until, modality=modality)) == \
            {k: v for k, v in summary(whole).items() if k.modality == modality}
