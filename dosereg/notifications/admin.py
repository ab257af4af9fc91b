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

    # Apps above notifications register how their notification keys name patients (exposure: alert e-mails);
    # this app does not import them (layers, .importlinter).
    patient_resolvers: list = []

    def audit_patient_pks(self, objs) -> set[int]:
        """The patients the listed e-mails name: each registered resolver reads the keys (a digest carries the keys
        of the e-mails it bundles)."""
        keys = {o.dedupe_key for o in objs}
        keys |= set(Notification.objects.filter(digested_in__in=[o.pk for o in objs]).values_list("dedupe_key", flat=True))
        out: set[int] = set()
        for resolve in self.patient_resolvers:
            out |= resolve(keys)
        return out

