"""`python -m bench NAME`: run one benchmark; it prints its figures, the last line one JSON object."""

import importlib
import pkgutil
import sys
from pathlib import Path


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
