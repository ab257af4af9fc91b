import json

from django.core.management.base import BaseCommand

from dosereg.registry.selectors import registry_stats


class Command(BaseCommand):
    help = "Print registry counts."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        stats = registry_stats()
        if options["json"]:
            self.stdout.write(json.dumps(stats))
        else:
            for k, v in stats.items():
                self.stdout.write(f"{k:24} {v}")
