"""Skin dose: each room's settings (versioned, with their sources) and each study's result."""
from __future__ import annotations

from django.conf import settings
from django.db import models

PHANTOM_CHOICES = [("plane", "plane"), ("cylinder", "elliptic cylinder"), ("human", "human mesh")]


class SkinRoomSetting(models.Model):
    """A physicist's settings for one room (``device``), or the default for rooms without their own (no device).

    Versioned: a change is a new version; the active one is used; results record the version they used."""

    device = models.ForeignKey("registry.Device", null=True, blank=True, on_delete=models.CASCADE,
                               related_name="skin_settings", help_text="empty: the default for every room")
    version = models.PositiveIntegerField(default=1)
    active = models.BooleanField(default=True)
    table_pad_transmission = models.FloatField(default=0.8, help_text="k_tab: table and pad together, 0-1")
    transmission_source = models.CharField(
        max_length=512, default="estimate (PySkinDose default 0.8); measure it for this room",
        help_text="measured (when, by whom, kV and filtration) or estimated, and from where")
    inherent_filtration_mm_al = models.FloatField(default=3.1)
    table_length_cm = models.FloatField(default=281.5)
    table_width_cm = models.FloatField(default=45.0)
    table_thickness_cm = models.FloatField(default=5.0)
    pad_thickness_cm = models.FloatField(default=4.0)
    phantom = models.CharField(max_length=16, choices=PHANTOM_CHOICES, default="plane")
    convention = models.JSONField(
        null=True, blank=True,
        help_text="geometry convention when PySkinDose's table has none for this model: "
                  '{"translation_offset_cm": [x, y, z], "translation_direction": [1, 1, 1], '
                  '"rotation_direction": {"Ap1": 1, "Ap2": 1}, "detector_side_length_cm": 40, "source": "..."}')
    note = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "version"], name="uniq_skin_setting_version")]
        ordering = ["device_id", "-version"]

    def __str__(self) -> str:
        return f"skin settings v{self.version} for {self.device or 'every room'}{'' if self.active else ' (inactive)'}"


class StudySkinDose(models.Model):
    """The peak skin dose of one study (fluoroscopically guided), or why it could not be computed."""

    study = models.OneToOneField("registry.Study", on_delete=models.CASCADE, related_name="skin_dose")
    computed_at = models.DateTimeField(auto_now=True)
    room_setting = models.ForeignKey(SkinRoomSetting, null=True, blank=True, on_delete=models.SET_NULL)
    computable = models.BooleanField(default=False)
    psd_gy = models.FloatField(null=True)
    psd_location = models.JSONField(null=True, blank=True)
    phantom = models.CharField(max_length=16, blank=True, default="")
    patient_orientation = models.CharField(max_length=32, blank=True, default="")
    corrections = models.JSONField(default=dict, blank=True)
    events_used = models.JSONField(default=list, blank=True)
    events_skipped = models.JSONField(default=list, blank=True)
    method = models.TextField(blank=True, default="")
    uncertainty = models.TextField(blank=True, default="")
    assumptions = models.JSONField(default=list, blank=True)
    not_computable_reason = models.TextField(blank=True, default="")
    kar_total_gy = models.FloatField(null=True)
    map_png = models.BinaryField(null=True, blank=True)
    map_cells = models.JSONField(null=True, blank=True)  # x_cm, y_cm, z_cm, dose_gy (for the 3D view)
    error = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["psd_gy"], name="skindose_psd_idx")]
