from django.contrib import admin

from .models import Case, CaseEvent, Incident, ReportableRule


@admin.register(ReportableRule)
class ReportableRuleAdmin(admin.ModelAdmin):
    """Reportable-event rules are versioned: change a rule by adding a new version and making it the active one."""

    list_display = ("key", "version", "active", "title", "jurisdiction", "threshold", "unit", "verification")
    list_filter = ("active", "category")


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("number", "declared_at", "category", "status", "regulator_reference")
    readonly_fields = [f.name for f in Incident._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class CaseEventInline(admin.TabularInline):
    model = CaseEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "actor", "action", "note", "detail")


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ("pk", "kind", "severity", "status", "exam_date", "title")
    list_filter = ("kind", "severity", "status")
    readonly_fields = [f.name for f in Case._meta.fields]
    inlines = [CaseEventInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
