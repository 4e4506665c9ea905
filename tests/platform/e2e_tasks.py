"""Tasks for the end-to-end tests, loaded into the real worker with `--include`.

They are routed to `default`, the task_default_queue: Celery 5.7 deprecates the `queue` task attribute.
"""

from celery import shared_task
from django.core.cache import cache


def healed_key(token: str) -> str:
    return f"e2e-healed:{token}"


@shared_task
def e2e_add(a: int, b: int) -> int:
    return a + b


@shared_task
def e2e_fail_until_healed(token: str) -> str:
    """Fails until the test sets the cache key: a bug that a deploy fixes while its messages wait."""
    if not cache.get(healed_key(token)):
        raise RuntimeError(f"not healed yet: {token}")
    return token
