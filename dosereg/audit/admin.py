from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import Model

from .models import AuditEvent
from .services import audit_record


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail is append-only."""

    list_display = ("at", "username", "roles", "action", "object_type", "object_id", "patient_pk", "ip", "path")
    list_filter = ("action", "object_type")
    search_fields = ("username", "object_id", "path", "ip")
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PatientAuditAdminMixin:
    """Audits every Django-admin page that shows patient data, like the app's own pages: the change list (one
    row per patient of the objects on the page), and the change form, history and delete pages of one object
    (its patients; a POST is a change).

    ``audit_patient_paths``: lookups from the model to ``Patient`` ids (``"patient"``, ``"study__patient"``);
    or override ``audit_patient_pks(objs)``. tests/security/test_admin_audit.py requires this mixin on every
    admin of a model linked to a patient or a study."""

    audit_patient_paths: tuple[str, ...] = ("patient",)
    model: type[Model]  # provided by the ModelAdmin this is mixed into

    def audit_patient_pks(self, objs) -> set[int]:
        pks = [o.pk for o in objs]
        found: set[int] = set()
        if not pks:
            return found
        for path in self.audit_patient_paths:
            found |= set(self.model._default_manager.filter(pk__in=pks).exclude(**{path: None})
                         .values_list(path, flat=True).order_by().distinct())
        return found

    def _patients_of(self, object_id) -> set[int]:
        if object_id is None:
            return set()
        try:
            obj = self.model._default_manager.filter(pk=unquote(object_id)).first()
        except (ValueError, TypeError, ValidationError):
            return set()
        return self.audit_patient_pks([obj]) if obj is not None else set()

    def _audit(self, request, response, *, view: str, patient_pks, object_id="", rows: int | None = None) -> None:
        if getattr(response, "status_code", 200) >= 400:
            return
        action = AuditEvent.ACTION_VIEW if request.method in ("GET", "HEAD") else AuditEvent.ACTION_CHANGE
        detail = {"admin": view} if rows is None else {"admin": view, "rows": rows}
        audit_record(request=request, action=action, object_type=f"admin_{self.model._meta.model_name}"[:32],
                     object_id=object_id, patient_pks=patient_pks, detail=detail)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context=extra_context)
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if cl is not None:
            objs = list(cl.result_list)
            self._audit(request, response, view="changelist", patient_pks=self.audit_patient_pks(objs), rows=len(objs))
        return response

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        before = self._patients_of(object_id)  # read first: a change may move the link
        response = super().changeform_view(request, object_id, form_url, extra_context)
        if object_id is not None:
            self._audit(request, response, view="change", object_id=unquote(object_id),
                        patient_pks=before | self._patients_of(object_id))
        return response

    def history_view(self, request, object_id, extra_context=None):
        response = super().history_view(request, object_id, extra_context)
        self._audit(request, response, view="history", object_id=unquote(object_id),
                    patient_pks=self._patients_of(object_id))
        return response

    def delete_view(self, request, object_id, extra_context=None):
        before = self._patients_of(object_id)
        response = super().delete_view(request, object_id, extra_context)
        self._audit(request, response, view="delete", object_id=unquote(object_id), patient_pks=before)
        return response


class PatientAuditAdmin(PatientAuditAdminMixin, admin.ModelAdmin):
    """A plain ModelAdmin for a model with a ``patient`` link, audited."""
