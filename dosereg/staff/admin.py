from django.contrib import admin

from dosereg.audit.admin import PatientAuditAdminMixin

from . import models as m


class AliasInline(admin.TabularInline):
    model = m.StaffAlias
    extra = 0
    fields = ("alias", "normalised")
    readonly_fields = ("normalised",)


@admin.register(m.StaffMember)
class StaffMemberAdmin(admin.ModelAdmin):
    list_display = ("name", "employee_id", "role", "department", "site", "active")
    list_filter = ("role", "department", "site", "active")
    search_fields = ("name", "employee_id", "aliases__alias")
    inlines = [AliasInline]


@admin.register(m.UnmatchedName)
class UnmatchedNameAdmin(admin.ModelAdmin):
    """The human resolution queue: choose the staff member this name is and save. The service records
    the name as an alias (so it matches next time) and links every pending participation."""

    list_display = ("raw_name", "normalised", "reason", "status", "occurrences", "resolved_staff", "first_seen")
    list_filter = ("status", "reason")
    search_fields = ("raw_name", "normalised")
    autocomplete_fields = ("resolved_staff",)

    def get_readonly_fields(self, request, obj=None):
        editable = {"resolved_staff"} if obj is None or obj.status == m.UnmatchedName.STATUS_OPEN else set()
        return [f.name for f in m.UnmatchedName._meta.fields if f.name not in editable]

    def save_model(self, request, obj, form, change):
        from .services import unmatched_resolve

        staff = form.cleaned_data.get("resolved_staff")
        if change and staff is not None and obj.status == m.UnmatchedName.STATUS_OPEN:
            unmatched_resolve(unmatched=obj, staff=staff, user=request.user)
            return
        super().save_model(request, obj, form, change)


@admin.register(m.StaffAlert)
class StaffAlertAdmin(PatientAuditAdminMixin, admin.ModelAdmin):
    audit_patient_paths = ("study__patient",)  # the procedure that raised it

    list_display = ("staff", "rule", "period", "level", "value_msv", "threshold_msv", "status", "created_at")
    list_filter = ("rule", "level", "status")
    search_fields = ("staff__name", "staff__employee_id", "period")
    readonly_fields = ("staff", "rule", "period", "level", "quantity", "value_msv", "threshold_msv", "setting", "study", "message", "status")


@admin.register(m.StaffSetting)
class StaffSettingAdmin(admin.ModelAdmin):
    list_display = ("key", "regime", "site", "version", "value", "unit", "verification")
    list_filter = ("regime", "site", "verification")
    search_fields = ("key", "citation")

    def has_change_permission(self, request, obj=None):
        return False  # a change is a new version (config.setting_set)


for model in (m.Site, m.DosimeterBadge, m.BadgeWearPeriod, m.PregnancyDeclaration, m.ScatterFactor, m.StaffInvestigation,
              m.DosimetryImport, m.StaffingImport):
    admin.site.register(model)
