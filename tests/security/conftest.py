"""Security suite: reuses the web tests' registry (builder RDSRs through the real ingest) and users per role."""
from tests.web.conftest import _fast_hasher, login, site_data, web_data  # noqa: F401 (fixtures; _fast_hasher is autouse)
