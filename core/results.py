"""Celery's result backend: django-celery-results' table, surviving a database that goes away.

django-celery-results retries only an InterfaceError (a connection Django already knows is closed).
A database that is stopped, restarting or failing over raises OperationalError instead (the
connection is reset, or refused), and a task's result that cannot be stored then escapes Celery's
tracer, which stops the worker as an unrecoverable error. Here both are retried on a new connection
with Celery's backoff (CELERY_RESULT_BACKEND_MAX_RETRIES): the worker waits for the database, as
every task it could run next would, and carries on when it is back.
"""

from django.db import InterfaceError, OperationalError, connection
from django_celery_results.backends.database import DatabaseBackend


class DatabaseResultBackend(DatabaseBackend):
    def exception_safe_to_retry(self, exc: Exception) -> bool:
        if isinstance(exc, InterfaceError | OperationalError):
            connection.close()  # the next try connects afresh
            return True
        return super().exception_safe_to_retry(exc)
