import gc
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("wharf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _startup_heap_freeze(**_kwargs) -> None:
    """Leave what the worker loaded before its first task (Django, the apps, their modules) out of
    the garbage collector's full passes: they otherwise stop every thread of the process for 100 ms
    and more, and a request handed over just before one leaves that late, into another of Meta's
    seconds than its slot."""
    gc.freeze()
