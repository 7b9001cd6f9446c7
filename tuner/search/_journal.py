"""A journal file whose last record is torn (a crash or a full disk in the middle of a write).

Optuna reads such a file fine (it skips a last line without a line end), but the next write
appends after the torn bytes, which turns them into a broken record in the middle of the file:
from then on every read fails and the whole study history is out of reach. So the end of a
journal is checked before it is used: a torn last record is cut off under Optuna's own journal
lock (no other process is writing then), after the file is copied aside, and the user is told.
Optuna never applied that record (no reader did), so cutting it loses nothing the study holds.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

from tuner.errors import StorageError

_TAIL = 1 << 16  # bytes read from the end: a record is far shorter
_log = logging.getLogger("tuner.storage")


def torn_tail(path: Path) -> int | None:
    """The offset where the torn last record of the journal at `path` starts, or None if it
    ends cleanly: with a line end after a record that parses."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size == 0:
                return None
            start = max(0, size - _TAIL)
            handle.seek(start)
            tail = handle.read()
    except OSError:
        return None  # unreadable: opening the storage says so
    if tail.endswith(b"\n"):
        body = tail[:-1]
        last = body.rfind(b"\n")
        if last < 0 and start > 0:
            return None  # one record longer than the tail we read: not ours to judge
        line = body[last + 1:]
        try:
            json.loads(line)
            return None
        except ValueError:  # a record cut and followed by the next write's line end
            return start + last + 1
    last = tail.rfind(b"\n")
    if last < 0 and start > 0:
        return None
    return start + last + 1


def repair(path: Path) -> None:
    """Cut a torn last record off the journal at `path`, keeping a copy of the file as it was;
    refuse with the file named when that cannot be done."""
    if torn_tail(path) is None:
        return
    lock = JournalFileSymlinkLock(str(path))
    try:
        lock.acquire()
    except OSError as exc:
        raise StorageError(f"journal {path} ends with a torn record (a crash or a full disk "
                           f"while writing) and cannot be repaired here ({exc.strerror}): copy "
                           "it somewhere writable, or restore a backup") from None
    try:
        offset = torn_tail(path)  # again, under the lock: a writer may have just finished
        if offset is None:
            return
        size = path.stat().st_size
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            shutil.copy2(path, backup)
        except OSError as exc:
            backup.unlink(missing_ok=True)
            raise StorageError(f"journal {path} ends with a torn record ({size - offset} bytes "
                               f"from a write that did not finish) and cannot be repaired: "
                               f"no room for its backup ({exc.strerror}); nothing was changed: "
                               "free some space, then run again") from None
        try:
            with path.open("r+b") as handle:
                handle.truncate(offset)
        except OSError as exc:
            raise StorageError(f"journal {path} ends with a torn record ({size - offset} bytes "
                               f"from a write that did not finish) and cannot be repaired "
                               f"({exc.strerror}); a copy is in {backup}: make it writable, then "
                               "run again") from None
        _log.warning("journal %s ended with a torn record (%d bytes of a write that did not "
                     "finish: a crash or a full disk); removed it, the file as it was is kept "
                     "in %s", path, size - offset, backup)
    finally:
        lock.release()
