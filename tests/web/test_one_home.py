"""One home per dose concept, seen from the pages: the merge group is transitive everywhere, cumulative Ka,r is
never added across planes or reference points, and windows come only from the exposure app (labelled as such)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from dosereg.exposure.models import PatientExposureWindow
from dosereg.exposure.recompute import patient_exposure_recompute
from dosereg.pipeline.flow import patient_merge
from dosereg.registry.merge_group import patient_group_ids, patient_root_id
from dosereg.registry.models import Study
from dosereg.web import selectors


@pytest.fixture
def chain(web_data, django_capture_on_commit_callbacks):
    """B merged into C, then C into A: the chain B -> C -> A (A is the portal user's record)."""
    d = web_data
    a, b, c = d.patients["a"], d.patients["b"], d.patients["c"]
    with django_capture_on_commit_callbacks(execute=True):
        patient_merge(source_id=b.pk, target_id=c.pk, user=d.users["rso"])
        patient_merge(source_id=c.pk, target_id=a.pk, user=d.users["rso"])
    b.refresh_from_db()
    c.refresh_from_db()
    assert b.merged_into_id == c.pk and c.merged_into_id == a.pk  # a chain, not a star
    return d


def test_merge_group_is_transitive_in_one_query(chain, django_assert_num_queries):
    a, b, c = (chain.patients[k] for k in "abc")
    with django_assert_num_queries(1):
        assert sorted(patient_group_ids(a.pk)) == sorted([a.pk, b.pk, c.pk])
    assert patient_group_ids(a.pk)[0] == a.pk
    assert sorted(patient_group_ids(c.pk)) == sorted([c.pk, b.pk])  # a merged record: itself and what was merged into it
    with django_assert_num_queries(1):
        assert patient_root_id(b.pk) == a.pk
    assert patient_root_id(a.pk) == a.pk


def test_merge_chain_history_portal_api_and_totals_agree(chain, client):
    d = chain
    a, b = d.patients["a"], d.patients["b"]
    every = set(Study.objects.filter(patient_id__in=[a.pk, b.pk, d.patients["c"].pk]).values_list("pk", flat=True))
    b_studies = {d.studies["b_carm"].pk, d.studies["b_dx"].pk}
    assert b_studies <= every

    # history page (A's): lists B's studies
    hist = selectors.patient_history(patient=a)
    listed = {s.pk for s in hist["studies"]}
    assert listed == every
    client.force_login(d.users["rso"])
    html = client.get(reverse("web:patient_history", kwargs={"pk": a.pk})).content.decode()
    assert "Hip fracture fixation" in html and "Chest PA" in html

    # portal (the patient linked to A) and the API: B's studies too
    assert {e.study.pk for e in selectors.portal_exams(patient=a)} == every
    client.force_login(d.users["patient"])
    assert "Hip fracture fixation" in client.get(reverse("web:portal")).content.decode()
    from rest_framework.authtoken.models import Token

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.get_or_create(user=d.users["patient"])[0].key)
    assert {r["id"] for r in api.get(reverse("web:api_studies")).json()["results"]} == every

    # totals: each window ending now counts exactly the listed ionising studies inside it
    windows = PatientExposureWindow.objects.filter(patient=a, anchor_study__isnull=True)
    assert windows.exists()
    for w in windows:
        inside = [s for s in hist["studies"] if s.has_ionising_dose and s.study_datetime and w.start <= s.study_datetime <= w.end]
        assert w.procedure_count == len(inside), w.window_days
        kaps = [s.dap_total_gy_cm2 for s in inside if s.dap_total_gy_cm2 is not None]
        assert w.kap_gy_cm2 == pytest.approx(sum(kaps) if kaps else None)
    # the history table shows those windows, whatever their length
    assert [r["studies"] for r in hist["windows"]] == [w.procedure_count for w in windows.order_by("window_days")]


def _biplane(tmp_path, when, kar_a, kar_b, n):
    from dosereg.rdsr import builder as B

    evs = [B.ProjectionEventSpec(datetime=when + timedelta(minutes=1 + k), event_type="fluoroscopy", plane=plane, dap_gy_cm2=10.0,
                                 dose_rp_gy=kar, irradiation_duration_s=60.0, pulse_rate=7.5, kvp=70, tube_current_ma=10)
           for k, (plane, kar) in enumerate((("A", kar_a), ("B", kar_b)))]
    spec = B.ProjectionRDSRSpec(patient_id="BIPLANE-1", issuer_of_patient_id="DOSEREG", patient_sex="F", study_datetime=when,
                                study_description="Cerebral angiography", modality="XA", events=evs, station_name="BIPLANE",
                                device_serial="SN-BIPLANE", institution="Northfield General Hospital")
    return B.write(B.build_projection_rdsr(spec), tmp_path / f"biplane-{n}.dcm")


def test_cumulative_kar_is_never_added_across_planes_or_reference_points(web_data, tmp_path, django_capture_on_commit_callbacks):
    """Two biplane studies: plane A 1.0 + 0.2 Gy, plane B 0.9 + 0.8 Gy. The cumulative Ka,r is the largest
    per-plane sum (B: 1.7 Gy), not the sum of each study's largest plane (1.0 + 0.8 = 1.8 Gy) nor of all planes."""
    from dicom_listener.spool import Spool
    from dosereg.registry.models import Patient
    from dosereg.pipeline.flow import file_import

    now = timezone.now()
    spool = Spool(tmp_path / "spool")
    with django_capture_on_commit_callbacks(execute=True):
        for n, (days, kar_a, kar_b) in enumerate(((20, 1.0, 0.9), (10, 0.2, 0.8))):
            obj, _ = file_import(path=_biplane(tmp_path, now - timedelta(days=days), kar_a, kar_b, n), spool=spool)
            assert obj.status == "ingested", obj.quarantine_reason
    p = Patient.objects.get(patient_id="BIPLANE-1")
    per_study_max = sorted(Study.objects.filter(patient=p).values_list("dose_rp_max_plane_gy", flat=True))
    assert per_study_max == pytest.approx([0.8, 1.0])  # the registry's per-study figure: the largest plane
    row = next(r for r in selectors.patient_history(patient=p)["windows"] if r["label"] == "12 weeks")
    assert row["dose_rp_gy"] == pytest.approx(1.7)
    top = {r["patient_id"]: r for r in selectors.dashboard(now=now)["top_patients"]}
    assert top[p.pk]["kar"] == pytest.approx(1.7)
    # before the exposure recompute has run, nothing is summed in the web app (the old fallback showed 1.8 Gy)
    PatientExposureWindow.objects.filter(patient=p).delete()
    assert selectors.patient_history(patient=p)["windows"] == []


def test_history_without_windows_says_so_and_sums_nothing(web_data, client):
    """A patient whose exposure recompute has not run: no totals made up by the web app, and no label claiming
    they came from the exposure module."""
    from dosereg.registry.models import Patient

    d = web_data
    src = d.studies["a_angio"]
    p = Patient.objects.create(patient_id="NO-WINDOWS", name="Pending^Pat")
    Study.objects.create(study_instance_uid="2.25.424242", patient=p, device_id=src.device_id, study_datetime=timezone.now(),
                         study_description="Coronary angiography", procedure_modality="XA", has_ionising_dose=True,
                         dap_total_gy_cm2=12.5, dose_rp_max_plane_gy=0.4, event_count=0)
    assert not PatientExposureWindow.objects.filter(patient=p).exists()
    client.force_login(d.users["rso"])
    html = client.get(reverse("web:patient_history", kwargs={"pk": p.pk})).content.decode()
    assert "from the exposure module" not in html
    assert "data-windows-pending" in html and "Not computed yet" in html
    assert selectors.patient_history(patient=p)["windows"] == []
    assert p.pk not in {r["patient_id"] for r in selectors.dashboard(now=timezone.now())["top_patients"]}
    patient_exposure_recompute(patient_id=p.pk, notify=False)
    html = client.get(reverse("web:patient_history", kwargs={"pk": p.pk})).content.decode()
    assert "data-windows-pending" not in html and "12 weeks" in html and "computed " in html


def test_exports_and_api_give_numbers_without_float_noise(web_data, client):
    """Machine-readable values stay numbers in the unit of the column / field, rounded to drop float noise."""
    import csv
    import io

    d = web_data
    s = d.studies["a_angio"]
    Study.objects.filter(pk=s.pk).update(dap_total_gy_cm2=478.61458000000005, dose_rp_max_plane_gy=0.1 + 0.2)
    client.force_login(d.users["physicist"])
    r = client.get(reverse("web:patient_history_export", kwargs={"pk": d.patients["a"].pk}))
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode("utf-8-sig"))))
    row = next(x for x in rows if x["study_instance_uid"] == s.study_instance_uid)
    assert row["kap_gy_cm2"] == "478.61458" and row["ka_r_gy"] == "0.3"
    client.force_login(d.users["patient"])
    r = client.get(reverse("web:portal_export"))
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode("utf-8-sig"))))
    row = next(x for x in rows if x["procedure"] == s.study_description)
    assert row["kap_gy_cm2"] == "478.61458" and row["ka_r_gy"] == "0.3"  # the one unit of Ka,r, float noise dropped
    from rest_framework.authtoken.models import Token

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.get_or_create(user=d.users["physicist"])[0].key)
    got = api.get(reverse("web:api_study", kwargs={"pk": s.pk})).json()
    assert got["dap_total_gy_cm2"] == 478.61458 and got["dose_rp_max_plane_gy"] == 0.3


def test_kar_reads_in_one_unit_on_every_page(web_data, client):
    """Issue 17 part 4: one unit per quantity sitewide. A Ka,r of 8 Gy had read "8 Gy" on the study page and
    "8,000 mGy" in the patient's history and portal; it reads 8 Gy on each, and no page heads a Ka,r column mGy."""
    import re

    d = web_data
    s = d.studies["a_angio"]
    Study.objects.filter(pk=s.pk).update(dose_rp_max_plane_gy=8.0)
    client.force_login(d.users["rso"])
    pages = {"study": client.get(reverse("web:study_detail", kwargs={"pk": s.pk})).content.decode(),
             "history": client.get(reverse("web:patient_history", kwargs={"pk": d.patients["a"].pk})).content.decode(),
             "studies": client.get(reverse("web:study_browser")).content.decode()}
    client.force_login(d.users["patient"])
    pages["portal"] = client.get(reverse("web:portal")).content.decode()
    pages["portal print"] = client.get(reverse("web:portal_print")).content.decode()
    for name, html in pages.items():
        assert "8,000" not in html, name
        assert not re.search(r"Ka,r\s*(?:<[^>]+>\s*)*\(?mGy", html), name  # no Ka,r heading or label in mGy
    assert re.search(r">8 <span class=\"unit\">Gy</span>", pages["portal"])
    assert re.search(r"Ka,r 8 Gy", pages["portal print"])


def test_history_without_any_skin_dose_estimate_says_so(web_data, client):
    """A patient whose fluoroscopy procedures have no peak skin dose estimate (no geometry) is told so, not
    "Cumulative: — over 0 procedures with an estimate"."""
    client.force_login(web_data.users["rso"])
    html = client.get(reverse("web:patient_history", kwargs={"pk": web_data.patients["a"].pk})).content.decode()
    assert "skin-history" in html  # patient A has fluoroscopy procedures, none with geometry
    assert "over 0 procedures" not in html
    assert "no procedure of this patient has a peak skin dose estimate yet" in html


def test_fluoroscopy_time_reads_min_s_on_the_protocol_pages(web_data, client):
    """Issue 17 part 4: fluoroscopy time as min:s wherever a person reads it. The protocol audit, its overview
    and its group page had shown it in seconds ("Fluoro time s 2,108"); the summary CSV keeps seconds."""
    import re

    from dosereg.protocols.services import summaries_rebuild_all
    from dosereg.web import services as WS

    d = web_data
    s = d.studies["a_angio"]
    Study.objects.filter(pk=s.pk).update(fluoro_time_total_s=725.0)  # 12:05
    s.refresh_from_db()
    std = WS.standard_name_create(name="Angiography test", modality=s.procedure_modality)
    WS.protocol_mapping_set(modality=s.procedure_modality, source_name=s.study_description, standard_name=std)
    summaries_rebuild_all()
    client.force_login(d.users["physicist"])
    since = (s.study_datetime - timedelta(days=1)).date().isoformat()
    until = (s.study_datetime + timedelta(days=1)).date().isoformat()
    audit = client.get(reverse("web:protocol_audit") + f"?since={since}&until={until}").content.decode()
    overview = client.get(reverse("web:protocol_overview") + f"?since={since}&until={until}").content.decode()
    group_link = re.search(r'href="(/protocols/group/\?[^"]+)"', audit)
    assert group_link, audit
    group = client.get(group_link.group(1).replace("&amp;", "&")).content.decode()
    for name, html in {"audit": audit, "overview": overview, "group": group}.items():
        text = re.sub(r"<[^>]*>", " ", html)  # what is read: not the drill-down links' machine values
        assert "12:05" in text, name
        assert "725" not in text, name
        assert not re.search(r"Fluoro time\s*(?:<[^>]+>\s*)*\(?s\)?\s*<", html), name  # no fluoro time heading in s
    assert "Fluoro time <span class=\"muted small\">min:s</span>" in audit
    assert "Fluoro time (min:s)" in group
