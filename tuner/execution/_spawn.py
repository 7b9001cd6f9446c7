"""Starting spawned processes (local workers, a comparison's study processes)."""

from __future__ import annotations

import sys
import types
from typing import Any


def start_processes(procs: list[Any]) -> None:
    """Start spawned processes without running the caller's main script again in them.
    multiprocessing imports a script's `__main__` in every spawned process, so a script that
    runs a study at its top level, without `if __name__ == "__main__":`, would start it again
    there (and fail). The processes need nothing from it: they run tuner's functions on
    tuner's objects."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")  # no file, no spec: nothing to rerun
    try:
        for proc in procs:
            proc.start()
    finally:
        sys.modules["__main__"] = main
