from django.contrib import admin

from dosereg.audit.admin import PatientAuditAdmin

from .models import SkinRoomSetting, StudySkinDose


@admin.register(SkinRoomSetting)
class SkinRoomSettingAdmin(admin.ModelAdmin):
    list_display = ("__str__", "device", "version", "active", "table_pad_transmission", "phantom", "created_at")
    list_filter = ("active", "phantom")
    readonly_fields = ("created_at",)

    def save_model(self, request, obj, form, change):
        if not obj.created_by_id:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(StudySkinDose)
class StudySkinDoseAdmin(PatientAuditAdmin):
    audit_patient_paths = ("study__patient",)
    list_display = ("study", "computable", "psd_gy", "phantom", "computed_at")
    list_filter = ("computable", "phantom")
    exclude = ("map_png", "map_cells")
    readonly_fields = [f.name for f in StudySkinDose._meta.fields if f.name not in ("map_png", "map_cells")]
