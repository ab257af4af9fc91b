"""Staff in the RSO's view: an occupational alert opens a staff case in the worklist; the staff overview lists
people by name ("Jonas Fischer", not "Fischer^Jonas") with their doses against limits, linked to their page."""
from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from dosereg.cases.models import Case

pytestmark = pytest.mark.django_db


@pytest.fixture
def jonas(tmp_path):
    from dosereg.staff import services as staff_services
    from dosereg.staff.dosimetry.badges import import_badge_csv
    from dosereg.staff.alerts import staff_alerts_evaluate

    member = staff_services.staff_create(name="Fischer^Jonas", employee_id="E-JF-1", role="first_operator")
    eye = staff_services.badge_create(badge_id="B-EYE-JF", position="eye")
    today = timezone.localdate()
    start = today.replace(day=1) - dt.timedelta(days=40)
    start = start.replace(day=1)
    staff_services.badge_assign(badge=eye, staff=member, start=start)
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    path = tmp_path / "eye.csv"
    path.write_text(f"badge_id,wear_start,wear_end,hp10_msv,hp3_msv,hp007_msv\nB-EYE-JF,{start},{end},,26.2,\n")
    import_badge_csv(path)
    staff_alerts_evaluate(staff_ids=[member.pk])
    return member


def test_staff_alert_is_a_staff_case_in_the_worklist(jonas, client, rso):
    from dosereg.staff.models import StaffAlert

    assert StaffAlert.objects.filter(staff=jonas).exists()
    case = Case.objects.get(kind="staff", staff=jonas)
    assert case.severity == "high" and "eye lens" in case.title and "exceeded" in case.title and "Fischer^Jonas" not in case.title
    client.force_login(rso)
    html = client.get(reverse("cases:worklist") + "?kind=staff").content.decode()
    assert f'data-case-row="{case.pk}"' in html and "Jonas Fischer" in html and "Fischer^Jonas" not in html
    page = client.get(reverse("cases:detail", kwargs={"case_id": case.pk})).content.decode()
    assert "Jonas Fischer" in page and "mSv" in page
    client.post(reverse("cases:action", kwargs={"case_id": case.pk, "action": "close"}), {"staff_finding": "lead glasses not worn"})
    case.refresh_from_db()
    assert case.status == "closed" and set(StaffAlert.objects.filter(staff=jonas).values_list("status", flat=True)) == {"closed"}


def test_staff_overview_shows_names_doses_against_limits_and_links(jonas, client, rso):
    client.force_login(rso)
    html = client.get(reverse("web:staff_overview")).content.decode()
    assert "Jonas Fischer" in html and "Fischer^Jonas" not in html
    assert reverse("cases:staff_person", kwargs={"staff_id": jonas.pk}) in html
    assert "26.20 mSv" in html and "/ 20" in html and "131 %" in html  # eye lens: 26.2 of 20 mSv
    person = client.get(reverse("cases:staff_person", kwargs={"staff_id": jonas.pk})).content.decode()
    assert "Jonas Fischer" in person and "Eye lens" in person and "131 %" in person and "/alerts/" in person


def test_physicists_do_not_see_staff_cases(jonas, client, physicist):
    """Occupational doses are for the staff overview's roles (RSO, admin): not in a physicist's worklist."""
    case = Case.objects.get(kind="staff", staff=jonas)
    client.force_login(physicist)
    html = client.get(reverse("cases:worklist") + "?status=all").content.decode()
    assert f'data-case-row="{case.pk}"' not in html and "Jonas Fischer" not in html
    assert client.get(reverse("cases:detail", kwargs={"case_id": case.pk})).status_code == 404
    assert "Jonas Fischer" not in b"".join(client.get(reverse("cases:export") + "?status=all").streaming_content).decode()
