"""gunicorn's settings for the production image (`gunicorn -c python:config.gunicorn config.wsgi`),
from the environment; its logs go through settings.LOGGING like every other line."""

import os

from config.settings import LOGGING

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# A request running longer is killed (and its worker restarted); keep it above the slowest page.
timeout = int(os.environ.get("WEB_TIMEOUT_S", "30"))
# After SIGTERM, requests in flight get this long to finish.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT_S", "25"))
# Longer than the load balancer's idle timeout (60 s on AWS's), so that it closes connections first.
keepalive = int(os.environ.get("WEB_KEEPALIVE_S", "75"))
# Addresses whose X-Forwarded-* headers gunicorn believes; Django's TRUSTED_PROXY_COUNT says the same.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
# Workers' heartbeat files in memory: a container's disk can stall them into false timeouts.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = None  # core.logging.RequestIdMiddleware logs each request, with its id
logconfig_dict = LOGGING
control_socket_disable = True  # no operator pokes at a container through a socket
