"""The stack's supervisor over stand-in children, for the fault tests:
`python -m tests.platform.supervised FOLDER NAME...` keeps a child per NAME running, each writing
its pid to FOLDER/NAME.pid and then waiting for a signal, until SIGINT, SIGTERM or SIGHUP."""

import os
import sys
from functools import partial
from pathlib import Path

from devstack.stack import Child, Supervisor, stop_on_signals

STAND_IN = """
import os, signal, sys
path = sys.argv[1]
with open(path + ".new", "w") as file:
    file.write(str(os.getpid()))
os.replace(path + ".new", path)
signal.pause()  # until a signal ends it, as a real child runs until stopped
"""


def main(folder: Path, names: list[str]) -> int:
    supervisor = Supervisor(stop_on_signals())
    for name in names:
        argv = [sys.executable, "-c", STAND_IN, str(folder / f"{name}.pid")]
        supervisor.keep(name, partial(Child, name, argv, dict(os.environ)))
    try:
        supervisor.run()
    finally:
        supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
