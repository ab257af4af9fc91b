import json

from django.core.management.base import BaseCommand, CommandError

from dosereg.ops.transfer import TransferError, registry_import


class Command(BaseCommand):
    help = ("Import a registry export (export_registry) in one transaction. Records already present "
            "(natural keys) are skipped; no alerts or e-mails are sent.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="FILE.jsonl or FILE.jsonl.gz from export_registry")

    def handle(self, *args, file, **options):
        try:
            result = registry_import(file)
        except (TransferError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result))
