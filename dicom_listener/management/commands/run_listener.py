from django.conf import settings
from django.core.management.base import BaseCommand

from dicom_listener.server import start_listener


class Command(BaseCommand):
    help = "Run the DICOM Storage/Verification SCP (AE title, port and allowed callers from settings)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help=f"default {settings.DICOM_PORT}")
        parser.add_argument("--address", default=None)

    def handle(self, *args, port=None, address=None, **options):
        self.stdout.write(f"dosereg DICOM listener {settings.DICOM_AE_TITLE} on port {port or settings.DICOM_PORT}")
        start_listener(port=port, address=address, block=True)
