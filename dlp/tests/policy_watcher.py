"""A stand-in worker for the hot-reload test: a separate process that asks `dlp_policy()` for
the policy from a thread pool, as the pipeline does, and prints each policy it sees.

Run as `python -m dlp.tests.policy_watcher PROBE` with DATABASE_URL set; prints one JSON line
per distinct (version, action on PROBE) until stdin closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def main(probe: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synapse.settings")
    import django

    django.setup()
    from django.db import close_old_connections

    from dlp.selectors import dlp_policy

    stop = threading.Event()
    def stop_at_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()

    def observe() -> tuple[int, str | None]:
        try:
            policy = dlp_policy(team_id=None)
            return policy.version, policy.prompt.scan(probe, overrides=policy.overrides).action
        finally:
            close_old_connections()

    seen = None
    with ThreadPoolExecutor(max_workers=4) as pool:
        while not stop.is_set():
            for state in pool.map(lambda _: observe(), range(4)):
                if state != seen:
                    seen = state
                    print(json.dumps({"pid": os.getpid(), "version": state[0], "action": state[1]}), flush=True)
            time.sleep(0.02)


if __name__ == "__main__":
    main(sys.argv[1])
