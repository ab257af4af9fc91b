import re

from django.contrib import admin

from dosereg.audit.admin import PatientAuditAdmin, PatientAuditAdminMixin
from dosereg.notifications.admin import NotificationAdmin

from .models import Alert, AlertEvent, AlertRoute, EffectiveDoseFactor, PatientExposureWindow, PatientMerge, Rule, RuleSet


class RuleInline(admin.TabularInline):
    model = Rule
    extra = 0
    fields = ("key", "enabled", "quantity", "level_kind", "threshold_value", "threshold_unit", "step_value", "window_days",
              "scope_modalities", "scope_site", "scope_device", "protocol_class", "severity", "verification", "source")


@admin.register(RuleSet)
class RuleSetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "active", "activated_at", "created_at")
    inlines = [RuleInline]


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("key", "ruleset", "enabled", "quantity", "level_kind", "threshold_value", "threshold_unit", "window_days", "verification")
    list_filter = ("ruleset", "quantity", "verification", "enabled")


class AlertEventInline(admin.TabularInline):
    model = AlertEvent
    extra = 0
    readonly_fields = ("at", "actor", "action", "note")


@admin.register(Alert)
class AlertAdmin(PatientAuditAdminMixin, admin.ModelAdmin):
    list_display = ("title", "patient", "rule_key", "level", "severity", "status", "notified", "raised_at")
    list_filter = ("status", "severity", "rule_key")
    search_fields = ("title", "study_uid", "subject")
    readonly_fields = ("patient", "rule", "rule_key", "level", "subject", "study", "study_uid", "value", "threshold", "detail")
    inlines = [AlertEventInline]


@admin.register(AlertRoute)
class AlertRouteAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "device", "site", "rule_key", "min_severity")
    filter_horizontal = ("users", "groups")


@admin.register(EffectiveDoseFactor)
class EffectiveDoseFactorAdmin(admin.ModelAdmin):
    list_display = ("factor_set", "kind", "region", "age_bracket", "value", "unit", "verification", "active")
    list_filter = ("factor_set", "kind", "verification")


admin.site.register(PatientExposureWindow, PatientAuditAdmin)


@admin.register(PatientMerge)
class PatientMergeAdmin(PatientAuditAdmin):
    audit_patient_paths = ("source", "target")


ALERT_KEY = re.compile(r"^exposure-alert:(\d+)(?::|$)")


def _alert_email_patients(keys: set[str]) -> set[int]:
    """An alert e-mail's key (``exposure-alert:<alert id>...``) names the alert's patient."""
    alert_ids = {int(m.group(1)) for m in (ALERT_KEY.match(k) for k in keys) if m}
    if not alert_ids:
        return set()
    return set(Alert.objects.filter(pk__in=alert_ids).values_list("patient_id", flat=True))


NotificationAdmin.patient_resolvers.append(_alert_email_patients)
