"""Celery tasks of the base app, on the `default` queue: thin wrappers that beat calls."""

from celery import shared_task

from core.retention import task_results_sweep


@shared_task(name="core.task_results_sweep")
def task_results_sweep_task() -> dict:
    """Delete Celery's results older than their retention (core/retention.py)."""
    return task_results_sweep()
