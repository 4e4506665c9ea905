import gc
import logging.config
import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_process_init
from django.conf import settings

from core.logging import task_context_enter, task_context_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("wharf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _logging_from_settings(**_kwargs) -> None:
    """Workers and beat log as the web does (settings.LOGGING: JSON lines, secrets redacted),
    not through Celery's own handlers."""
    logging.config.dictConfig(settings.LOGGING)


@task_prerun.connect
def _task_context_enter(task_id: str | None = None, **_kwargs) -> None:
    task_context_enter(task_id)


@task_postrun.connect
def _task_context_exit(**_kwargs) -> None:
    task_context_exit()


@worker_process_init.connect
def _startup_heap_freeze(**_kwargs) -> None:
    """Leave what the worker loaded before its first task (Django, the apps, their modules) out of
    the garbage collector's full passes: they otherwise stop every thread of the process for 100 ms
    and more, and a request handed over just before one leaves that late, into another of Meta's
    seconds than its slot."""
    gc.freeze()
