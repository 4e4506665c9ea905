"""The dashboard's tasks, on the `analytics` queue (config/settings.py routes `dashboard.*` there).
Each recomputes whole days (dashboard/rollups.py), so a redelivered task writes the same rows."""

from datetime import date

from celery import shared_task

from dashboard.rollups import stats_range_rollup, stats_recent_rollup


@shared_task(name="dashboard.stats_recent_rollup")
def stats_recent_rollup_task() -> dict[str, int]:
    return stats_recent_rollup()


@shared_task(name="dashboard.stats_range_rollup")
def stats_range_rollup_task(since: str, until: str) -> dict[str, int]:
    return stats_range_rollup(since=date.fromisoformat(since), until=date.fromisoformat(until))
