"""`python -m devstack.sandbox --port 8002`: serve the sandbox on loopback (no Django needed).

The token and the app secret come from the environment (SANDBOX_ACCESS_TOKEN,
SANDBOX_APP_SECRET) so that they do not show in the process list; the options override them.

It is served by gunicorn: one worker process, since everything the sandbox holds is in that
process's memory, with threads for concurrent requests; idle keep-alive connections cost no
thread. That takes about half the CPU per request of werkzeug's development server, which
matters where the sandbox shares two cores with the workers a benchmark measures.
SANDBOX_ACCESS_LOG=0 (or --no-access-log) leaves out the line per request.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from gunicorn.app.base import BaseApplication

from devstack.sandbox.app import SandboxConfig, create_app


class GunicornServer(BaseApplication):
    def __init__(self, app, options: dict):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.application


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.sandbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8002")))
    parser.add_argument("--access-token", default=os.environ.get("SANDBOX_ACCESS_TOKEN", ""))
    parser.add_argument("--app-secret", default=os.environ.get("SANDBOX_APP_SECRET", ""))
    parser.add_argument("--webhook-url", default=os.environ.get("SANDBOX_WEBHOOK_URL", ""))
    parser.add_argument("--sms-webhook-url", default=os.environ.get("SANDBOX_SMS_WEBHOOK_URL", ""))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("SANDBOX_THREADS", "64")))
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=os.environ.get("SANDBOX_ACCESS_LOG", "1") not in ("0", "false", "no"),
    )
    args = parser.parse_args(argv)
    if not args.access_token:
        parser.error("set SANDBOX_ACCESS_TOKEN (or --access-token): the token Graph API calls must carry")
    app = create_app(
        SandboxConfig(
            access_token=args.access_token,
            app_secret=args.app_secret,
            webhook_url=args.webhook_url,
            sms_webhook_url=args.sms_webhook_url,
        )
    )
    # A request's arrival is timed when its thread runs: let it run soon (Python waits 5 ms by
    # default), or arrivals bunch in the rate window as if the client had sent them so.
    sys.setswitchinterval(0.0005)
    gc.freeze()  # and no full collection pass stops the arrivals over what the app loaded
    print(f"sandbox Graph API on http://{args.host}:{args.port}/v23.0", flush=True)
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": args.threads,
        "keepalive": 75,  # pooled clients keep their connections between bursts
        "graceful_timeout": 1,
        "timeout": 120,
        "control_socket_disable": True,
        "loglevel": "info",
        "accesslog": "-" if args.access_log else None,
        "proc_name": "wharf-sandbox",
    }
    GunicornServer(app, options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
