"""`python -m bench NAME`: run one benchmark; it prints its figures, the last line one JSON object."""

import importlib
import os
import pkgutil
import sys
from pathlib import Path

# Benchmarks run on the development stack's embedded parts (and its secrets in var/), never on
# production settings: the settings read var/stack.env and .env only with this flag.
os.environ.setdefault("DEVSTACK", "1")


def available() -> list[str]:
    return sorted(
        module.name
        for module in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not module.name.startswith("_")
    )


def main() -> int:
    names = available()
    if len(sys.argv) != 2 or sys.argv[1] not in names:
        print(f"usage: python -m bench NAME   (NAME: {', '.join(names)})", file=sys.stderr)
        return 2
    return importlib.import_module(f"bench.{sys.argv[1]}").main() or 0


if __name__ == "__main__":
    sys.exit(main())
