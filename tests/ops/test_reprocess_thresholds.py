"""Reprocess over the corpus after a threshold change: the new alerts appear, nobody gets an e-mail twice.

Acceptance (issue 6). Uses the exposure app's rule set versions (dosereg.exposure.rulesets) and
real SMTP (aiosmtpd), through ``manage.py reprocess``.
"""
from __future__ import annotations

import importlib
from collections import Counter
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, User
from django.core.management import call_command

from dicom_listener.spool import Spool
from dosereg.exposure.constants import RSO_GROUP
from dosereg.exposure.models import Alert, Rule
from dosereg.exposure.rulesets import ruleset_activate, ruleset_new_version
from dosereg.notifications.models import Notification, NotificationAttempt
from dosereg.registry.models import DoseObject, Study
from dosereg.pipeline.flow import file_import
from tests.notifications.smtp import smtp_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def mails_per_alert_and_recipient(smtp) -> tuple[Counter, Counter]:
    """(subject, recipient) of every message the SMTP server accepted, and of every Notification marked sent."""
    sent = Counter()
    by_subject_rcpt = Counter((n.subject, n.recipient) for n in Notification.objects.filter(status=Notification.STATUS_SENT))
    for msg, (_, rcpts) in zip(smtp.messages, smtp.envelopes):
        for r in rcpts:
            sent[(" ".join(msg["Subject"].split()), r)] += 1
    return sent, by_subject_rcpt


def test_reprocess_after_threshold_change_new_alerts_no_duplicate_emails(corpus_files, tmp_path, settings, smtp_server):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.EXPOSURE_NOTIFY_MAX_AGE_DAYS = None  # the corpus is years old: e-mail anyway
    # the default rules are seeded by a data migration; an earlier transactional test may have flushed them
    importlib.import_module("dosereg.exposure.migrations.0002_seed_defaults").seed(django_apps, None)
    group, _ = Group.objects.get_or_create(name=RSO_GROUP)
    for name in ("rso1", "rso2"):
        User.objects.create_user(name, email=f"{name}@hospital.test").groups.add(group)

    spool = Spool(tmp_path / "spool")
    for f in corpus_files:
        file_import(path=f, spool=spool)
    assert not DoseObject.objects.exclude(status=DoseObject.STATUS_INGESTED).exists()
    before = set(Alert.objects.values_list("patient_id", "rule_key", "level", "subject"))
    mails_before = len(smtp_server.messages)
    assert before and mails_before  # the 316-event Allura study alone crosses the SRDL

    # the site lowers the FGI first-notification levels in a new rule set version
    rs = ruleset_new_version(note="site lowers FGI first-notification levels")
    Rule.objects.filter(ruleset=rs, key="fgi-kap-first").update(threshold_value=5.0)   # from 300 Gy·cm²
    Rule.objects.filter(ruleset=rs, key="fgi-kar-first").update(threshold_value=0.05)  # from 3 Gy
    ruleset_activate(ruleset_id=rs.pk)
    fgi = Study.objects.filter(procedure_modality__in=["RF", "XA"])
    expected_kap = {s.study_instance_uid for s in fgi if (s.dap_total_gy_cm2 or 0) >= 5.0 and (s.dap_total_gy_cm2 or 0) < 300}
    assert expected_kap, "the corpus has FGI studies between the old and the new KAP level"

    call_command("reprocess", stdout=StringIO())
    after = set(Alert.objects.values_list("patient_id", "rule_key", "level", "subject"))
    new = after - before
    assert before <= after  # nothing lost or duplicated
    new_kap = {s for _, k, _, s in new if k == "fgi-kap-first"}
    assert expected_kap <= new_kap | {s for _, k, _, s in before if k == "fgi-kap-first"}
    assert {k for _, k, _, _ in new} <= {"fgi-kap-first", "fgi-kar-first"}
    for a in Alert.objects.filter(rule_key__in=["fgi-kap-first", "fgi-kar-first"], rule__ruleset=rs):
        assert a.value >= a.threshold and a.threshold in (5.0, 0.05)
    assert len(Alert.objects.all()) == len(after)  # unique per patient, rule, level and subject

    # e-mail: each new notified alert reaches each recipient once; the old ones are not sent again
    new_notified = Alert.objects.filter(rule__ruleset=rs, notified="queued")
    assert new_notified.exists()
    smtp_count, sent_rows = mails_per_alert_and_recipient(smtp_server)
    assert len(smtp_server.messages) == Notification.objects.filter(status=Notification.STATUS_SENT).count()
    assert NotificationAttempt.objects.filter(outcome=NotificationAttempt.OUTCOME_SENT).count() == len(smtp_server.messages)
    assert sorted(Notification.objects.values_list("dedupe_key", "recipient")) == \
        sorted(set(Notification.objects.values_list("dedupe_key", "recipient")))
    assert smtp_count == sent_rows
    mails_after = len(smtp_server.messages)
    assert mails_after > mails_before

    # reprocessing again (e.g. a second parser fix) changes nothing and sends nothing
    call_command("reprocess", stdout=StringIO())
    assert set(Alert.objects.values_list("patient_id", "rule_key", "level", "subject")) == after
    assert len(smtp_server.messages) == mails_after
