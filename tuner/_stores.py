"""What the study storage (`search`) and the tracking store (`tracking`) share: creating an
SQLite file safely when several processes start at once, and the SQL driver of a database URL.

Two `tuner run` started together in an empty folder both find no `mlflow.db` (or no SQLite
study storage) and both create its tables: one fails (`table studies already exists`, an Alembic
migration that finds its row gone) and the store can be left half-migrated. Creation therefore
happens under an exclusive lock on the store's folder: the second process waits, then finds the
store complete. The lock is `flock` on the folder itself, so no lock file is left behind, and
it is dropped by the kernel if its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path

from tuner.errors import installed

SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")


def scheme_of(url: str) -> str:
    """`postgresql` for `postgresql+psycopg2://...`; '' for a plain path."""
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def sqlite_path(url: str) -> Path | None:
    """The file of an `sqlite:///` URL (relative or absolute); None for memory or another
    scheme."""
    if scheme_of(url) != "sqlite":
        return None
    path = url.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel, sqlite:////abs
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def existing_folder(path: Path) -> Path:
    """The deepest folder of `path`'s parents that exists (stores create missing folders)."""
    folder = path.absolute().parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


# File systems where another host (or the host of a virtual machine) may open the same file:
# SQLite's write-ahead log needs memory shared by every process that opens the database,
# which such file systems cannot give.
_NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre",
    "gpfs", "beegfs", "orangefs", "davfs", "fuse.sshfs", "fuse.s3fs", "fuse.rclone",
    "fuse.gcsfuse", "fuse.glusterfs", "fuse.ceph", "fuse.juicefs", "fuse.goofys", "fuse.davfs",
    # shared folders of WSL 1, VirtualBox, Parallels, VMware, Docker Desktop and other VMs
    "drvfs", "vboxsf", "prl_fs", "vmhgfs", "fuse.vmhgfs-fuse", "fuse.grpcfuse", "virtiofs"})


def on_network_filesystem(path: Path, mounts: str | None = None) -> bool:
    """Whether `path` (or the deepest of its folders that exists) lies on a network file system,
    by the longest mount point in `mounts` (Linux's /proc/mounts) that holds it; False where
    the mounts cannot be read."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    target = os.path.realpath(path if path.is_dir() else existing_folder(path))
    longest, fstype = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # The kernel writes a space in a mount point as \040 (octal), and so on.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(longest):
            longest, fstype = point, fields[2]
    return fstype in _NETWORK_FILESYSTEMS


@contextlib.contextmanager
def creation_lock(path: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on the folder of the SQLite file `path` (None: no lock) while the
    store is opened for the first time. Where the file system cannot lock (some network file
    systems), creation goes on unlocked, as before."""
    if path is None:
        yield
        return
    try:
        fd = os.open(existing_folder(path), os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def driver_url(url: str) -> str:
    """`postgresql://` with the PostgreSQL driver that is installed: SQLAlchemy 2.1 assumes
    psycopg 3 for a bare `postgresql://`, and `postgres://` is not a name it knows."""
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for driver in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(driver) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


# Database -> driver modules SQLAlchemy can use for it; a URL may name one (`mysql+pymysql://`).
_DRIVERS = {"postgresql": ("psycopg", "psycopg2", "pg8000"),
            "mysql": ("MySQLdb", "pymysql", "mysql.connector"),
            "mssql": ("pyodbc", "pymssql")}
_NAMED = {"mysqldb": "MySQLdb", "mysqlconnector": "mysql.connector"}


def missing_driver(url: str) -> str | None:
    """What is missing when no Python driver for `url`'s database is installed, else None."""
    scheme = "postgresql" if scheme_of(url) == "postgres" else scheme_of(url)
    if scheme not in _DRIVERS:
        return None
    named = url.split("://", 1)[0].partition("+")[2].lower()
    wanted = (_NAMED.get(named, named),) if named else _DRIVERS[scheme]
    if any(installed(module) for module in wanted):
        return None
    package = {"postgresql": "psycopg2-binary", "mysql": "pymysql", "mssql": "pyodbc"}[scheme]
    return (f"no {scheme} driver is installed ({', '.join(wanted)}; e.g. pip install "
            f"{named or package})")


