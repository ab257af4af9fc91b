from datetime import timedelta

from django.contrib import admin
from django.db.models import Count
from django.utils import timezone

from dosereg.audit.admin import PatientAuditAdminMixin

from .models import BackfillRun, RetainedOriginal, TaskFailure


@admin.register(TaskFailure)
class TaskFailureAdmin(admin.ModelAdmin):
    list_display = ("failed_at", "task_name", "exception_type", "short_message", "hostname", "task_id")
    list_filter = ("task_name", "exception_type", "failed_at")
    search_fields = ("task_name", "task_id", "message")
    date_hierarchy = "failed_at"
    readonly_fields = [f.name for f in TaskFailure._meta.fields]

    @admin.display(description="message")
    def short_message(self, obj):
        return obj.message[:120]

    def has_add_permission(self, request):
        return False

    def changelist_view(self, request, extra_context=None):
        since = timezone.now() - timedelta(hours=24)
        per_task = (TaskFailure.objects.filter(failed_at__gte=since).values("task_name")
                    .annotate(n=Count("id")).order_by("-n"))
        summary = ", ".join(f"{r['task_name']}: {r['n']}" for r in per_task) or "none"
        extra_context = {**(extra_context or {}), "title": f"Task failures (last 24 h: {summary})"}
        return super().changelist_view(request, extra_context=extra_context)


@admin.register(BackfillRun)
class BackfillRunAdmin(admin.ModelAdmin):
    list_display = ("id", "remote", "date_from", "date_to", "method", "status", "started_at", "finished_at", "summary")
    list_filter = ("status", "method")
    readonly_fields = [f.name for f in BackfillRun._meta.fields]


@admin.register(RetainedOriginal)
class RetainedOriginalAdmin(PatientAuditAdminMixin, admin.ModelAdmin):
    audit_patient_paths = ("dose_object__study__patient",)

    list_display = ("dose_object", "path", "size_bytes", "deleted_at", "policy_days")
    readonly_fields = [f.name for f in RetainedOriginal._meta.fields]
