import re

from django.contrib import admin

from dosereg.audit.admin import PatientAuditAdminMixin

from .models import Notification, NotificationAttempt


class AttemptInline(admin.TabularInline):
    model = NotificationAttempt
    extra = 0
    readonly_fields = ("recipient", "at", "outcome", "error")


@admin.register(Notification)
class NotificationAdmin(PatientAuditAdminMixin, admin.ModelAdmin):
    list_display = ("dedupe_key", "recipient", "severity", "status", "attempt_count", "created_at", "sent_at")
    list_filter = ("status", "severity", "digest")
    search_fields = ("dedupe_key", "recipient", "subject")
    inlines = [AttemptInline]

    def audit_patient_pks(self, objs) -> set[int]:
        """An alert e-mail (``exposure-alert:<alert id>...``) names the alert's patient; a digest carries the
        e-mails it bundles."""
        from dosereg.exposure.models import Alert

        keys = {o.dedupe_key for o in objs}
        keys |= set(Notification.objects.filter(digested_in__in=[o.pk for o in objs]).values_list("dedupe_key", flat=True))
        alert_ids = {int(m.group(1)) for m in (ALERT_KEY.match(k) for k in keys) if m}
        if not alert_ids:
            return set()
        return set(Alert.objects.filter(pk__in=alert_ids).values_list("patient_id", flat=True))


ALERT_KEY = re.compile(r"^exposure-alert:(\d+)(?::|$)")
