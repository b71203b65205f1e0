"""Per-key ceilings on requests in flight: one leased slot per running request.

A key with `max_concurrent = N` owns N slot keys on the counter store (`conc:k<id>:<i>`). A
request looks at which are taken (one read: `get_many`), takes a free one with `add` (set if
absent, one atomic statement on PostgreSQL and Redis alike) under a random token, and gives it
back at settlement with a compare-and-delete of that token. Two requests can never hold one
slot, so at most N run at once however many workers and instances serve the key.

Slots are leases: a slot expires `SYNAPSE_CONCURRENCY_LEASE_SECONDS` (default 60) after it was
taken or last refreshed, and each worker refreshes the slots its running requests hold every
third of that (`concurrency_leases_refresh`, started by synapse/lifespan.py). A worker killed
mid-request (kill -9, OOM) stops refreshing, so its slots are free again within one lease. The
release is a compare-and-delete, so a request that outlived a lapsed lease (its worker's
refresh failed for two thirds of a lease) never frees a slot another request took since.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches

logger = logging.getLogger("synapse.limits")

COUNTERS = "counters"  # the cache alias (settings.CACHES), as in teams.limits
# One read of N keys per request: keep N where that read stays small.
MAX_CONCURRENT_CEILING = 1000

# Redis: delete the slot only if it still holds this request's token.
_REDIS_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass(frozen=True, slots=True)
class Slot:
    """One leased slot: the counter-store key and the token that proves it is this request's."""

    key: str
    token: int


# The slots this process's running requests hold, refreshed by `concurrency_leases_refresh`.
_held: dict[Slot, None] = {}
_held_lock = threading.Lock()


def lease_seconds() -> float:
    return float(settings.SYNAPSE["CONCURRENCY_LEASE_SECONDS"])


def slot_names(key_id: int, limit: int) -> list[str]:
    return [f"conc:k{key_id}:{index}" for index in range(limit)]


def concurrency_acquire(*, key_id: int, limit: int) -> tuple[Slot | None, int]:
    """Take a free slot of the key's `limit`; returns it (None: all taken) and how many are in use.

    Raises if the counter store fails (the caller fails closed).
    """
    counters = caches[COUNTERS]
    names = slot_names(key_id, limit)
    taken = counters.get_many(names)
    free = [name for name in names if name not in taken]
    # Racing requests start at different free slots, so few lose an `add` to one another.
    random.shuffle(free)
    token = secrets.randbits(62) + 1
    lease = lease_seconds()
    for name in free:
        if counters.add(name, token, lease):
            slot = Slot(key=name, token=token)
            with _held_lock:
                _held[slot] = None
            return slot, len(taken) + 1
        # Another request took this one since the read: try the next free slot.
    return None, limit


def concurrency_release(slot: Slot) -> None:
    """Give a slot back (only if it is still this request's); a failure leaves it to its lease."""
    with _held_lock:
        _held.pop(slot, None)
    counters = caches[COUNTERS]
    delete_if = getattr(counters, "delete_if", None)
    if delete_if is not None:  # synapse.cache.CounterCache
        delete_if(slot.key, slot.token)
        return
    # django-redis: compare-and-delete in one script (its ints are stored as plain numbers).
    client: Any = counters.client.get_client(write=True)  # type: ignore[attr-defined]
    client.eval(_REDIS_RELEASE, 1, str(counters.make_key(slot.key)), str(slot.token))


def concurrency_leases_refresh() -> int:
    """Extend the lease of every slot this process's running requests hold; returns how many."""
    with _held_lock:
        held = list(_held)
    counters = caches[COUNTERS]
    lease = lease_seconds()
    for slot in held:
        counters.touch(slot.key, lease)
    return len(held)
