"""`python -m tuner.tracking._serve READ_FD WRITE_FD TRACKING_URI warm|cold`: the MLflow
writer process that `ProcessWriter` starts (see `tuner.tracking._child`)."""

import sys
from multiprocessing.connection import Connection

from tuner.tracking._child import serve

if __name__ == "__main__":
    serve(sys.argv[3], Connection(int(sys.argv[1]), writable=False),
          Connection(int(sys.argv[2]), readable=False), warm_up=sys.argv[4] == "warm")
