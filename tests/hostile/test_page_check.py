"""The hostile run's page check never counts a throttled API answer (429) as a page checked: a 500 could hide
behind it. It waits what Retry-After says and asks again; still throttled is a problem reported."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.hostile import run


class FakeClient:
    def __init__(self, statuses):
        self.statuses, self.asked = list(statuses), 0

    def get(self, url):
        self.asked += 1
        status = self.statuses.pop(0) if self.statuses else 200
        return SimpleNamespace(status_code=status, headers={"Retry-After": "3"} if status == 429 else {})


def test_a_throttled_answer_is_waited_out_and_asked_again():
    rep, slept = run.Report(), []
    res = run._get_unthrottled(FakeClient([429, 429, 500]), "/api/v1/studies/1/", rep, sleep=slept.append)
    assert res.status_code == 500 and slept == [3.0, 3.0] and rep.throttled_waits == 2


@pytest.mark.django_db
def test_still_throttled_after_every_wait_is_a_problem_not_a_page_checked(monkeypatch):
    monkeypatch.setattr(run, "_get_unthrottled",
                        lambda client, url, rep: SimpleNamespace(status_code=429, headers={}))
    rep = run.Report()
    monkeypatch.setattr(run, "GLOBAL_PAGES", ["/api/v1/studies/"])
    run._check_pages(rep, [], [])
    assert rep.problems == [f"GET /api/v1/studies/ not checked: throttled (429) after {run.THROTTLE_RETRIES} waits"]
