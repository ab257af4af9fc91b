import json
import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from dicom_listener.server import start_listener


class Command(BaseCommand):
    help = "Run the DICOM Storage/Verification SCP (AE title, port and allowed callers from settings)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help=f"default {settings.DICOM_PORT}")
        parser.add_argument("--address", default=None)
        parser.add_argument("--stats-file", default=os.environ.get("DOSEREG_LISTENER_STATS_FILE"),
                            help="on exit, write acknowledgement latencies (s) as JSON here (benchmarks)")

    def handle(self, *args, port=None, address=None, stats_file=None, **options):
        def stop(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        server, stats = start_listener(port=port, address=address, block=False)
        self.stdout.write(f"dosereg DICOM listener {settings.DICOM_AE_TITLE} on port {server.server_address[1]}")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            if stats_file:
                with open(stats_file, "w") as fh:
                    json.dump({"stored": stats.stored, "refused": stats.refused,
                               "ack_latencies_s": stats.ack_latencies_s}, fh)
