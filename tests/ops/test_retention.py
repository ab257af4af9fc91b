"""apply_retention: originals of ingested objects older than the policy are deleted and recorded; nothing else."""
from __future__ import annotations

import json
import os
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.ops.models import RetainedOriginal
from dosereg.registry.models import DoseObject, IrradiationEvent
from dosereg.pipeline.flow import file_import
from dosereg.registry.receiving import dose_object_register

pytestmark = pytest.mark.django_db(transaction=True)


def run(**kw) -> dict:
    out = StringIO()
    call_command("apply_retention", stdout=out, **kw)
    return json.loads(out.getvalue())


def test_retention_deletes_only_old_ingested_originals(corpus_files, tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    spool = Spool(tmp_path / "spool")
    files = [f for f in corpus_files if f.name.startswith(("canon_cxdi_DX.dcm", "siemens_somatom-definition", "philips_allura-xper_RF.dcm"))]
    objs = [file_import(path=f, spool=spool)[0] for f in files]
    assert all(o.status == DoseObject.STATUS_INGESTED for o in objs)
    # a pending (received) object and a quarantined one, both old
    pending = spool.store("1.2.3.4.5", b"not yet ingested")
    received, _ = dose_object_register(sop_instance_uid="1.2.3.4.5", sop_class_uid="", path=pending.path,
                                       sha256=pending.sha256, size_bytes=pending.size_bytes, enqueue=False)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"garbage" * 10)
    quarantined = file_import(path=bad, spool=spool)[0]
    assert quarantined.status == DoseObject.STATUS_QUARANTINED
    old = timezone.now() - timedelta(days=400)
    DoseObject.objects.exclude(pk=objs[0].pk).update(received_at=old)
    DoseObject.objects.filter(pk=objs[0].pk).update(received_at=timezone.now() - timedelta(days=10))
    events_before = IrradiationEvent.objects.count()

    settings.RETENTION_ORIGINALS_DAYS = None
    assert run()["deleted"] == 0  # default: keep forever
    dry = run(days=365, dry_run=True)
    assert (dry["eligible"], dry["deleted"]) == (2, 0)
    assert all(os.path.exists(o.path) for o in objs)

    settings.RETENTION_ORIGINALS_DAYS = 365
    result = run()
    assert result["deleted"] == 2 and result["freed_bytes"] > 0
    for o in objs[1:]:
        o.refresh_from_db()
        r = RetainedOriginal.objects.get(dose_object=o)
        assert o.path == "" and not os.path.exists(r.path) and r.policy_days == 365 and r.sha256 == o.sha256
    objs[0].refresh_from_db()
    assert objs[0].path and os.path.exists(objs[0].path)  # younger than the policy
    for kept in (received, quarantined):
        kept.refresh_from_db()
        assert kept.path and os.path.exists(kept.path)
    assert IrradiationEvent.objects.count() == events_before  # the dose data stays
    assert run()["deleted"] == 0  # idempotent


def test_interrupted_run_leftovers_are_removed(corpus_files, tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    spool = Spool(tmp_path / "spool")
    obj = file_import(path=next(f for f in corpus_files if "canon_cxdi_DX.dcm" in f.name), spool=spool)[0]
    # as if a run committed its record and died before deleting the file
    RetainedOriginal.objects.create(dose_object=obj, path=obj.path, sha256=obj.sha256, policy_days=1)
    DoseObject.objects.filter(pk=obj.pk).update(path="")
    assert os.path.exists(obj.path)
    assert run(days=1)["leftovers_removed"] == 1
    assert not os.path.exists(obj.path)
