"""Waiting in tests: a condition polled until a deadline, never a bare sleep.

`wait_until` polls any condition; `lock_waiter` waits until another PostgreSQL session is blocked
on a lock, which is how a test knows that a second worker has reached the row or advisory lock the
first one holds. Both fail with a message naming what was awaited. The benchmarks use them too.
"""

import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, TypeVar

from django.db import connections

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What was awaited did not happen before the deadline."""


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str],
) -> T:
    """Call `condition` every `interval` seconds until it returns something truthy, and return that.

    After `timeout` seconds, fail with `message` (a callable is called then, so that it can say what
    it saw at the end). An exception raised by the condition ends the wait at once.
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        if value := condition():
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise WaitTimeout(f"waited {timeout:g} s for {text}")
        time.sleep(interval)


class LockWaiter(NamedTuple):
    """A session blocked on a lock, as pg_stat_activity and pg_locks show it."""

    pid: int
    locktype: str  # "transactionid" for a row, "advisory", "relation", ...
    query_start: datetime  # when the blocked statement began, on the database's clock
    query: str


_LOCK_WAITERS_SQL = """
    SELECT a.pid, l.locktype, a.query_start, a.query
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()
    ORDER BY a.query_start
"""


def lock_waiter(*, pid: int | None = None, using: str = "default", timeout: float = 10.0) -> LockWaiter:
    """Wait until another session of this database (the one with backend `pid`, if given) is
    blocked on a lock that it has not been granted, and return it.

    It reads through Django's connection `using`, so call it from the test's own thread.
    """
    __tracebackhide__ = True

    def blocked() -> LockWaiter | None:
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh figures inside a transaction too
            cursor.execute(_LOCK_WAITERS_SQL)
            waiters = [LockWaiter(*row) for row in cursor.fetchall()]
        return next((waiter for waiter in waiters if pid is None or waiter.pid == pid), None)

    who = f"session {pid}" if pid is not None else "another session"
    return wait_until(blocked, timeout=timeout, interval=0.02, message=f"{who} to wait on a lock")
