"""A human resolves an unmatched name in the admin: alias remembered, pending participations linked."""
import pytest
from django.contrib.auth.models import User

from dosereg.staff import models as m

pytestmark = pytest.mark.django_db


def test_admin_resolution_links_pending_and_remembers_alias(client):
    from dosereg.registry.models import Study

    admin = User.objects.create_superuser("boss", "boss@h.test", "pw-long-enough-1")
    client.force_login(admin)
    staff = m.StaffMember.objects.create(name="Jones^Nora", employee_id="E9")
    study = Study.objects.create(study_instance_uid="1.2.3.4")
    um = m.UnmatchedName.objects.create(normalised="nora jones-smith", raw_name="Nora Jones-Smith", occurrences=1)
    m.PendingParticipation.objects.create(unmatched=um, study=study, role="irradiation_administering",
                                          source="rdsr", raw_name="Nora Jones-Smith")
    url = f"/admin/staff/unmatchedname/{um.pk}/change/"
    assert client.get(url).status_code == 200
    r = client.post(url, {"resolved_staff": staff.pk})
    assert r.status_code == 302, r.content[:2000]
    um.refresh_from_db()
    assert um.status == m.UnmatchedName.STATUS_RESOLVED
    assert m.Participation.objects.filter(study=study, staff=staff).exists()
    assert m.StaffAlias.objects.filter(staff=staff).exists()
