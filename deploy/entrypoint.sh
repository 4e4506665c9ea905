#!/bin/sh
# The image's one entrypoint: `web`, `worker QUEUES`, `beat`, `migrate`, or `manage ARGS...`.
# Each long-running command first runs Django's checks (core/checks.py refuses development
# endpoints, a missing secret stops the settings), then replaces this shell (exec), so that the
# container's SIGTERM reaches gunicorn or Celery directly:
#   web     gunicorn stops accepting, lets requests in flight finish (WEB_GRACEFUL_TIMEOUT_S), exits;
#   worker  Celery's warm shutdown: no new task is taken, the running ones (a drain: at most half
#           its queue's visibility timeout) finish and are acknowledged, then it exits;
#   beat    stops at once (its schedule is fixed; a missed tick is run at the next).
set -eu

usage() {
  echo "usage: entrypoint.sh web | worker QUEUES | beat | migrate | manage ARGS..." >&2
  echo "  QUEUES: comma-separated, among incoming,outgoing,analytics,archival,default" >&2
  exit 2
}

checks() {
  python manage.py check --deploy --fail-level ERROR
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  web)
    [ $# -eq 0 ] || usage
    checks
    exec gunicorn config.wsgi --config python:config.gunicorn
    ;;
  worker)
    [ $# -eq 1 ] && [ -n "$1" ] || usage
    checks
    exec celery --app config worker \
      --queues "$1" \
      --concurrency "${WORKER_CONCURRENCY:-2}" \
      --loglevel "${LOG_LEVEL:-INFO}" \
      --without-mingle --without-gossip \
      --hostname "worker-$(echo "$1" | tr ',' '-')@%h"
    ;;
  beat)
    [ $# -eq 0 ] || usage
    checks
    exec celery --app config beat --loglevel "${LOG_LEVEL:-INFO}"
    ;;
  migrate)
    [ $# -eq 0 ] || usage
    python manage.py migrate --noinput
    exec python manage.py createcachetable
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    usage
    ;;
esac
