"""Waiting in the browser tests for a JavaScript condition under the pages' Content Security Policy.

Playwright's ``page.wait_for_function(expression)`` checks the expression once through DevTools and, when it is not
true yet, polls it in the page with ``eval``, which the pages' CSP (``script-src 'self'``, no ``unsafe-eval``)
forbids: the wait then fails with an EvalError whenever the condition is not already true at the first check (an
image or chart still loading on a busy machine). Here the expression is polled through DevTools each time."""
from __future__ import annotations

import time


def wait_js(page, expression: str, *, timeout: float = 30_000, interval_ms: float = 50) -> None:
    """Evaluate ``expression`` (an expression or a function's source) until it is truthy; ``timeout`` in ms."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} ms waiting for {expression!r}")
        page.wait_for_timeout(interval_ms)
