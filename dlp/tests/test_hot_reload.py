"""Hot reload: a policy change reaches every worker process without a restart, and while
nothing changes a worker does not touch the database at all."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.db.models import F

from conftest import ROOT, Gateway, database_url_for_tests
from dlp.models import Pattern, PolicyVersion
from dlp.selectors import dlp_policy, dlp_policy_expire
from dlp.services import pattern_create, pattern_update
from teams.services import IssuedKey

from .helpers import policy_version

PROBE = "ticket PROBE-4242 for the on-call"
# Far beyond the reload interval: a deadline for a broken reload, not a speed measurement.
DEADLINE_SECONDS = 30.0


class Watcher:
    """One `dlp.tests.policy_watcher` process and the policies it has reported."""

    def __init__(self, database_url: str) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "synapse.settings",
            "SYNAPSE_DLP_RELOAD_SECONDS": "1.0",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dlp.tests.policy_watcher", PROBE],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                state = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    assert self.process.stderr is not None
                    raise AssertionError(f"watcher exited: {self.process.stderr.read()[-3000:]}") from None
                continue
            if wanted(state):
                return state
        raise AssertionError("the watcher never saw the expected policy")

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    url = database_url_for_tests()
    started = [Watcher(url), Watcher(url)]
    yield started
    for watcher in started:
        watcher.stop()


@pytest.mark.gateway
@pytest.mark.sqlite
@pytest.mark.django_db(transaction=True)
def test_a_change_reaches_every_worker_process_without_restart(watchers: list[Watcher], approver) -> None:
    pattern = pattern_create(name="probe", category="PROBE", expression=r"\bPROBE-\d{4}\b", action="alert")
    first = [w.wait_for(lambda s: s["action"] == "alert") for w in watchers]
    assert first[0]["pid"] != first[1]["pid"]

    pattern_update(pattern=pattern, changes={"action": "block"}, actor=approver)
    version = policy_version()
    seen = [w.wait_for(lambda s: s["version"] == version) for w in watchers]
    assert [s["action"] for s in seen] == ["block", "block"]
    # The same processes, no restart: each rebuilt its scanners when the version moved.
    assert [s["pid"] for s in seen] == [s["pid"] for s in first]
    assert all(w.process.poll() is None for w in watchers)

    pattern_update(pattern=pattern, changes={"enabled": False}, actor=approver)
    version = policy_version()
    assert [w.wait_for(lambda s: s["version"] == version)["action"] for w in watchers] == [None, None]


def blocked(gateway: Gateway, key: IssuedKey) -> bool:
    # A new connection per request (no keep-alive), so requests spread over the workers.
    response = httpx.post(
        f"{gateway.v1}/chat/completions",
        headers={"Authorization": f"Bearer {key.plaintext}", "Connection": "close"},
        json={"model": "llama-3-8b", "messages": [{"role": "user", "content": PROBE}]},
        timeout=30,
    )
    assert response.status_code in (200, 400), response.text
    return response.status_code == 400 and response.json()["error"]["code"] == "dlp_blocked"


@pytest.mark.gateway
@pytest.mark.django_db(transaction=True)
def test_the_running_gateway_applies_a_change_without_restart(gateway: Gateway, sensitive_key: IssuedKey) -> None:
    pattern = pattern_create(name="probe", category="PROBE", expression=r"\bPROBE-\d{4}\b", action="alert")
    assert not blocked(gateway, sensitive_key)  # alert (or not loaded yet): forwarded either way
    pattern_update(pattern=pattern, changes={"action": "block"})
    # Done when a run of requests on fresh connections is refused, i.e. the workers answering
    # them all hold the new policy; the deadline only bounds a broken reload.
    deadline = time.monotonic() + DEADLINE_SECONDS
    streak = 0
    while streak < 20 and time.monotonic() < deadline:
        streak = streak + 1 if blocked(gateway, sensitive_key) else 0
    assert streak == 20
    assert gateway.process.poll() is None  # the same server: nothing restarted


@pytest.fixture
def slow_reload(settings) -> None:
    settings.SYNAPSE = {**settings.SYNAPSE, "DLP_RELOAD_SECONDS": 3600.0}
    dlp_policy_expire()


@pytest.mark.django_db
@pytest.mark.usefixtures("slow_reload")
def test_a_worker_does_not_query_while_nothing_changed(django_assert_num_queries) -> None:
    first = dlp_policy(team_id=None)
    with django_assert_num_queries(0):
        again = [dlp_policy(team_id=None) for _ in range(1000)]
    assert all(p.prompt is first.prompt for p in again)  # the compiled scanners are shared, not rebuilt


@pytest.mark.django_db
@pytest.mark.usefixtures("slow_reload")
def test_a_worker_reads_the_version_once_per_interval_and_rebuilds_only_when_it_moved(
    django_assert_num_queries,
) -> None:
    first = dlp_policy(team_id=None)
    # A change made by another process: the version moves, nothing tells this one.
    Pattern.objects.create(name="probe", category="PROBE", expression=r"\bPROBE-\d{4}\b", action="block")
    PolicyVersion.objects.filter(pk=PolicyVersion.SINGLETON).update(version=F("version") + 1)
    assert dlp_policy(team_id=None) is first  # still inside the interval: the held policy
    dlp_policy_expire()  # the interval is over
    with django_assert_num_queries(3):  # the version, then the patterns and the overrides
        fresh = dlp_policy(team_id=None)
    assert fresh.version == first.version + 1 and fresh.prompt.scan(PROBE).action == "block"
    dlp_policy_expire()
    with django_assert_num_queries(1):  # the version again: unchanged, so nothing is rebuilt
        assert dlp_policy(team_id=None).prompt is fresh.prompt


@pytest.mark.django_db
def test_a_stored_pattern_re2_refuses_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    # Written past the services (raw SQL, say): the other patterns must keep working.
    Pattern.objects.create(name="broken", category="BROKEN", expression=r"(?<=x)y", action="block")
    pattern_create(name="probe", category="PROBE", expression=r"\bPROBE-\d{4}\b", action="redact")
    policy = dlp_policy(team_id=None)
    assert policy.prompt.scan(PROBE).action == "redact"
    assert "broken" not in {spec.name for spec in policy.prompt.specs}
    assert any("dlp pattern broken skipped" in r.getMessage() for r in caplog.records)
