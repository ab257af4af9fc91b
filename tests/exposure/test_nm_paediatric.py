"""The EANM paediatric dosage card as an NM/PET alert rule (issue 16): the table (versioned, cited, marked unverified,
its rule seeded disabled), what two derived sources state and the table reproduces, and the rule through the real
ingest path with Radiopharmaceutical Radiation Dose SRs made by the project's builder."""
from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings

from dosereg.exposure import eanm_card
from dosereg.exposure.constants import Q_NM_PAED, UNVERIFIED
from dosereg.exposure.models import Alert, Rule
from dosereg.exposure.recompute import patient_exposure_recompute
from dosereg.rdsr import builder as B
from dosereg.registry.models import DoseObject, Study

pytestmark = pytest.mark.django_db

KEY = "nm-paed-eanm-card"
FDG = ("35321007", "SCT", "Fluorodeoxyglucose F^18^")
WHEN = dt.datetime(2026, 3, 2, 10, 0)


# --- the table ----------------------------------------------------------------------------------------------------
def test_every_cross_checked_activity_is_reproduced_by_the_table():
    table = eanm_card.EANM_CARD
    for check in eanm_card.CROSS_CHECKS:
        row = check.get("row_params") or eanm_card.card_row(table, check["row"])
        assert row is not None, check.get("row")
        for weight, stated in check["activities"].items():
            activity, detail = eanm_card.card_activity(table, row, weight)
            assert activity is not None, (row["name"], weight, detail)
            diff = abs(activity - stated)
            ok = diff <= check.get("tolerance_mbq", 0) or diff / stated <= check.get("tolerance_fraction", 0)
            assert ok, (check["source"], row["name"], weight, stated, activity)


def test_table_shape_weight_classes_minimum_and_labels():
    table = settings.EANM_PAEDIATRIC_DOSAGE_CARD
    weights = table["weights_kg"]
    assert weights == sorted(weights) and weights[0] == 3 and weights[-1] == 68
    for cls in ("A", "B", "C"):
        m = table["multiples"][cls]
        assert len(m) == len(weights) and m[0] == 1.0 and m == sorted(m), cls
    assert table["verification"] == UNVERIFIED and "not compared with the primary EANM card" in table["verification_note"]
    assert "EANM Paediatric Dosage Card" in table["source"] and table["version"].startswith("eanm-paediatric-card-2016.08")
    fdg = table["radiopharmaceuticals"]["SCT:35321007"]
    # weight classes: the row at or below the weight (54 kg is the 52-54 row); the minimum activity is a floor
    assert eanm_card.card_activity(table, fdg, 54.0)[1]["weight_class_kg"] == 52
    assert eanm_card.card_activity(table, fdg, 55.9)[1]["multiple"] == 11.29
    assert eanm_card.card_activity(table, fdg, 2.1)[0] == 14.0  # below 3 kg: the first row (here the minimum)
    bone = eanm_card.card_row(table, "99mTc bisphosphonates (MDP, HDP, DPD), bone")
    assert eanm_card.card_activity(table, bone, 3.0)[0] == 40.0  # 35 × 1 is below the 40 MBq minimum
    assert eanm_card.card_activity(table, fdg, 68.1) == (None, eanm_card.card_activity(table, fdg, 68.1)[1])
    assert "adult activities apply" in eanm_card.card_activity(table, fdg, 80.0)[1]["reason"]


def test_rule_is_seeded_disabled_unverified_and_cites_the_card():
    rule = Rule.objects.get(ruleset__active=True, key=KEY)
    assert rule.enabled is False and rule.verification == UNVERIFIED and "UNVERIFIED" in rule.title
    assert rule.quantity == Q_NM_PAED and rule.max_age_years == 18 and rule.params == {"tolerance_fraction": 0.10}
    assert "EANM Paediatric Dosage Card 2016-08" in rule.source and "eanm-paediatric-card-2016.08" in rule.source


# --- the rule through the ingest -----------------------------------------------------------------------------------
def _rrdsr(tmp_path, import_file, name: str, *, activity: float, weight: float | None, age: str | None,
           agent=FDG, report_weight: float | None = None) -> Study:
    ds = B.build_rrdsr(B.RRDSRSpec(
        patient_id=f"NMP-{name}", study_datetime=WHEN, patient_age=age, weight_kg=weight, report_weight_kg=report_weight,
        administrations=[B.RadiopharmaceuticalSpec(agent=agent, administered_activity_mbq=activity)]))
    obj = import_file(B.write(ds, tmp_path / f"{name}.dcm"))
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    return Study.objects.get(pk=obj.study_id)


def _alerts(study: Study) -> list[Alert]:
    return list(Alert.objects.filter(rule_key=KEY, study_uid=study.study_instance_uid))


def test_disabled_rule_raises_nothing(tmp_path, import_file):
    s = _rrdsr(tmp_path, import_file, "off", activity=300.0, weight=20.0, age="006Y")
    assert _alerts(s) == []


@pytest.fixture
def enabled():
    Rule.objects.filter(ruleset__active=True, key=KEY).update(enabled=True)


def test_child_above_the_card_is_alerted_with_the_comparison(tmp_path, import_file, enabled):
    # 20 kg, class B, FDG 3D: 14.0 MBq × 4.86 = 68.04 MBq; with 10 % tolerance 74.844 MBq is allowed
    s = _rrdsr(tmp_path, import_file, "over", activity=120.0, weight=20.0, age="006Y")
    (alert,) = _alerts(s)
    assert alert.level == "notification" and alert.quantity == Q_NM_PAED and alert.unit == "MBq"
    assert alert.value == 120.0 and alert.threshold == pytest.approx(74.844)
    (adm,) = alert.detail["administrations"]
    assert adm["card_activity_mbq"] == pytest.approx(68.04) and adm["weight_class_kg"] == 20
    assert adm["radiopharmaceutical_class"] == "B" and adm["ratio_to_card"] == pytest.approx(120.0 / 68.04, rel=1e-4)
    assert alert.detail["eanm_card_verification"] == UNVERIFIED and alert.detail["tolerance_fraction"] == 0.10
    assert alert.detail["eanm_card_version"] == settings.EANM_PAEDIATRIC_DOSAGE_CARD["version"]
    assert "120 MBq ≥ 74.8 MBq" in alert.title and "[⚠]" in alert.message


def test_within_the_card_and_out_of_scope_are_not_alerted(tmp_path, import_file, enabled):
    within = _rrdsr(tmp_path, import_file, "within", activity=74.0, weight=20.0, age="006Y")  # below 74.844
    adult = _rrdsr(tmp_path, import_file, "adult", activity=400.0, weight=60.0, age="040Y")
    unknown_age = _rrdsr(tmp_path, import_file, "noage", activity=400.0, weight=20.0, age=None)
    no_weight = _rrdsr(tmp_path, import_file, "noweight", activity=400.0, weight=None, age="006Y")
    heavy = _rrdsr(tmp_path, import_file, "heavy", activity=400.0, weight=75.0, age="016Y")  # above the card's 68 kg
    uncoded = _rrdsr(tmp_path, import_file, "mdp", activity=900.0, weight=20.0, age="006Y",
                     agent=("99999999", "SCT", "an agent the card table has no code for"))
    for s in (within, adult, unknown_age, no_weight, heavy, uncoded):
        assert _alerts(s) == [], s.patient.patient_id


def test_weight_from_the_report_and_the_tolerance_is_the_rules(tmp_path, import_file, enabled):
    # no Patient's Weight in the header, 10 kg in TID 10023: 14 × 2.71 = 37.94 MBq, allowed 41.734 MBq
    s = _rrdsr(tmp_path, import_file, "tid10023", activity=45.0, weight=None, report_weight=10.0, age="001Y")
    (alert,) = _alerts(s)
    assert alert.threshold == pytest.approx(41.734) and alert.detail["administrations"][0]["weight_kg"] == 10.0
    # a wider tolerance (a new version of the rule in practice; here the row): the recompute withdraws the alert
    Rule.objects.filter(ruleset__active=True, key=KEY).update(params={"tolerance_fraction": 0.25})
    patient_exposure_recompute(patient_id=s.patient_id, notify=False)
    alert.refresh_from_db()
    assert alert.status == Alert.STATUS_WITHDRAWN


def test_site_table_file_replaces_the_shipped_one(tmp_path, import_file, enabled, settings):
    """A site that has checked the card adds the code its units send for a row (here 99mTc MDP, made-up code)."""
    table = dict(settings.EANM_PAEDIATRIC_DOSAGE_CARD)
    bone = eanm_card.card_row(table, "99mTc bisphosphonates (MDP, HDP, DPD), bone")
    table["radiopharmaceuticals"] = {**table["radiopharmaceuticals"], "99SITE:MDP": bone}
    settings.EANM_PAEDIATRIC_DOSAGE_CARD = table
    # 30 kg, class B: 35 × 6.86 = 240.1 MBq (the French regulation's 240 MBq), allowed 264.11 MBq
    s = _rrdsr(tmp_path, import_file, "site", activity=300.0, weight=30.0, age="009Y",
               agent=("MDP", "99SITE", "Tc-99m medronate"))
    (alert,) = _alerts(s)
    assert alert.threshold == pytest.approx(264.11)
    assert alert.detail["administrations"][0]["card_row"] == "99mTc bisphosphonates (MDP, HDP, DPD), bone"


def test_migration_adds_the_rule_as_a_new_version_once_alerts_were_raised(tmp_path, import_file, enabled):
    """Migration 0007 on a registry whose active rule set has raised alerts: a new version (copy + the rule) becomes
    active, the old one keeps its alerts; run again, it adds nothing."""
    import importlib

    from django.apps import apps as django_apps

    from dosereg.exposure.models import RuleSet

    s = _rrdsr(tmp_path, import_file, "mig", activity=120.0, weight=20.0, age="006Y")
    (alert,) = _alerts(s)
    old = RuleSet.objects.get(active=True)
    # the registry as it was before 0007: the active set without the rule, with alerts of its other rules
    Alert.objects.filter(pk=alert.pk).update(rule=Rule.objects.filter(ruleset=old).exclude(key=KEY).first())
    Rule.objects.filter(ruleset=old, key=KEY).delete()
    migration = importlib.import_module("dosereg.exposure.migrations.0007_nm_paediatric_card_rule")
    migration.add_nm_rules(django_apps, None)
    new = RuleSet.objects.get(active=True)
    assert new.pk != old.pk and new.version == old.version + 1
    assert not Rule.objects.filter(ruleset=old, key=KEY).exists()
    added = Rule.objects.get(ruleset=new, key=KEY)
    assert added.enabled is False and added.verification == UNVERIFIED
    assert Rule.objects.filter(ruleset=new).count() == Rule.objects.filter(ruleset=old).count() + 1
    migration.add_nm_rules(django_apps, None)
    assert Rule.objects.filter(ruleset__active=True, key=KEY).count() == 1


def test_admin_labels_the_unverified_table(client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    admin_user = User.objects.create_superuser("nmp-admin", "a@example.org", "pw-nmp-admin-1")
    client.force_login(admin_user)
    rule = Rule.objects.get(ruleset__active=True, key=KEY)
    html = client.get(reverse("admin:exposure_rule_change", args=[rule.pk])).content.decode()
    assert "EANM paediatric dosage card eanm-paediatric-card-2016.08" in html and "UNVERIFIED" in html
    html = client.get(reverse("admin:exposure_rule_changelist") + "?quantity=nm_paed_activity_mbq").content.decode()
    assert "UNVERIFIED" in html


def test_pet_image_headers_without_an_rrdsr_are_compared_too(tmp_path, import_file, enabled):
    """A PET unit that sends no RRDSR: the administration read from the images' Radiopharmaceutical Information
    Sequence (Radionuclide Total Dose in Bq) is compared; every image of the series repeats it, one alert."""
    uid = B.deterministic_uid("nmp-pet-headers")
    for n in (1, 2):
        ds = B.build_nm_image(study_instance_uid=uid, patient_id="NMP-PT", patient_age="008Y", weight_kg=26.0,
                              total_dose_bq=150.0e6, instance_number=n, study_datetime=WHEN)
        obj = import_file(B.write(ds, tmp_path / f"pt{n}.dcm"))
        assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    study = Study.objects.get(study_instance_uid=uid)
    assert study.procedure_modality == "PT"
    (alert,) = _alerts(study)
    # 26 kg, class B: 14 × 6.14 = 85.96 MBq, allowed 94.556 MBq; 150 MBq administered
    assert alert.value == pytest.approx(150.0) and alert.threshold == pytest.approx(94.556)
    (adm,) = alert.detail["administrations"]
    assert adm["weight_class_kg"] == 26 and adm["multiple"] == 6.14


def test_the_rso_worklist_and_case_show_the_activity_in_mbq(tmp_path, import_file, enabled, client):
    from django.urls import reverse

    from dosereg.cases.models import CaseAlert
    from dosereg.web.services import user_create

    s = _rrdsr(tmp_path, import_file, "case", activity=120.0, weight=20.0, age="006Y")
    (alert,) = _alerts(s)
    case_id = CaseAlert.objects.get(alert_id=alert.pk).case_id
    client.force_login(user_create(username="nmp-rso", password="pw-nmp-rso-12345", role="rso"))
    html = client.get(reverse("cases:worklist")).content.decode()
    assert "120 MBq" in html
    html = client.get(reverse("cases:detail", args=[case_id])).content.decode()
    assert "120 MBq" in html and "74.8 MBq" in html and "(unverified)" in html
