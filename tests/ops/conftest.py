# The end-to-end fixtures (real listener + Celery worker on PostgreSQL/Redis) are shared with tests/e2e.
from tests.e2e.conftest import dcmtk, pg_url, redis_url, stack  # noqa: F401
