"""The ingest pipeline: what happens to a received object after the listener stored it, as plain calls.

It sits above the registry, exposure, staff, protocols and notifications apps and calls them; none of them
imports it. Read ``flow`` top to bottom; ``tasks`` holds the Celery entry points, ``worker`` the in-process
worker of the embedded default (no broker)."""
