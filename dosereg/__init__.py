"""dosereg: an open radiation dose registry."""
try:  # Celery is optional for the pure parser package (dosereg.rdsr)
    from .celery import app as celery_app  # noqa: F401

    __all__ = ("celery_app",)
except ImportError:  # pragma: no cover
    pass
