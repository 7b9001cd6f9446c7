"""`python -m tuner.tracking._serve READ_FD WRITE_FD warm|cold`: the MLflow writer process that
`ProcessWriter` starts (see `tuner.tracking._child`), on the store named by the environment's
TUNER_WRITER_TRACKING_URI (empty: MLFLOW_TRACKING_URI or MLflow's default).

It runs at a lower priority (nice 10) from its first line: its imports, warm-up and writes are
background work, which must not take the training's core when another process has the spare one;
when the study ends and waits for it, the study's core is free for it."""

import os
import sys

if hasattr(os, "nice"):
    os.nice(10)

from tuner import _collector as collector

collector.pause()  # until its imports and warm-up are made (see tuner._collector)

from multiprocessing.connection import Connection  # noqa: E402

from tuner.tracking._child import serve  # noqa: E402
from tuner.tracking._writer import WRITER_URI_VARIABLE  # noqa: E402

if __name__ == "__main__":
    serve(os.environ.pop(WRITER_URI_VARIABLE, ""), Connection(int(sys.argv[1]), writable=False),
          Connection(int(sys.argv[2]), readable=False), warm_up=sys.argv[3] == "warm")
