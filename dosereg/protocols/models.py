"""Pre-aggregated protocol audit summaries.

The registry's studies are partitioned into *buckets*: one device x one calendar month (UTC). For every
bucket and every (procedure modality, vendor study description) in it there is one ``ProtocolSummary`` row:
the number of procedures and, per audited quantity, count, sum, min, max and a 1 %-binned histogram (see
``histogram``). The audit page merges the rows of the months in its period
instead of reading every study; the standard name is applied when reading (through ``ProtocolMapping``), so
editing a mapping needs no rebuild.

Freshness (``services`` keeps it, ``selectors`` relies on it; the page is never silently stale):

* ``SummaryState.max_study_id`` (the watermark): every study with a larger id is newer than the summaries and
  is read from the study table; the refresh task moves the watermark up and marks the new studies' buckets
  dirty in the same transaction.
* ``SummaryBucket.dirty``: set when a study of the bucket changed (the pipeline's protocols step, a deleted
  study); a dirty bucket is read from the study table until the refresh task rebuilds it.
* a bucket only partly inside the requested period is read from the study table too, unless all its studies
  (``first_study_at``..``last_study_at``) lie inside the period.
* ``SummaryMember`` remembers each summarised study's bucket, so a study that moves (another device or
  date on re-ingest) also marks the bucket it left.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

# the audited study quantities (unit in the name), as in dosereg.web.selectors.AUDIT_QUANTITIES
SUMMARY_QUANTITIES = ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s", "ctdivol_max_mgy",
                      "dlp_total_mgy_cm")
SUMMARY_SUFFIXES = ("n", "sum", "min", "max", "bins")  # the ProtocolSummary columns of each quantity


class SummaryState(models.Model):
    """Singleton (pk 1): the summaries cover exactly the studies with id <= ``max_study_id``."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    max_study_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class SummaryBucket(models.Model):
    device_key = models.BigIntegerField()      # Device pk; 0 for studies without a device
    month = models.DateField()                 # first day of the month (UTC)
    starts_at = models.DateTimeField()         # the month as instants: [starts_at, ends_at)
    ends_at = models.DateTimeField()
    dirty = models.BooleanField(default=True)
    marked_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)
    n_studies = models.IntegerField(default=0)  # summarised (ionising) studies
    first_study_at = models.DateTimeField(null=True, blank=True)
    last_study_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device_key", "month"], name="uniq_summary_bucket")]
        indexes = [
            models.Index(fields=["starts_at"], name="summary_bucket_start"),
            models.Index(fields=["marked_at"], condition=Q(dirty=True), name="summary_bucket_dirty"),
        ]

    def __str__(self) -> str:
        return f"device {self.device_key} {self.month:%Y-%m}{' (dirty)' if self.dirty else ''}"


class ProtocolSummary(models.Model):
    """One (procedure modality, vendor study description, patient age class) in one bucket: the number of
    procedures and, per audited quantity ``q`` (unit in the name, see ``SUMMARY_QUANTITIES``), how many reported
    it (``q_n``), their sum, minimum and maximum (in that unit) and their 1 %-binned histogram (``histogram.encode_bins``)."""

    bucket = models.ForeignKey(SummaryBucket, on_delete=models.CASCADE, related_name="summaries")
    modality = models.CharField(max_length=8)
    study_description = models.CharField(max_length=256)
    # the patients' age class (``age_bands.age_class``: the intervals between the paediatric DRL families' band
    # bounds; -1 age unknown), so a name mapped to an age-band family is split by band when read; other names
    # merge the classes
    age_class = models.SmallIntegerField(default=-1)
    n_studies = models.IntegerField()
    dap_total_gy_cm2_n = models.IntegerField(default=0)
    dap_total_gy_cm2_sum = models.FloatField(null=True)
    dap_total_gy_cm2_min = models.FloatField(null=True)
    dap_total_gy_cm2_max = models.FloatField(null=True)
    dap_total_gy_cm2_bins = models.BinaryField(null=True)
    dose_rp_max_plane_gy_n = models.IntegerField(default=0)
    dose_rp_max_plane_gy_sum = models.FloatField(null=True)
    dose_rp_max_plane_gy_min = models.FloatField(null=True)
    dose_rp_max_plane_gy_max = models.FloatField(null=True)
    dose_rp_max_plane_gy_bins = models.BinaryField(null=True)
    fluoro_time_total_s_n = models.IntegerField(default=0)
    fluoro_time_total_s_sum = models.FloatField(null=True)
    fluoro_time_total_s_min = models.FloatField(null=True)
    fluoro_time_total_s_max = models.FloatField(null=True)
    fluoro_time_total_s_bins = models.BinaryField(null=True)
    ctdivol_max_mgy_n = models.IntegerField(default=0)
    ctdivol_max_mgy_sum = models.FloatField(null=True)
    ctdivol_max_mgy_min = models.FloatField(null=True)
    ctdivol_max_mgy_max = models.FloatField(null=True)
    ctdivol_max_mgy_bins = models.BinaryField(null=True)
    dlp_total_mgy_cm_n = models.IntegerField(default=0)
    dlp_total_mgy_cm_sum = models.FloatField(null=True)
    dlp_total_mgy_cm_min = models.FloatField(null=True)
    dlp_total_mgy_cm_max = models.FloatField(null=True)
    dlp_total_mgy_cm_bins = models.BinaryField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket", "modality", "study_description", "age_class"],
                                               name="uniq_protocol_summary_age")]


class SummaryMember(models.Model):
    """The bucket a summarised study was counted in (a plain id: it outlives a deleted study until rebuilt)."""

    study_id = models.BigIntegerField(primary_key=True)
    bucket = models.ForeignKey(SummaryBucket, on_delete=models.CASCADE, related_name="+")


# -- protocol names and diagnostic reference levels (the tables were created by the web app and keep their names) --
class StandardName(models.Model):
    """A standard examination name that vendor study/protocol names map to (many-to-one)."""

    name = models.CharField(max_length=128)
    modality = models.CharField(max_length=8)  # CT, RF, XA, DX, MG
    notes = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        db_table = "web_standardname"  # created by the web app; the table kept its name
        ordering = ["modality", "name"]
        constraints = [models.UniqueConstraint(fields=["modality", "name"], name="uniq_standard_name")]

    def __str__(self) -> str:
        return f"{self.modality} {self.name}"


class ProtocolMapping(models.Model):
    """Vendor study description (as sent, exact) -> standard name."""

    modality = models.CharField(max_length=8)
    source_name = models.CharField(max_length=256)
    standard_name = models.ForeignKey(StandardName, on_delete=models.CASCADE, related_name="mappings")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "web_protocolmapping"  # created by the web app; the table kept its name
        constraints = [models.UniqueConstraint(fields=["modality", "source_name"], name="uniq_protocol_mapping")]
        indexes = [models.Index(fields=["source_name"])]


class DRLSet(models.Model):
    """A published set of diagnostic reference levels, with its citation."""

    name = models.CharField(max_length=128, unique=True)
    country = models.CharField(max_length=32, blank=True, default="")
    year = models.IntegerField(null=True, blank=True)
    citation = models.TextField()
    url = models.URLField(max_length=512, blank=True, default="")
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "web_drlset"  # created by the web app; the table kept its name
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DRLValue(models.Model):
    QUANTITIES = [
        ("dap_total_gy_cm2", "KAP (Gy·cm²)"),
        ("dose_rp_max_plane_gy", "Ka,r (Gy)"),
        ("fluoro_time_total_s", "Fluoroscopy time (s)"),
        ("ctdivol_max_mgy", "CTDIvol (mGy)"),
        ("dlp_total_mgy_cm", "DLP (mGy·cm)"),
    ]
    drl_set = models.ForeignKey(DRLSet, on_delete=models.CASCADE, related_name="values")
    standard_name = models.ForeignKey(StandardName, on_delete=models.CASCADE, related_name="drl_values")
    quantity = models.CharField(max_length=32, choices=QUANTITIES)
    value = models.FloatField()
    exam_label = models.CharField(max_length=128, blank=True, default="")  # the exam as the source names it
    notes = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        db_table = "web_drlvalue"  # created by the web app; the table kept its name
        constraints = [models.UniqueConstraint(fields=["drl_set", "standard_name", "quantity"], name="uniq_drl_value")]
