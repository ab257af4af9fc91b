"""A declared pregnant worker crossing the monthly level: alert e-mailed to her and the RSO group,
received by a real SMTP server (aiosmtpd) on a loopback port."""
from __future__ import annotations

import socket
import time
from datetime import date
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth.models import Group, User

from dosereg.staff.dosimetry.badges import import_badge_csv
from dosereg.staff.models import StaffAlert
from dosereg.staff.services import pregnancy_declare, pregnancy_withdraw

from .conftest import BADGE_HEADER, write_csv

pytestmark = pytest.mark.django_db


class Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield sink
    controller.stop()


@pytest.fixture
def eager_celery():
    from dosereg.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = old


def subject(msg) -> str:
    return str(make_header(decode_header(msg["Subject"])))


def test_pregnant_worker_monthly_level_alert_arrives_over_smtp(people, smtp, eager_celery, django_capture_on_commit_callbacks, tmp_path):
    rso = User.objects.create_user("rso1", email="rso@hospital.test")
    rso.groups.add(Group.objects.get_or_create(name="rso")[0])
    rita = people["rita"]
    pregnancy_declare(staff=rita, declared_on=date(2025, 5, 1), expected_due_date=date(2025, 12, 15))
    rows = [
        ["LX-3001", "collar", "E300", "OKAFOR^RITA", "2025-04-01", "2025-04-30", "2.00", "2.00", ""],
        ["LX-3002", "under apron", "E300", "OKAFOR^RITA", "2025-04-01", "2025-04-30", "0.70", "", ""],  # before declaring
        ["LX-3001", "collar", "E300", "OKAFOR^RITA", "2025-05-01", "2025-05-31", "2.00", "2.00", ""],
        ["LX-3002", "under apron", "E300", "OKAFOR^RITA", "2025-05-01", "2025-05-31", "0.30", "", ""],
        ["LX-3001", "collar", "E300", "OKAFOR^RITA", "2025-06-01", "2025-06-30", "3.00", "3.00", ""],
        ["LX-3002", "under apron", "E300", "OKAFOR^RITA", "2025-06-01", "2025-06-30", "0.60", "", ""],  # > 0.5 mSv/month
    ]
    f = write_csv(tmp_path / "okafor_2025Q2.csv", BADGE_HEADER, rows)
    with django_capture_on_commit_callbacks(execute=True):
        import_badge_csv(f)
    monthly = StaffAlert.objects.filter(staff=rita, rule="pregnancy.monthly")
    assert [(a.period, a.level, round(a.value_msv, 6), a.threshold_msv) for a in monthly] == [("2025-06", "level", 0.6, 0.5)]
    assert StaffAlert.objects.filter(staff=rita, rule="pregnancy.declared_total", level="approaching").exists()  # 0.9 of 1 mSv (ICRP)

    deadline = time.time() + 10
    while time.time() < deadline and len(smtp.messages) < 4:
        time.sleep(0.05)
    received = [(rcpt, subject(m), m.get_payload(decode=True).decode()) for rcpt, m in smtp.messages]
    preg = [r for r in received if "declared pregnant worker" in r[1] and "2025-06" in r[1]]
    assert {tuple(r[0]) for r in preg} == {("rita@hospital.test",), ("rso@hospital.test",)}
    body = preg[0][2]
    assert "Rita Okafor" in body and "0.6 mSv" in body and "threshold: 0.5 mSv" in body and "Regulatory Guide 8.13" in body

    # re-importing or re-evaluating never sends again
    n = len(smtp.messages)
    with django_capture_on_commit_callbacks(execute=True):
        import_badge_csv(f)
        from dosereg.staff.alerts import staff_alerts_evaluate

        staff_alerts_evaluate(staff_ids=[rita.pk])
    time.sleep(0.3)
    assert len(smtp.messages) == n


def test_no_pregnancy_alert_outside_the_declared_period(people, tmp_path):
    rita = people["rita"]
    decl = pregnancy_declare(staff=rita, declared_on=date(2025, 5, 1), expected_due_date=date(2025, 12, 15))
    pregnancy_withdraw(declaration=decl, withdrawn_on=date(2025, 6, 1))
    rows = [["LX-3002", "waist", "E300", "", "2025-04-01", "2025-04-30", "0.90", "", ""],
            ["LX-3002", "waist", "E300", "", "2025-06-01", "2025-06-30", "0.90", "", ""],
            ["LX-3002", "waist", "E300", "", "2025-05-01", "2025-05-31", "0.40", "", ""]]
    import_badge_csv(write_csv(tmp_path / "r.csv", BADGE_HEADER, rows))
    assert not StaffAlert.objects.filter(rule="pregnancy.monthly").exists()
