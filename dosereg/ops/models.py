"""Operations: PACS backfill progress and Celery task failures."""
from __future__ import annotations

from django.db import models


class BackfillRun(models.Model):
    """One ``manage.py backfill`` job; a re-run with the same parameters resumes it."""

    STATUS_RUNNING = "running"
    STATUS_DONE = "done"
    STATUS_FAILED = "failed"

    remote = models.CharField(max_length=200)  # AE@host:port
    date_from = models.DateField()
    date_to = models.DateField()
    modalities = models.CharField(max_length=100, blank=True, default="")
    method = models.CharField(max_length=8)  # get | move
    include_images = models.BooleanField(default=True)
    status = models.CharField(max_length=16, default=STATUS_RUNNING)
    query_done = models.BooleanField(default=False)
    # study-level queries already answered (date chunk keys), so a resumed run does not repeat them
    chunks_done = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"backfill {self.pk} {self.remote} {self.date_from}..{self.date_to} ({self.status})"


class BackfillItem(models.Model):
    """One instance found on the remote."""

    PENDING = "pending"
    PRESENT = "present"      # already in the registry: skipped
    RETRIEVED = "retrieved"  # arrived and registered
    FAILED = "failed"

    run = models.ForeignKey(BackfillRun, on_delete=models.CASCADE, related_name="items")
    study_instance_uid = models.CharField(max_length=128)
    series_instance_uid = models.CharField(max_length=128)
    sop_instance_uid = models.CharField(max_length=128)
    sop_class_uid = models.CharField(max_length=128, blank=True, default="")
    kind = models.CharField(max_length=8, default="sr")  # sr | image
    status = models.CharField(max_length=16, default=PENDING, db_index=True)
    attempts = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "study_instance_uid", "sop_instance_uid"], name="uniq_backfill_item")
        ]


class TaskFailure(models.Model):
    """A Celery task that raised (recorded by the task_failure signal)."""

    task_name = models.CharField(max_length=200, db_index=True)
    task_id = models.CharField(max_length=64, blank=True, default="")
    exception_type = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    args = models.TextField(blank=True, default="")
    hostname = models.CharField(max_length=200, blank=True, default="")
    failed_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-failed_at"]

    def __str__(self) -> str:
        return f"{self.task_name} {self.exception_type} at {self.failed_at:%Y-%m-%d %H:%M:%S}"


class RetainedOriginal(models.Model):
    """An original deleted by the retention policy (the DoseObject keeps its extracted dose)."""

    dose_object = models.OneToOneField("registry.DoseObject", on_delete=models.CASCADE, related_name="retention")
    path = models.CharField(max_length=1024)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    size_bytes = models.BigIntegerField(default=0)
    deleted_at = models.DateTimeField(auto_now_add=True)
    policy_days = models.IntegerField()
