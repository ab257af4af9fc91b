"""Patient-correction notices: a corrected report moved a study to another patient, so the e-mails already sent
about its exposure alerts (and their RSO cases) named the wrong patient; each alert gets a notice and a note.

It lives in the cases app because it reads both the exposure alerts and the cases they joined (the cases sit
above exposure in the import layers); ``dosereg.pipeline.flow`` calls it.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.db import transaction

from dosereg.exposure.models import Alert, AlertEvent
from dosereg.exposure.routing import Router
from dosereg.registry.models import Patient, Study


def alerts_notify_patient_corrected(*, study_id: int, former_patient_id: int | None, new_patient_id: int | None,
                                    dose_object_id: int) -> int:
    """A corrected report moved ``study_id`` from one patient to another: every alert of that study is moved (or
    withdrawn) by the recompute that follows, and the e-mails already sent named the former patient. Send a
    "patient corrected" notice for each alert, to those who received its e-mail and the RSOs of the study's
    site, and note it on the alert. Returns how many alerts were noticed."""
    from dosereg.notifications.models import Notification

    alerts = list(Alert.objects.filter(study_id=study_id).order_by("pk"))
    if not alerts:
        return 0
    names = dict(Patient.objects.filter(pk__in=[p for p in (former_patient_id, new_patient_id) if p])
                 .values_list("pk", "patient_id"))
    former = names.get(former_patient_id, "no patient") if former_patient_id else "no patient"
    new = names.get(new_patient_id, "no patient") if new_patient_id else "no patient"
    study: dict[str, Any] = dict(Study.objects.filter(pk=study_id).values("study_instance_uid", "device__institution").first() or {})
    router = Router()
    site_rso = router.default_recipients(study.get("device__institution"))
    sent_to: dict[str, set[str]] = defaultdict(set)
    for key, recipient in Notification.objects.filter(dedupe_key__in=[f"exposure-alert:{a.pk}" for a in alerts]).values_list(
            "dedupe_key", "recipient"):
        sent_to[key].add(recipient)
    # the e-mails of the alerts' RSO cases (one per case level) named the former patient too
    from dosereg.cases.models import CaseAlert

    from dosereg.cases.models import Case
    from dosereg.cases.services import case_url
    from dosereg.notifications.services import notification_enqueue_many

    case_of = dict(CaseAlert.objects.filter(alert__in=alerts).values_list("alert_id", "case_id"))
    cases = Case.objects.in_bulk(set(case_of.values()))
    links = {alert_id: case_url(cases[case_id]) for alert_id, case_id in case_of.items() if case_id in cases}
    case_recipients = {case_id: set(Notification.objects.filter(dedupe_key__startswith=f"case:{case_id}:")
                                    .values_list("recipient", flat=True)) for case_id in set(case_of.values())}
    for alert_id, case_id in case_of.items():
        sent_to[f"exposure-alert:{alert_id}"] |= case_recipients[case_id]
    requests, events = [], []
    for a in alerts:
        note = (f"patient corrected: a corrected report (dose object {dose_object_id}) moved study "
                f"{study.get('study_instance_uid', a.study_uid)} from patient {former} to patient {new}")
        recipients = sorted(sent_to.get(f"exposure-alert:{a.pk}", set()) | set(site_rso))
        events.append(AlertEvent(alert=a, action="patient_corrected", note=note + (f"; notice to {', '.join(recipients)}" if recipients else "")))
        if not recipients:
            continue
        requests.append(dict(
            dedupe_key=f"exposure-alert:{a.pk}:patient-corrected:{dose_object_id}:{new_patient_id or 0}",
            recipients=recipients, subject=f"[dosereg] patient corrected: {a.title}"[:255],
            body=(f"Patient corrected. Alert #{a.pk} ({a.title}) concerns study {study.get('study_instance_uid', a.study_uid)}, "
                  f"which a corrected dose report has moved from patient {former} to patient {new}.\n"
                  f"Earlier e-mails about this alert named patient {former}: that was wrong. The alert now follows "
                  f"the corrected patient (it may be withdrawn or raised again for them).\n\n"
                  + (f"Case: {links[a.pk]}" if a.pk in links else "")),
            severity="high" if a.severity == "high" else "normal",
        ))
    with transaction.atomic():
        AlertEvent.objects.bulk_create(events)
        if requests:
            notification_enqueue_many(requests)
    return len(alerts)
