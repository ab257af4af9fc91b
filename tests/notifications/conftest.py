from tests.notifications.smtp import smtp_server  # noqa: F401  (fixture)
