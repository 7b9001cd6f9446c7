"""Reading the rows a space declares: bundled sets, synthetic sets, CSV / Parquet tables, and
MNIST-style image sets (IDX files, or the `.npz` that `keras.datasets.mnist` caches).

Nothing is downloaded. Every problem with a file is a one-line `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuner.errors import DataError
from tuner.space import DataSpec

# IDX element types (the third byte of the magic number) -> numpy dtype (big-endian).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class RawData:
    """The rows as read, before any cleaning: features, target and the file's own test part."""

    x: pd.DataFrame | np.ndarray
    y: np.ndarray | pd.Series
    origin: str  # what a message names: the file, or the bundled set
    target: str = "target"
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    class_names: tuple[str, ...] = ()  # bundled sets: names of the class ids 0..k-1
    pixel_scale: float | None = None  # image sets: raw pixel value of full intensity
    report: dict[str, float] = field(default_factory=dict)


def resolve(path: str) -> Path:
    return Path(path).expanduser().absolute()


def signature(spec: DataSpec) -> tuple[Any, ...]:
    """What identifies the rows of `spec` on disk: resolved paths, sizes and modification times,
    so the per-process cache sees a different working folder or a rewritten file."""
    if spec.path is None:
        return ()
    root = resolve(spec.path)
    paths = sorted(root.iterdir()) if spec.source == "idx" and root.is_dir() else [root]
    out: list[Any] = []
    for p in paths:
        try:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


def read_source(spec: DataSpec) -> RawData:
    if spec.kind == "bundled":
        return _bundled(spec.source)
    if spec.kind == "synthetic":
        return _synthetic(spec)
    assert spec.path is not None  # the space parser requires it for file sources
    path = resolve(spec.path)
    if spec.source == "idx":
        return _idx(path)
    if not path.exists():
        raise DataError(f"{spec.path}: file not found")
    if path.is_dir():
        raise DataError(f"{spec.path}: is a folder, not a {spec.source} file")
    if spec.source == "npz":
        return _npz(path, spec.path)
    return _table(path, spec)


def _bundled(name: str) -> RawData:
    """A data set that ships with scikit-learn. Digits, the default space's, is read from its
    file as `load_digits` reads it, without importing scikit-learn (most of a second)."""
    origin = f"{name} (bundled)"
    digits = _sklearn_data_file("digits.csv.gz") if name == "digits" else None
    if digits is not None:
        with gzip.open(digits, "rt", encoding="utf-8") as lines:
            table = np.loadtxt(lines, delimiter=",")
        return RawData(table[:, :-1], table[:, -1].astype(int), origin,
                       class_names=tuple(str(c) for c in range(10)))
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    names = getattr(bunch, "target_names", None)
    return RawData(np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target), origin,
                   class_names=tuple(str(c) for c in names) if names is not None else ())


def _sklearn_data_file(name: str) -> Path | None:
    """A file of scikit-learn's bundled data, found without importing scikit-learn; None if
    it is not where `sklearn.datasets` keeps it."""
    found = importlib.util.find_spec("sklearn")
    folders = list(found.submodule_search_locations or []) if found is not None else []
    return next((p for f in folders if (p := Path(f) / "datasets" / "data" / name).is_file()),
                None)


def _synthetic(spec: DataSpec) -> RawData:
    from sklearn import datasets

    s = spec.synthetic
    assert s is not None
    origin = f"synthetic ({s.samples} rows, {s.features} features, seed {s.seed})"
    if spec.task == "regression":
        x, y = datasets.make_regression(n_samples=s.samples, n_features=s.features,
                                        n_informative=s.informative, noise=s.noise,
                                        random_state=s.seed)
        return RawData(np.asarray(x), np.asarray(y), origin)
    x, y = datasets.make_classification(
        n_samples=s.samples, n_features=s.features, n_informative=s.informative, n_redundant=0,
        n_repeated=0, n_classes=s.classes, n_clusters_per_class=1,
        weights=list(s.weights) or None, flip_y=s.noise, random_state=s.seed)
    return RawData(np.asarray(x), np.asarray(y), origin,
                   class_names=tuple(str(c) for c in range(s.classes)))


def _table(path: Path, spec: DataSpec) -> RawData:
    name = spec.path or str(path)
    try:
        frame = pd.read_csv(path) if spec.source == "csv" else pd.read_parquet(path)
    except Exception as exc:  # pandas, the CSV parser and pyarrow share no error base class
        raise DataError(f"{name}: cannot read as {spec.source.upper()}: {_first_line(exc)}") \
            from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"{name}: no rows")
    target = spec.target or ""
    if target not in frame.columns:
        raise DataError(f"{name}: no target column {target!r}; {columns_of(frame)}")
    return RawData(frame, frame[target], name, target=target)


def _npz(path: Path, name: str) -> RawData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in _NPZ_KEYS if k not in archive.files]
            if missing:
                raise DataError(f"{name}: no array {missing[0]!r}; an image .npz holds "
                                f"{', '.join(_NPZ_KEYS)} (found: {_listing(archive.files)})")
            arrays = {k: archive[k] for k in _NPZ_KEYS}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{name}: cannot read as .npz: {_first_line(exc)}") from None
    return _images(name, arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def _idx(folder: Path) -> RawData:
    name = str(folder)
    if not folder.is_dir():
        raise DataError(f"{name}: {'not a folder' if folder.exists() else 'folder not found'}; "
                        "an idx source is a folder with the four MNIST-style IDX files")
    parts = [_read_idx(_idx_file(folder, part, kind)) for part in ("train", "t10k")
             for kind in ("images", "labels")]
    return _images(name, *parts)


def _idx_file(folder: Path, part: str, kind: str) -> Path:
    dims = 3 if kind == "images" else 1
    for stem in (f"{part}-{kind}-idx{dims}-ubyte", f"{part}-{kind}.idx{dims}-ubyte"):
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"{folder}: no {part}-{kind}-idx{dims}-ubyte[.gz] (the MNIST / "
                    "Fashion-MNIST file names)")


def _read_idx(path: Path) -> np.ndarray:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read: {_first_line(exc)}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: not an IDX file (truncated header)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header says {shape} ({expected} bytes) but the file holds "
                        f"{len(raw) - header} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _images(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
            y_test: np.ndarray) -> RawData:
    for images, labels, part in ((x, y, "train"), (x_test, y_test, "test")):
        if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{name}: {part} images {images.shape} and labels {labels.shape} "
                            "do not match (expected N images and N labels)")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{name}: {part} labels must be integers, got {labels.dtype}")
    for images, part in ((x, "train"), (x_test, "test")):
        if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
            bad = int(images.size - np.isfinite(images).sum())
            raise DataError(f"{name}: {part} images hold {bad} values that are not finite "
                            "(NaN or infinite)")
        if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype,
                                                                        np.complexfloating):
            raise DataError(f"{name}: {part} images must be numbers, got {images.dtype}")
    if x.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{name}: train images {x.shape[1:]} and test images "
                        f"{x_test.shape[1:]} differ in size")
    # Integer pixels are scaled by their full intensity (255 for bytes); floats are kept.
    scale = float(np.iinfo(x.dtype).max) if np.issubdtype(x.dtype, np.integer) else 1.0
    return RawData(x.reshape(len(x), -1), y.astype(np.int64), name, target="label",
                   test_x=x_test.reshape(len(x_test), -1), test_y=y_test.astype(np.int64),
                   pixel_scale=scale)


# What a column name looks like in a table's header. A file that is not a table (a system file,
# a key) gives pandas its first line as the "header", and a message listing the columns would
# print that line: names are listed only when every one of them looks like a name.
_COLUMN_NAME = re.compile(r"^[\w][\w .:()\[\]%/#+-]{0,63}$")


def columns_of(frame: pd.DataFrame) -> str:
    """The columns of a table, for a message; never a line of a file that is not a table."""
    names = [str(c) for c in frame.columns]
    if len(names) >= 2 and all(_COLUMN_NAME.match(n) for n in names):
        return f"columns: {_listing(names)}"
    return (f"the file has {len(names)} column{'s' if len(names) != 1 else ''} whose names do "
            "not look like a table's header (not shown): is it a table with a header row?")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") if names else "none"
