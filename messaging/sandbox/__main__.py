"""`python -m messaging.sandbox --port 8002`: serve the sandbox on loopback (no Django needed).

The token and the app secret come from the environment (SANDBOX_ACCESS_TOKEN,
SANDBOX_APP_SECRET) so that they do not show in the process list; the options override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from werkzeug.serving import run_simple

from messaging.sandbox.app import SandboxConfig, create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m messaging.sandbox", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8002")))
    parser.add_argument("--access-token", default=os.environ.get("SANDBOX_ACCESS_TOKEN", ""))
    parser.add_argument("--app-secret", default=os.environ.get("SANDBOX_APP_SECRET", ""))
    parser.add_argument("--webhook-url", default=os.environ.get("SANDBOX_WEBHOOK_URL", ""))
    args = parser.parse_args(argv)
    if not args.access_token:
        parser.error("set SANDBOX_ACCESS_TOKEN (or --access-token): the token Graph API calls must carry")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    app = create_app(
        SandboxConfig(
            access_token=args.access_token, app_secret=args.app_secret, webhook_url=args.webhook_url
        )
    )
    print(f"sandbox Graph API on http://{args.host}:{args.port}/v23.0", flush=True)
    run_simple(args.host, args.port, app, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
