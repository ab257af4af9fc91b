"""Technique distributions per protocol and room (issue 16): tube voltage, tube current, pulse rate and
filtration per irradiation event; mammography AGD per view and compressed-thickness band. Known values on the
real database, compared with exact quartiles; site scope and phantom studies respected."""
from __future__ import annotations

import random
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from dosereg.access.scope import EVERY_SITE
from dosereg.protocols.histogram import exact_quantiles
from dosereg.protocols.models import StandardName
from dosereg.registry.models import Device, DoseObject, IrradiationEvent, Study
from dosereg.web import audit_pages, services


def _study(device, description: str, modality: str, *, when, not_patient: str = "") -> Study:
    s = Study.objects.create(study_instance_uid=f"2.25.9{random.randrange(10**12)}", device=device, study_datetime=when,
                             study_description=description, procedure_modality=modality, has_ionising_dose=True,
                             not_patient_reason=not_patient)
    return s


def _events(study, rows: list[dict]) -> None:
    obj = DoseObject.objects.create(sop_instance_uid=f"2.25.8{random.randrange(10**12)}", path="x", study=study,
                                    status="ingested")
    IrradiationEvent.objects.bulk_create([IrradiationEvent(study=study, dose_object=obj,
                                                           irradiation_event_uid=f"{obj.pk}.{i}", **r)
                                          for i, r in enumerate(rows)])


def test_technique_quartiles_filtration_and_mammography_bands(web_data, client):
    rng = random.Random(4)
    now = timezone.now()
    angio = Device.objects.create(display_name="Cath lab 2", manufacturer="Test", model="A", modality="XA",
                                  station_name="CATH2")
    mammo = Device.objects.create(display_name="Mammo 1", manufacturer="Test", model="M", modality="MG",
                                  station_name="MAMMO1")
    coro = StandardName.objects.get(modality="RF", name="Coronary angiography")
    services.protocol_mapping_set(modality="XA", source_name="CORO", standard_name=coro)
    kvs, mas, rates = [], [], []
    cu = [{"type": "strip", "material": "Copper", "thickness_min_mm": 0.1, "thickness_max_mm": 0.1}]
    for i in range(12):
        s = _study(angio, "CORO", "XA", when=now - timedelta(days=i + 1))
        rows = []
        for _ in range(5):
            kv, ma, rate = rng.uniform(60, 110), rng.uniform(5, 900), rng.choice([7.5, 15.0, 30.0])
            kvs.append(kv)
            mas.append(ma)
            rates.append(rate)
            rows.append({"kvp": kv, "tube_current_ma": ma, "pulse_rate_per_s": rate, "filter_material": "Copper",
                         "extra": {"filters": cu}})
        _events(s, rows)
    # a phantom study on the same room is not a patient's technique
    _events(_study(angio, "CORO", "XA", when=now - timedelta(days=2), not_patient="QA"),
            [{"kvp": 150.0, "tube_current_ma": 1.0, "pulse_rate_per_s": 60.0}])
    # an unmapped description on the same room is its own protocol
    _events(_study(angio, "PERIPH RUNOFF", "XA", when=now - timedelta(days=3)), [{"kvp": 70.0}])
    agd = {("CC", 4): [], ("MLO", 5): [], ("CC", 6): []}
    for (view, band), vals in agd.items():
        for _ in range(6):
            v = rng.uniform(0.8, 2.5)
            vals.append(v)
            _events(_study(mammo, "Screening", "MG", when=now - timedelta(days=5)),
                    [{"agd_mgy": v, "compression_thickness_mm": band * 10 + rng.uniform(0, 9.9), "view": view}])
    since, until = now - timedelta(days=30), now + timedelta(days=1)

    dist = audit_pages.technique_distributions(since=since, until=until, modality="XA", scope=EVERY_SITE)
    rows = {(r["device"], r["protocol"]): r for r in dist["rows"]}
    row = rows[("Cath lab 2", "Coronary angiography")]
    assert row["events"] == 60 and row["mapped"]
    for field, vals in (("kvp", kvs), ("tube_current_ma", mas), ("pulse_rate_per_s", rates)):
        f = row["by_field"][field]
        assert f["n"] == 60
        q1, med, q3 = exact_quantiles(vals, (0.25, 0.5, 0.75))
        assert abs(f["q1"] - q1) < 1e-9 and abs(f["median"] - med) < 1e-9 and abs(f["q3"] - q3) < 1e-9
    assert row["filtration"] == [{"label": "Copper 0.1 mm", "n": 60}]
    other = rows[("Cath lab 2", "PERIPH RUNOFF")]
    assert not other["mapped"] and other["by_field"]["kvp"]["median"] == 70.0 and "tube_current_ma" not in other["by_field"]

    mg = audit_pages.mammography_agd(since=since, until=until)
    got = {(r["view"], r["band"]): r for r in mg["rows"] if r["device"] == "Mammo 1"}
    assert set(got) == set(agd)
    for key, vals in agd.items():
        r = got[key]
        assert r["n"] == 6 and abs(r["med"] - exact_quantiles(vals, (0.5,))[0]) < 1e-9
        assert r["band_label"] == f"{key[1] * 10}–{key[1] * 10 + 10} mm"

    assert audit_pages.filtration_label("Al", [{"material": "Aluminium", "thickness_min_mm": 1, "thickness_max_mm": 2},
                                               {"material": "Copper"}]) == "Aluminium 1–2 mm + Copper"
    client.force_login(web_data.users["physicist"])
    html = client.get(reverse("web:fluoro_technique") + "?modality=XA").content.decode()
    assert "data-technique-row" in html and "Copper 0.1 mm" in html and "Coronary angiography" in html
    html = client.get(reverse("web:fluoro_technique")).content.decode()
    assert "40–50 mm" in html and "MLO" in html
