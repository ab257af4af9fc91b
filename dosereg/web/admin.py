"""Admin: which sites each radiation safety officer reads (see ``dosereg.access.scope``)."""
from __future__ import annotations

from django import forms
from django.contrib import admin

from dosereg.access.models import AssignedSite, SiteAssignment
from dosereg.registry.models import Device


def known_sites() -> list[str]:
    """The institution names the devices have sent, for the admin's hints (one query)."""
    names = Device.objects.exclude(institution="").values_list("institution", flat=True).distinct()
    return sorted({n.strip() for n in names if n.strip()}, key=str.lower)


class AssignedSiteForm(forms.ModelForm):
    class Meta:
        model = AssignedSite
        fields = ["institution"]

    def clean_institution(self):
        name = (self.cleaned_data.get("institution") or "").strip()
        if not name:
            raise forms.ValidationError("an institution name is required")
        return name


class AssignedSiteInline(admin.TabularInline):
    model = AssignedSite
    form = AssignedSiteForm
    extra = 1
    verbose_name = "site (Device.institution)"
    verbose_name_plural = "sites"

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        sites = known_sites()
        formset.form.base_fields["institution"].help_text = (
            "As the devices send it (compared trimmed, case-insensitively). Known sites: "
            + ("; ".join(sites) if sites else "none yet")
        )
        return formset


@admin.register(SiteAssignment)
class SiteAssignmentAdmin(admin.ModelAdmin):
    """An RSO sees the clinical data of these sites only; physicists and admins always see every site.
    An RSO without an assignment sees every site while RSO_UNSCOPED_SEES_ALL is true, nothing when false."""

    inlines = [AssignedSiteInline]
    list_display = ("user", "all_sites", "site_list", "note", "updated_at")
    list_filter = ("all_sites",)
    search_fields = ("user__username", "sites__institution", "note")
    fields = ("user", "all_sites", "note")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user").prefetch_related("sites")

    @admin.display(description="sites")
    def site_list(self, obj) -> str:
        if obj.all_sites:
            return "all sites"
        return ", ".join(sorted(s.institution for s in obj.sites.all())) or "no site (sees nothing)"
