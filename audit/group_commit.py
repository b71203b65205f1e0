"""Group commit: the request rows of every request this process finishes at the same moment
go to the chain in one transaction — one chain-lock hold, one commit, one WAL flush.

A request hands its row (and a companion write that goes with it, e.g. its limit settlement)
to the process's writer and waits: a thread (`submit`), or, where the caller's event loop runs
its database work itself, batches written one after another on that loop (`write`). The writer
takes everything queued, computes each row's columns and digest, runs the batch's companion
writes (each atomic by itself: usually one autocommitted statement) and inserts the rows with
one autocommitted INSERT (the trigger chains them in order under one advisory-lock hold; the
statement is its own transaction), and only once both are done releases each waiter. So an
answer is never sent for a row a crash could lose: a crash before the commit loses rows no
client was told about, and those requests get no answer either.

The companion transaction is kept out of the rows' because the rows' commit waits for the WAL
flush, and every counter row a settlement updates would stay locked through that wait, holding
up each request reserving on the same key meanwhile. Its own commit waits for nothing: the
counter table is UNLOGGED (a circuit-breaker update, rare, is logged and flushed). The writer
thread runs the companions, then the rows; on the loop the two go at once, on two connections,
so a request waits for the longer round trip rather than both. Either way a crash between the
two commits loses only a settlement whose request was never answered (its holds stay counted:
the limits err towards refusing), or a settlement whose row is not written (and whose request
was not answered either).

Batches form by themselves: while one commits, the next requests queue. Nothing waits on a
timer, so a lone request pays one thread hand-off, not a delay.

If a batch fails on its data, what failed is done again one request at a time: a companion
write (which then spares its row: the row is written, its result is None), or the rows, so one
bad row costs only its own request. If it fails because the database is unreachable, every
waiter gets the error at once: the pipeline answers 503 rather than try each row into a dead
database.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connections, router, transaction

from .chain import CHAINED_FIELDS, canonical
from .models import AuditEvent
from .services import audit_event_append, normalise_values

logger = logging.getLogger("synapse.audit")

# Larger batches amortise the lock and the flush further, but every waiter of a batch waits
# for its last row: a few hundred rows insert in a few milliseconds.
MAX_BATCH = int(os.environ.get("SYNAPSE_AUDIT_MAX_BATCH", "256"))


# A companion write: a function called once per batch with the payloads of the batch's rows
# that carry one (in the rows' order), returning one result per payload. Called with the whole
# batch, it can order its locks and merge its statements (limit settlement does both). It is
# called outside any transaction and makes its writes safe to call again after a failure: each
# part atomic, and a part that was done is not done twice (a settlement is marked settled once
# its statements ran). A single statement then needs no BEGIN and COMMIT round trips.
Companion = Callable[[list[Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Written:
    """What a waiter gets once its row is committed."""

    result: Any  # the companion's result for its payload (None without a companion)
    seq: int  # the row's position in the chain


@dataclass(slots=True)
class _Item:
    values: Callable[[], dict[str, Any]]  # the row's columns, computed by the writer
    companion: Companion | None  # committed by itself, before the rows or beside them
    payload: Any
    future: Future[Any] | asyncio.Future[Any]


# Runs a sync function with its arguments as a database hop and awaits it (the pipeline's `run_db`).
Runner = Callable[..., Awaitable[Any]]


@dataclass(slots=True)
class _LoopQueue:
    items: deque[_Item] = field(default_factory=deque)
    writing: asyncio.Task[None] | None = None


def _done(item: _Item, written: Written) -> None:
    if not item.future.done():  # a waiter that went away (its future cancelled) is not told
        item.future.set_result(written)


def _fail(item: _Item, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError))


class GroupCommitter:
    """One per process (and database alias); its thread starts on first use, again after a fork."""

    def __init__(self, *, alias: str | None = None, max_batch: int = MAX_BATCH) -> None:
        self._alias = alias
        self._max_batch = max_batch
        self._queue: deque[_Item] = deque()
        self._ready = threading.Condition()
        self._pid = 0
        self._stopping = False
        self._loop_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue] = weakref.WeakKeyDictionary()
        self.batches = 0  # batches committed by this process (tests and benchmarks read it)

    @property
    def alias(self) -> str:
        return self._alias or router.db_for_write(AuditEvent)

    def submit(
        self, *, values: Callable[[], dict[str, Any]], companion: Companion | None = None, payload: Any = None
    ) -> Future[Any]:
        """Queue one row; the future resolves, once the row is committed, with `Written`: the
        companion's result for `payload` and the row's seq.

        `values` and `companion` run on the writer thread, `companion` inside the batch's
        transaction; neither may depend on anything the caller changes after submitting.
        """
        future: Future[Any] = Future()
        item = _Item(values=values, companion=companion, payload=payload, future=future)
        with self._ready:
            if self._pid != os.getpid():  # first use, or a forked child: the parent's thread is not here
                self._pid = os.getpid()
                self._queue.clear()
                threading.Thread(target=self._run, name="synapse-audit-writer", daemon=True).start()
            self._queue.append(item)
            self._ready.notify()
        return future

    async def write(
        self, *, values: Callable[[], dict[str, Any]], companion: Companion | None = None, payload: Any = None, run: Runner
    ) -> Written:
        """`submit` for a caller on an event loop whose database hops run on the loop itself
        (synapse/loop_db.py): the batches are written by `run` on this loop, one at a time
        (each as two hops at once: `_write_beside`), instead of on the writer thread, and the
        waiter is released the same way, once the commit that holds its row has returned.
        Batches form as on the thread: while one is being written, the rows of the requests
        finishing meanwhile queue for the next."""
        loop = asyncio.get_running_loop()
        queue = self._loop_queues.get(loop)
        if queue is None:
            queue = self._loop_queues[loop] = _LoopQueue()
        future: asyncio.Future[Written] = loop.create_future()
        queue.items.append(_Item(values=values, companion=companion, payload=payload, future=future))
        if queue.writing is None:
            queue.writing = loop.create_task(self._write_queued(queue, run))
        # Shielded: a waiter that is cancelled leaves its row to be written all the same.
        return await asyncio.shield(future)

    async def _write_queued(self, queue: _LoopQueue, run: Runner) -> None:
        try:
            while queue.items:
                batch = [queue.items.popleft() for _ in range(min(len(queue.items), self._max_batch))]
                try:
                    await self._write_beside(batch, run)
                except BaseException as exc:  # never leave a waiter hanging, whatever went wrong
                    logger.exception("audit batch of %d rows failed", len(batch))
                    for item in batch:
                        _fail(item, exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            queue.writing = None

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    # Idle: give the connection back to the pool until the next row comes.
                    self._ready.wait(timeout=1.0)
                    if not self._queue:
                        close_old_connections()
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
            try:
                self._write(batch)
            except BaseException as exc:  # never leave a waiter hanging, whatever went wrong
                logger.exception("audit batch of %d rows failed", len(batch))
                for item in batch:
                    _fail(item, exc)

    async def _write_beside(self, batch: list[_Item], run: Runner) -> None:
        """`_write` on the loop, with the batch's companion writes and its INSERT as two hops
        at once, on two connections: the request waits for the longer of the two round trips,
        not for both one after the other. Their order then no longer holds, and need not: a
        companion is safe to repeat and commits by itself either way, the waiters are released
        only once both are done, and one that fails spares the rows as before. A batch without
        companions is one hop."""
        rows = _built(batch)
        if not rows:
            return
        items = [item for item, _ in rows]
        if all(item.companion is None for item in items):
            await run(self._settled, rows, [None] * len(rows))
            return

        async def companions() -> list[Any]:
            try:
                return await run(self._companions_hop, items)
            except Exception as exc:  # noqa: BLE001  # only an unreachable database: the rows go on
                logger.error("the writes that go with %d audit rows failed (%s); the rows are written", len(items), exc)
                return [None] * len(items)

        # The INSERT first: its round trip, with the flush, is the longer one.
        seqs, results = await asyncio.gather(run(self._insert_hop, [row for _, row in rows]), companions())
        if isinstance(seqs, Exception):
            await run(self._failed, rows, results, seqs)
            return
        self.batches += 1
        for (item, _), result, seq in zip(rows, results, seqs, strict=True):
            _done(item, Written(result, seq))

    def _companions_hop(self, items: list[_Item]) -> list[Any]:
        try:
            return self._companions(items)
        except Exception:
            self._reset()
            raise

    def _insert_hop(self, rows: list[dict[str, Any]]) -> list[int] | Exception:
        """The rows' seqs, or why they could not be written: handled once the companions are
        done too (`_failed`)."""
        try:
            return self._insert(rows)
        except Exception as exc:  # noqa: BLE001  # returned, not raised: the companions' hop goes on
            self._reset()
            return exc

    def _write(self, batch: list[_Item]) -> None:
        rows = _built(batch)
        if not rows:
            return
        try:
            results = self._companions([item for item, _ in rows])
        except Exception as exc:  # noqa: BLE001  # unreachable: handed to the waiters
            self._failed(rows, [None] * len(rows), exc)
            return
        self._settled(rows, results)

    def _settled(self, rows: list[tuple[_Item, dict[str, Any]]], results: list[Any]) -> None:
        """Insert the rows whose companions are done; release each waiter once it is committed."""
        try:
            seqs = self._insert([row for _, row in rows])
        except Exception as exc:  # noqa: BLE001  # handed to the waiters, or each row retried alone
            self._failed(rows, results, exc)
            return
        self.batches += 1
        for (item, _), result, seq in zip(rows, results, seqs, strict=True):
            _done(item, Written(result, seq))

    def _failed(self, rows: list[tuple[_Item, dict[str, Any]]], results: list[Any], exc: Exception) -> None:
        """The batch's INSERT failed: every waiter gets the error if the database is unreachable
        (or the batch was one row); otherwise each row is written alone, so one bad row costs
        only its own request."""
        self._reset()
        if _unreachable(exc) or len(rows) == 1:
            for item, _ in rows:
                _fail(item, exc)
            return
        logger.warning("audit batch of %d rows failed (%s); writing each row on its own", len(rows), exc)
        for (item, row), result in zip(rows, results, strict=True):
            self._insert_alone(item, row, result)

    def _companions(self, items: list[_Item]) -> list[Any]:
        """The batch's companion writes, each committed by itself (see the module docstring).
        One that fails on its data is retried alone, and alone it spares its row (result None);
        a companion is safe to call again (see Companion)."""
        if all(item.companion is None for item in items):
            return [None] * len(items)
        try:
            return _companions(items)
        except Exception as exc:
            if _unreachable(exc):
                raise
            self._reset()
            if len(items) == 1:
                logger.exception("a write that goes with an audit row failed; the row is written")
                return [None]
        results: list[Any] = []
        for item in items:
            results.append(None)
            if item.companion is None:
                continue
            try:
                results[-1] = item.companion([item.payload])[0]
            except Exception as exc:
                if _unreachable(exc):
                    raise
                logger.exception("a write that goes with an audit row failed; the row is written")
                self._reset()
        return results

    def _insert(self, rows: list[dict[str, Any]]) -> list[int]:
        """One INSERT of the whole batch; the trigger chains the rows in this order, seq comes back.

        The batch goes to the server as one JSON array of the rows' canonical documents — the
        bytes their digests are computed from (audit/chain.py), which hold every column that is
        not null in what its column stores — each with its digest spliced in, and is unnested
        there in order. Built this way rather than through `bulk_create` (its compiler, and the
        client-side quoting of Django's cursor, took a tenth of a loaded worker's CPU), a VALUES
        list of one placeholder per value (psycopg parses each new statement's placeholders in
        Python: a third of a batch's CPU), or one array per column (psycopg dumps arrays in
        Python): the statement's text is the same for every batch, and its one parameter is
        bytes already made. `normalise_values` has already made each value what its column
        stores, so verification's canonical form of the stored row is this document again."""
        alias = self.alias
        connection = connections[alias]
        documents = []
        for row in rows:
            document = canonical(row)
            digest = hashlib.sha256(document).hexdigest().encode("ascii")
            # Every row has columns (occurred_at at least): the document is never "{}".
            documents.append(b'{"row_hash":"' + digest + b'",' + document[1:])
        batch = b"[" + b",".join(documents) + b"]"
        # One statement, autocommitted: it is a transaction of its own, committed (and flushed)
        # before its result comes back, with no BEGIN and COMMIT round trips around it.
        assert connection.get_autocommit(), "the batch commits itself: no caller's transaction may be open"
        connection.ensure_connection()
        # Django's error classes, as its own cursors raise them (an unreachable database is
        # told apart from a bad row by them).
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_batch_insert_sql(alias), [batch.decode("utf-8")])
            return [seq for (seq,) in cursor.fetchall()]

    def _insert_alone(self, item: _Item, row: dict[str, Any], result: Any) -> None:
        try:
            with transaction.atomic(using=self.alias):
                event = audit_event_append(values=row)
        except Exception as exc:  # noqa: BLE001  # handed to its waiter
            self._reset()
            _fail(item, exc)
            return
        _done(item, Written(result, event.seq))

    def _reset(self) -> None:
        connection = connections[self.alias]
        if connection.connection is not None and not connection.is_usable():
            connection.close()
        close_old_connections()


def _built(batch: list[_Item]) -> list[tuple[_Item, dict[str, Any]]]:
    """Each item with its row's columns; an item whose row cannot be built fails alone."""
    rows: list[tuple[_Item, dict[str, Any]]] = []
    for item in batch:
        try:
            rows.append((item, normalise_values(item.values())))
        except Exception as exc:  # noqa: BLE001  # handed to its waiter
            _fail(item, exc)
    return rows


@functools.cache
def _batch_insert_sql(alias: str) -> str:
    """INSERT … SELECT FROM the batch's JSON array of rows, in the array's order (ORDER BY its
    ordinality: the trigger chains rows in the order they are inserted). A column missing from
    a row's document is null."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    fields = {field.column: field for field in AuditEvent._meta.concrete_fields}
    columns = [*CHAINED_FIELDS, "row_hash"]
    names = ", ".join(quote(name) for name in columns)
    types = ", ".join(f"{quote(name)} {fields[name].db_type(connection)}" for name in columns)
    return (
        f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({names}) SELECT {names} "
        f"FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS ({types})) WITH ORDINALITY AS batch({names}, position) "
        "ORDER BY position RETURNING seq"
    )


def _companions(items: list[_Item]) -> list[Any]:
    """Each item's companion result: every companion function called once, with its payloads."""
    results: list[Any] = [None] * len(items)
    groups: dict[Companion, list[int]] = {}
    for index, item in enumerate(items):
        if item.companion is not None:
            groups.setdefault(item.companion, []).append(index)
    for companion, indexes in groups.items():
        for index, result in zip(indexes, companion([items[i].payload for i in indexes]), strict=True):
            results[index] = result
    return results


def audit_append_with(
    *, values: dict[str, Any], companion: Companion | None = None, payload: Any = None, alias: str | None = None
) -> Written:
    """One row and its companion write in one transaction, on the calling thread (SQLite, or a
    caller that owns the transaction, such as a test)."""
    alias = alias or router.db_for_write(AuditEvent)
    result = None
    with transaction.atomic(using=alias):
        if companion is not None:
            try:
                with transaction.atomic(using=alias):  # a savepoint: its failure spares the row
                    result = companion([payload])[0]
            except Exception:
                logger.exception("a write that commits with an audit row failed; the row is written")
        event = audit_event_append(values=values)
    return Written(result, event.seq)


_committers: dict[str, GroupCommitter] = {}
_committers_lock = threading.Lock()


def group_commit_enabled(alias: str | None = None) -> bool:
    """Rows are grouped on PostgreSQL (SYNAPSE_AUDIT_GROUP_COMMIT, on by default); SQLite
    serialises its writers anyway, and its chain step runs in Python per row."""
    alias = alias or router.db_for_write(AuditEvent)
    # The engine from the settings, not `connections[alias].vendor`: on an event loop each
    # request's context would get a connection wrapper of its own just to answer this.
    engine = connections.settings[alias]["ENGINE"]
    return bool(settings.SYNAPSE.get("AUDIT_GROUP_COMMIT", True)) and engine == "django.db.backends.postgresql"


def group_committer(alias: str | None = None) -> GroupCommitter:
    """The process's writer for `alias` (the audit table's database by default)."""
    alias = alias or router.db_for_write(AuditEvent)
    committer = _committers.get(alias)
    if committer is None:
        with _committers_lock:
            committer = _committers.setdefault(alias, GroupCommitter(alias=alias))
    return committer
