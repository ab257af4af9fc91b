"""Peak skin dose rules (issue 15 part 5): once the skin task has stored a study's PSD, the pipeline evaluates the PSD
rules beside the Ka,r rules; a level opens or escalates the procedure's RSO case (the same case as its Ka,r levels),
which suggests a skin check 2-4 weeks after the procedure. Reprocessing recomputes the PSD without duplicates."""
from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User

from dicom_listener.spool import Spool
from dosereg.cases.models import Case, CaseAlert
from dosereg.exposure.models import Alert, Rule, RuleSet
from dosereg.notifications.models import Notification
from dosereg.pipeline.flow import objects_reprocess
from dosereg.registry.models import DoseObject
from dosereg.skindose.models import StudySkinDose

from .test_skin_pages import high_dose_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def rso(db):
    group, _ = Group.objects.get_or_create(name="rso")
    u = User.objects.create_user("psd-rso", email="psd-rso@hospital.test")
    u.groups.add(group)
    return u


def _import(tmp_path, capture, **kw):
    with capture(execute=True):  # the ingest's follow-up queues the skin task after its commit (eager here)
        return high_dose_study(tmp_path, Spool(tmp_path / "spool"), **kw)


def test_psd_rules_are_seeded_beside_the_kar_rules_with_their_sources():
    rules = {r.key: r for r in Rule.objects.filter(ruleset__active=True, quantity="psd_gy")}
    assert set(rules) == {"fgi-psd-first", "fgi-psd-subsequent", "fgi-psd-srdl", "fgi-psd-review-15gy",
                          "cum-psd-12m-review-15gy"}
    assert (rules["fgi-psd-first"].threshold_value, rules["fgi-psd-first"].verification) == (2, "◐")
    assert rules["fgi-psd-subsequent"].step_value == 0.5
    assert (rules["fgi-psd-srdl"].threshold_value, rules["fgi-psd-srdl"].verification) == (3, "✔")
    assert rules["fgi-psd-srdl"].follow_up_days == 28 and "NCRP Report 168" in rules["fgi-psd-srdl"].source
    review = rules["fgi-psd-review-15gy"]
    assert review.threshold_value == 15 and review.level_kind == "review" and "Joint Commission" in review.source
    assert rules["cum-psd-12m-review-15gy"].window_days == 365
    assert all(r.scope_modalities == "RF,XA" and r.threshold_unit == "Gy" for r in rules.values())
    # the Ka,r rules are still there, in the same (active) version
    assert Rule.objects.filter(ruleset__active=True, key="fgi-kar-srdl").exists()


def test_the_migration_adds_a_new_version_when_the_active_one_raised_alerts(tmp_path, django_capture_on_commit_callbacks):
    """Alerts keep the rule version that raised them: PSD rules come as a new version, not an edit in place."""
    import importlib

    from django.apps import apps

    mig = importlib.import_module("dosereg.exposure.migrations.0006_peak_skin_dose_rules")
    active = RuleSet.objects.get(active=True)
    Rule.objects.filter(ruleset=active, quantity="psd_gy").delete()  # as before the migration
    _import(tmp_path, django_capture_on_commit_callbacks, patient_id="PSD-MIG", n=8)
    raised = Alert.objects.filter(rule__ruleset=active).count()
    assert raised > 0
    mig.add_psd_rules(apps, None)
    new = RuleSet.objects.get(active=True)
    assert new.pk != active.pk and new.version == active.version + 1
    assert set(Rule.objects.filter(ruleset=new).values_list("key", flat=True)) == \
        set(Rule.objects.filter(ruleset=active).values_list("key", flat=True)) | {
            "fgi-psd-first", "fgi-psd-subsequent", "fgi-psd-srdl", "fgi-psd-review-15gy", "cum-psd-12m-review-15gy"}
    assert Alert.objects.filter(rule__ruleset=active).count() == raised
    mig.add_psd_rules(apps, None)  # run twice: nothing more
    assert RuleSet.objects.get(active=True).pk == new.pk


def test_a_high_psd_opens_the_procedures_case_with_a_skin_check_and_reprocessing_adds_nothing(
        tmp_path, rso, django_capture_on_commit_callbacks):
    obj = _import(tmp_path, django_capture_on_commit_callbacks, patient_id="PSD-1", n=16)
    skin = StudySkinDose.objects.get(study_id=obj.study_id)
    assert skin.computable and 3.0 < skin.psd_gy < 15.0, skin.psd_gy
    psd_alerts = {a.rule_key: a for a in Alert.objects.filter(quantity="psd_gy", study_id=obj.study_id,
                                                              level__in=("first", "srdl"))}
    assert set(psd_alerts) == {"fgi-psd-first", "fgi-psd-srdl"}
    srdl = psd_alerts["fgi-psd-srdl"]
    assert srdl.value == pytest.approx(skin.psd_gy) and srdl.threshold == 3 and srdl.unit == "Gy"
    assert srdl.severity == "high" and "NCRP Report 168" in srdl.detail["source"]
    n_sub = Alert.objects.filter(rule_key="fgi-psd-subsequent", study_id=obj.study_id).count()
    assert n_sub == int((skin.psd_gy - 2.0) / 0.5 + 1e-9)  # one per 0.5 Gy step above 2 Gy
    # the same case as the procedure's Ka,r levels (Ka,r 8 Gy: first, subsequent, SRDL)
    cases = set(CaseAlert.objects.filter(alert__study_id=obj.study_id).values_list("case_id", flat=True))
    assert len(cases) == 1
    case = Case.objects.get(pk=cases.pop())
    assert case.kind == "procedure" and {"fgi-kar-srdl", "fgi-psd-srdl"} <= set(case.rule_keys.strip(",").split(","))
    # the Ka,r SRDL opened it at ingest; the PSD, stored later by the skin task, joins it at the same level class:
    # a timeline entry, no second e-mail (a higher class, the 15 Gy review level, would escalate and e-mail again)
    events = list(case.events.values_list("action", "note"))
    assert any(a == "level_added" and "Peak skin dose substantial radiation dose level" in n for a, n in events), events
    exam = obj.study.study_datetime.date()
    assert case.follow_up_suggested == exam + dt.timedelta(days=28)  # skin check 2–4 weeks after the procedure
    assert dt.timedelta(days=14) <= case.follow_up_suggested - exam <= dt.timedelta(days=28)
    mails = Notification.objects.filter(recipient="psd-rso@hospital.test").count()
    assert mails >= 1
    n_alerts, computed_at = Alert.objects.count(), skin.computed_at

    # reprocessing: the PSD is computed again and re-evaluated; no alert, case or e-mail twice
    with django_capture_on_commit_callbacks(execute=True):
        objects_reprocess(queryset=DoseObject.objects.filter(pk=obj.pk), inline=True)
    skin2 = StudySkinDose.objects.get(study__study_instance_uid=obj.study.study_instance_uid)
    assert skin2.computed_at > computed_at and skin2.psd_gy == pytest.approx(skin.psd_gy)
    assert Alert.objects.count() == n_alerts
    assert Alert.objects.filter(quantity="psd_gy", status="open").count() == len(psd_alerts) + n_sub
    assert Case.objects.filter(kind="procedure", study_uid=obj.study.study_instance_uid).count() == 1
    assert Notification.objects.filter(recipient="psd-rso@hospital.test").count() == mails


def test_a_psd_below_the_first_level_raises_nothing(tmp_path, django_capture_on_commit_callbacks):
    obj = _import(tmp_path, django_capture_on_commit_callbacks, patient_id="PSD-LOW", n=2)
    skin = StudySkinDose.objects.get(study_id=obj.study_id)
    assert skin.computable and skin.psd_gy < 2.0
    assert not Alert.objects.filter(quantity="psd_gy").exists()


def test_the_15_gy_review_level_escalates_above_the_srdl():
    from types import SimpleNamespace

    from dosereg.cases.services import level_class

    def alert(level):
        return SimpleNamespace(level=level, severity="high", detail={})
    assert level_class(alert("review")) > level_class(alert("srdl")) > level_class(alert("first"))


def test_the_15_gy_review_level_escalates_the_case_and_emails_again(tmp_path, rso, django_capture_on_commit_callbacks):
    obj = _import(tmp_path, django_capture_on_commit_callbacks, patient_id="PSD-15", n=48, dose_rp_gy=0.5)
    skin = StudySkinDose.objects.get(study_id=obj.study_id)
    assert skin.psd_gy >= 15.0, skin.psd_gy
    review = Alert.objects.get(rule_key="fgi-psd-review-15gy", study_id=obj.study_id)
    assert review.level == "review" and review.threshold == 15
    case = Case.objects.get(members__alert=review)
    assert case.top_rule_key == "fgi-psd-review-15gy" and "institutional review level" in case.title.lower()
    assert any(a == "escalated" for a in case.events.values_list("action", flat=True))
    keys = set(Notification.objects.filter(recipient="psd-rso@hospital.test").values_list("dedupe_key", flat=True))
    assert len(keys) == 2  # opened (Ka,r SRDL at ingest), escalated (PSD review level after the skin task)
    assert review.detail["follow_up_suggested_due"] == (obj.study.study_datetime.date() + dt.timedelta(days=14)).isoformat()
    assert case.follow_up_suggested == obj.study.study_datetime.date() + dt.timedelta(days=14)


def test_the_12_month_review_level_reads_the_summed_maps_not_the_psd_sum(tmp_path, django_capture_on_commit_callbacks):
    """Two procedures 30 days apart on different skin (table moved 15 cm): their maps add to the larger PSD, not to
    the sum. A review level between the two is reached only by the conservative sum, so it is not raised; below the
    larger PSD it is raised with the summed-map value and the conservative sum beside it."""
    from dosereg.exposure.recompute import patient_exposure_recompute
    from dosereg.exposure.rulesets import ruleset_activate, ruleset_new_version
    from dosereg.rdsr import builder as b
    from dosereg.skindose.services import study_skin_dose_compute

    from .test_skin_pages import _geometry_event

    studies = []
    for day, shift in ((0, 0.0), (30, 150.0)):
        spec = b.ProjectionRDSRSpec(study_datetime=dt.datetime(2026, 6, 1, 9) + dt.timedelta(days=day),
                                    manufacturer="Siemens", model="AXIOM-Artis", patient_id="PSD-CUM",
                                    events=[_geometry_event(table_longitudinal_position_mm=shift) for _ in range(4)])
        path = b.write(b.build_projection_rdsr(spec), tmp_path / f"cum-{day}.dcm")
        from dosereg.pipeline.flow import file_import

        with django_capture_on_commit_callbacks(execute=True):
            obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
        studies.append(obj.study)
    psd = [study_skin_dose_compute(study_id=s.pk).psd_gy for s in studies]
    total = sum(psd)
    patient_id = studies[0].patient_id

    def review_level(gy):
        rs = ruleset_new_version(note=f"12-month review level {gy} Gy (test)")
        Rule.objects.filter(ruleset=rs, key="cum-psd-12m-review-15gy").update(threshold_value=gy)
        ruleset_activate(ruleset_id=rs.pk)
        with django_capture_on_commit_callbacks(execute=True):
            patient_exposure_recompute(patient_id=patient_id)
        return Alert.objects.filter(rule_key="cum-psd-12m-review-15gy").exclude(status="withdrawn")

    assert not review_level(max(psd) + 0.4 * (total - max(psd))).exists()  # only the PSD sum would reach it
    alerts = list(review_level(0.9 * max(psd)))
    assert len(alerts) == 1
    a = alerts[0]
    assert a.detail["psd_method"] == "summed_map" and a.value == pytest.approx(max(psd), rel=1e-3)
    assert a.detail["psd_conservative_sum_gy"] == pytest.approx(total)
    assert a.subject.startswith("episode:") and a.window_days == 365
