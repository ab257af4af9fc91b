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
    list_display = ("key", "ruleset", "enabled", "quantity", "level_kind", "threshold_value", "threshold_unit", "window_days",
                    "verification", "table_status")
    list_filter = ("ruleset", "quantity", "verification", "enabled")
    readonly_fields = ("table_status",)

    @admin.display(description="table")
    def table_status(self, rule: Rule) -> str:
        """The EANM paediatric dosage card rule compares with a table (setting EANM_PAEDIATRIC_DOSAGE_CARD): its
        version and verification, so an unverified table is never enabled unseen."""
        from django.conf import settings

        from .constants import Q_NM_PAED

        if rule.quantity != Q_NM_PAED:
            return "—"
        table = settings.EANM_PAEDIATRIC_DOSAGE_CARD
        mark = table.get("verification", "")
        text = f"EANM paediatric dosage card {table.get('version', '?')} {mark}"
        if mark != "✔":
            text += f" UNVERIFIED: {table.get('verification_note', '')}"
        return text


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
