"""The study page and the study API show mammography AGD per breast and NM/PET administered activity, with units
(issue 16); objects imported through the real ingest."""
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as B
from dosereg.registry.models import Study

WHEN = dt.datetime(2026, 3, 2, 9, 41, 7)


def _import(tmp_path, ds):
    obj, _ = file_import(path=B.write(ds, tmp_path / f"{ds.SOPInstanceUID}.dcm"), spool=Spool(tmp_path / "spool"))
    return obj


def test_study_page_and_api_show_agd_per_breast_and_activity(web_data, client, tmp_path):
    mg_uid, nm_uid = B.deterministic_uid("web-mg"), B.deterministic_uid("web-nm")
    for intent in ("FOR PRESENTATION", "FOR PROCESSING"):
        _import(tmp_path, B.build_mg_image(study_instance_uid=mg_uid, presentation_intent=intent, acquisition_datetime=WHEN,
                                           laterality="R", organ_dose_dgy=0.0142))
    _import(tmp_path, B.build_rrdsr(B.RRDSRSpec(study_instance_uid=nm_uid, administrations=[
        B.RadiopharmaceuticalSpec(administered_activity_mbq=251.3)])))
    mg, nm = Study.objects.get(study_instance_uid=mg_uid), Study.objects.get(study_instance_uid=nm_uid)
    client.force_login(web_data.users["physicist"])
    html = client.get(reverse("web:study_detail", kwargs={"pk": mg.pk})).content.decode()
    assert "average glandular dose per breast" in html and "AGD mGy" in html
    assert "<td>right</td><td class=\"num\">1.42</td><td class=\"num\">1</td>" in html
    html = client.get(reverse("web:study_detail", kwargs={"pk": nm.pk})).content.decode()
    assert "administered activity" in html and "Activity MBq" in html and "251" in html
    assert "Fluorodeoxyglucose" in html
    data = client.get(reverse("web:api_study", kwargs={"pk": mg.pk})).json()
    assert data["agd_per_breast_mgy"]["R"]["agd_mgy"] == pytest.approx(1.42) and data["event_count"] == 1
    data = client.get(reverse("web:api_study", kwargs={"pk": nm.pk})).json()
    (a,) = data["radiopharmaceutical_administrations"]
    assert a["administered_activity_mbq"] == 251.3 and a["effective_dose_msv"] is None
    assert a["effective_dose_detail"]["label"].startswith("population-average estimate")
