"""Data sets: IDX directories (MNIST and any image size), ``.npz`` files, scikit-learn's bundled
sets; parsing, checksum verification, label and feature checks, scaling to 8-bit codes.

``--data`` (``load_split``) takes: nothing (the shipped MNIST); a directory of the four IDX files
(any image size); a ``.npz`` file with ``x_train, y_train, x_test, y_test`` (any number of
features, integer or float); ``sklearn:digits|breast_cancer|iris|wine`` (scikit-learn's bundled
copies, no download; split by ``sklearn_split``). uint8 features are used as the codes they are;
any other dtype is scaled to codes by a ``FeatureScaling`` fitted on the training split (one range
for images, one per feature for a table) and stored with the model. ``--validation N|F``
(``validation_count``) holds out the last training samples as a validation split.

IDX layout (big-endian): two zero bytes, a type code (only ``0x08`` = uint8 is accepted), the
number of dimensions ``d``, then ``d`` uint32 sizes, then ``prod(sizes)`` payload bytes in C
order. Files may be gzip-compressed (detected by a ``.gz`` suffix or the gzip magic ``1f 8b``).

Checksums: when a dataset directory holds a ``SHA256SUMS`` file (``sha256sum`` format,
``<hex>  <name>`` per line) and ``verify=True``, every file that is loaded must be listed there
and match. A directory *without* ``SHA256SUMS`` is accepted without verification;
``LabeledImages.verified`` records which case applied.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .encoding import FeatureScaling
from .errors import ConfigError, DatasetError

IDX_UINT8 = 0x08
GZIP_MAGIC = b"\x1f\x8b"
CHECKSUM_FILE = "SHA256SUMS"
SPLITS = ("train", "test")
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_CHUNK_BYTES = 1 << 20
_IDX_TYPE_NAMES = {0x08: "uint8", 0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


@dataclass(frozen=True, eq=False)
class LabeledImages:
    """One dataset split. Unpacks as ``images, labels = load_mnist(...)``.

    images: uint8 ``(n, rows * cols)``, one flattened image (or feature vector) of codes per row.
    labels: uint8 ``(n,)``; any value 0..255 from ``load_mnist``, checked by ``load_split``.
    image_shape: ``(rows, cols)`` from the image file header; None for a table of features.
    files: the files that were read (none for scikit-learn's bundled data).
    verified: True when the files were checked against ``SHA256SUMS``.
    scaling: how raw features became the codes in ``images`` (None: they were codes already).
    classes: the checked number of classes (``load_split``); 0 = not checked.
    source: the ``--data`` text the split came from.
    validation: what ``load_split(validation=...)`` held out of the training split (``asked``,
    ``samples``, ``first_index``), None when nothing was.
    """

    images: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, int]
    files: tuple[Path, Path]
    verified: bool
    scaling: FeatureScaling | None = None
    classes: int = 0
    source: str = ""
    validation: dict | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.images, self.labels))

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        """The checked number of classes, else ``max(label) + 1`` (0 for an empty split)."""
        if self.classes:
            return self.classes
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def _is_gzip(path: Path) -> bool:
    if path.suffix == ".gz":
        return True
    with open(path, "rb") as raw:
        return raw.read(2) == GZIP_MAGIC


def _read_at_most(stream: BinaryIO, n_bytes: int) -> bytearray:
    """Read ``n_bytes`` in chunks; fewer only when the stream ends first (callers check)."""
    buf = bytearray()
    while len(buf) < n_bytes:
        chunk = stream.read(min(n_bytes - len(buf), _CHUNK_BYTES))
        if not chunk:
            break
        buf += chunk
    return buf


def _count_remaining(stream: BinaryIO) -> int:
    n_bytes = 0
    while chunk := stream.read(_CHUNK_BYTES):
        n_bytes += len(chunk)
    return n_bytes


def _parse_idx(stream: BinaryIO, path: Path) -> np.ndarray:
    magic = _read_at_most(stream, 4)
    if len(magic) < 4:
        raise DatasetError(f"{path}: not an IDX file: only {len(magic)} bytes, the header needs 4")
    if magic[0] != 0 or magic[1] != 0 or magic[2] != IDX_UINT8:
        found = magic.hex(" ")
        kind = _IDX_TYPE_NAMES.get(magic[2]) if magic[:2] == b"\0\0" else None
        what = f"IDX type {kind}, only uint8 (0x08) is supported" if kind else "not an IDX uint8 file"
        raise DatasetError(f"{path}: bad magic number {found} ({what}; expected 00 00 08 <ndim>)")
    ndim = magic[3]
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions")
    dims_raw = _read_at_most(stream, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DatasetError(
            f"{path}: truncated IDX header: {ndim} dimensions need {4 * ndim} size bytes, found {len(dims_raw)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(bytes(dims_raw), dtype=">u4"))
    expected = math.prod(shape)
    payload = _read_at_most(stream, expected)
    actual = len(payload)
    if actual == expected:
        actual += _count_remaining(stream)
    if actual != expected:
        fault = "truncated payload" if actual < expected else "trailing bytes after payload"
        raise DatasetError(f"{path}: {fault}: shape {shape} needs {expected} payload bytes, found {actual}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX uint8 file (optionally gzipped) into a writable array of its declared shape.

    Raises DatasetError naming the file for a missing file, bad magic / type code, zero
    dimensions, truncated header, payload length != product of dims, or a corrupt gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as stream:
                return _parse_idx(stream, path)
        with open(path, "rb") as stream:
            return _parse_idx(stream, path)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt gzip stream ({exc or type(exc).__name__})") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's raw bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_checksums(path: str | os.PathLike) -> dict[str, str]:
    """Parse a ``sha256sum`` file into ``{file name: lowercase hex digest}``.

    Accepts ``<hex>  <name>`` (text mode) and ``<hex> *<name>`` (binary mode); blank lines are
    skipped. A malformed line or a name listed twice with different digests is a DatasetError.
    """
    path = Path(path)
    sums: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read checksum file: {exc}") from exc
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else ""
        if not sep or not name or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise DatasetError(f"{path}, line {line_no}: expected '<64 hex digits>  <file name>', got {line!r}")
        digest = digest.lower()
        if sums.get(name, digest) != digest:
            raise DatasetError(f"{path}, line {line_no}: {name!r} is listed twice with different digests")
        sums[name] = digest
    return sums


def _verify_checksum(path: Path, sums: dict[str, str], sums_path: Path) -> None:
    expected = sums.get(path.name)
    if expected is None:
        raise DatasetError(f"{path}: not listed in {sums_path} (pass verify=False to load unverified files)")
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if actual != expected:
        raise DatasetError(f"{path}: SHA-256 checksum mismatch: {sums_path} says {expected}, file has {actual}")


def _find_file(data_dir: Path, base_name: str) -> Path:
    candidates = (data_dir / f"{base_name}.gz", data_dir / base_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    names = " or ".join(c.name for c in candidates)
    raise DatasetError(f"{data_dir}: dataset file missing: looked for {names}")


def load_mnist(data_dir: str | os.PathLike, split: str = "train", verify: bool = True) -> LabeledImages:
    """Load one MNIST-format split from ``data_dir``.

    split "train" reads ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte``, "test" reads
    ``t10k-...``; each with or without ``.gz`` (the ``.gz`` file wins when both exist).
    Files are checked against ``data_dir/SHA256SUMS`` when ``verify`` is true and that file
    exists (see the module docstring). Returns a ``LabeledImages`` that unpacks as
    ``images, labels`` with images uint8 ``(n, rows * cols)`` and labels uint8 ``(n,)``.
    """
    if split not in SPLITS:
        raise ConfigError(f"dataset split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is not a directory" if data_dir.exists() else "does not exist"
        raise DatasetError(f"dataset directory {data_dir} {what}")
    image_path, label_path = (_find_file(data_dir, name) for name in MNIST_FILES[split])

    sums_path = data_dir / CHECKSUM_FILE
    verified = verify and sums_path.is_file()
    if verified:
        sums = read_checksums(sums_path)
        _verify_checksum(image_path, sums, sums_path)
        _verify_checksum(label_path, sums, sums_path)

    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3:
        raise DatasetError(f"{image_path}: image file must have 3 dimensions (n, rows, cols), has shape {images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{label_path}: label file must have 1 dimension (n,), has shape {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    n, rows, cols = images.shape
    return LabeledImages(
        images=images.reshape(n, rows * cols),
        labels=labels,
        image_shape=(rows, cols),
        files=(image_path, label_path),
        verified=verified,
    )


def default_data_dir() -> Path:
    """``<repo root>/datasets/mnist``, the MNIST copy shipped next to the package directory.

    Raises DatasetError when it is absent (e.g. a wheel install, which does not carry the data).
    """
    path = Path(__file__).resolve().parent.parent / "datasets" / "mnist"
    if not path.is_dir():
        raise DatasetError(
            f"the bundled MNIST directory {path} is not present (installed without the repository's "
            "datasets/ folder?); pass --data DIR pointing at a directory with the MNIST IDX files"
        )
    return path


SKLEARN_SETS = ("digits", "breast_cancer", "iris", "wine")
SKLEARN_TEST_FRACTION = 0.25
SKLEARN_SPLIT_SEED = 0
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
FIT = "fit"  # load_split(scaling=FIT): fit the scaling on the training split
MAX_CLASSES = 256


@dataclass(frozen=True, eq=False)
class _Raw:
    """Both splits of a source as read, before checks and scaling."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    image_shape: tuple[int, int] | None
    files: dict[str, tuple[Path, ...]]
    verified: bool
    source: str


def sklearn_split(labels: np.ndarray, test_fraction: float = SKLEARN_TEST_FRACTION, seed: int = SKLEARN_SPLIT_SEED):
    """Stratified, seeded train/test split of a set that ships without one: per class (in order),
    its indices permuted by ``default_rng(seed)`` and the first ``round(test_fraction * n_c)``
    go to test. Returns (train_indices in a seeded random order, sorted test_indices)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(test_fraction * len(idx))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    # The training split in a seeded random order, not the file's: iris and wine are stored sorted
    # by class, so their last samples (a validation split, ``validation_count``) would be one class.
    return rng.permutation(np.concatenate(train)), np.sort(np.concatenate(test))


def _read_sklearn(name: str, source: str) -> _Raw:
    if name not in SKLEARN_SETS:
        raise DatasetError(
            f"--data {source}: unknown scikit-learn set {name!r}; choose one of {', '.join(SKLEARN_SETS)}"
        )
    try:
        import sklearn.datasets as skd
    except ImportError:
        raise DatasetError(
            f"--data {source} needs scikit-learn (pip install 'popcount-learn[data]' or scikit-learn)"
        ) from None
    bunch = getattr(skd, f"load_{name}")()
    x = bunch.images if name == "digits" else bunch.data
    y = np.asarray(bunch.target)
    train, test = sklearn_split(y)
    shape = tuple(int(d) for d in x.shape[1:]) if x.ndim == 3 else None
    files = {"train": (), "test": ()}
    return _Raw({"train": x[train], "test": x[test]}, {"train": y[train], "test": y[test]}, shape, files, True, source)


def _read_npz(path: Path, source: str) -> _Raw:
    if not path.is_file():
        raise DatasetError(f"--data {source}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DatasetError(
                    f"{path}: missing key(s) {', '.join(missing)}; a .npz needs {', '.join(NPZ_KEYS)} (has "
                    f"{', '.join(npz.files) or 'none'})"
                )
            arrays = {k: npz[k] for k in NPZ_KEYS}
    except DatasetError:
        raise
    except (OSError, ValueError, zlib.error, EOFError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DatasetError(f"{path}: not a readable .npz file ({reason})") from None
    x, y = {}, {}
    for split in SPLITS:
        xs, ys = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if xs.dtype.kind not in "iuf" or xs.ndim < 1:
            raise DatasetError(f"{path}: x_{split} must be a numeric array (n, features...), got {xs.dtype} {xs.shape}")
        if ys.ndim != 1:
            raise DatasetError(f"{path}: y_{split} must have one dimension (n,), has shape {ys.shape}")
        x[split] = xs if xs.ndim == 3 else xs.reshape(len(xs), math.prod(xs.shape[1:]))
        y[split] = ys
    shape = tuple(int(d) for d in x["train"].shape[1:]) if x["train"].ndim == 3 else None
    verified = False
    sums_path = path.parent / CHECKSUM_FILE
    if sums_path.is_file() and path.name in read_checksums(sums_path):
        _verify_checksum(path, read_checksums(sums_path), sums_path)
        verified = True
    return _Raw(x, y, shape, {"train": (path,), "test": (path,)}, verified, source)


def _read_idx_dir(data_dir: Path, splits, source: str) -> _Raw:
    x, y, files, verified = {}, {}, {}, True
    shape = None
    for split in splits:
        data = load_mnist(data_dir, split)
        x[split] = data.images
        y[split] = data.labels
        files[split] = data.files
        verified &= data.verified
        shape = data.image_shape
    return _Raw(x, y, shape, files, verified, source)


def _read_source(data, splits) -> _Raw:
    if data is None:
        return _read_idx_dir(default_data_dir(), splits, "the shipped MNIST")
    source = os.fspath(data)
    if source.startswith("sklearn:"):
        return _read_sklearn(source.partition(":")[2], source)
    path = Path(source)
    if path.suffix == ".npz":
        return _read_npz(path, source)
    return _read_idx_dir(path, splits, source)


def _where(raw: _Raw, split: str) -> str:
    return f"{raw.source} ({split} split)"


def _check_raw(raw: _Raw, n_classes: int | None) -> int:
    """Counts, emptiness, finiteness, feature counts and labels of every split read; returns the
    number of classes (``n_classes``, or the distinct training labels)."""
    for split in raw.x:
        x, y = raw.x[split], raw.y[split]
        if len(x) != len(y):
            raise DatasetError(f"{_where(raw, split)}: {len(x)} samples but {len(y)} labels")
        if len(x) == 0:
            raise DatasetError(
                f"{_where(raw, split)} holds 0 images (samples); the split is empty, it needs at least one"
            )
        if x[0].size == 0:
            raise DatasetError(f"{_where(raw, split)}: samples have no features")
        if x.dtype.kind == "f":
            bad = ~np.isfinite(x.reshape(len(x), -1))
            if bad.any():
                i, j = (int(v) for v in np.argwhere(bad)[0])
                value = x.reshape(len(x), -1)[i, j]
                raise DatasetError(
                    f"{_where(raw, split)}: sample {i}, feature {j} is {value}; features must be finite "
                    f"({int(bad.sum())} non-finite values in all)"
                )
        if y.dtype.kind == "f":
            off = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
            if len(off):
                raise DatasetError(f"{_where(raw, split)}: label {int(off[0])} is {y[off[0]]}, not an integer")
        elif y.dtype.kind not in "iu":
            raise DatasetError(f"{_where(raw, split)}: labels must be integers, got dtype {y.dtype}")
    widths = {split: raw.x[split][0].size for split in raw.x}
    if len(set(widths.values())) > 1:
        raise DatasetError(f"{raw.source}: the splits have different feature counts {widths}")
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not 2 <= n_classes <= MAX_CLASSES:
            raise ConfigError(f"--classes must be an integer in 2..{MAX_CLASSES}, got {n_classes}")
        classes, said = n_classes, f"--classes {n_classes}"
    elif "train" in raw.y:
        classes = len(np.unique(raw.y["train"]))
        said = f"{classes} distinct training labels"
        if classes > MAX_CLASSES:
            raise DatasetError(f"{_where(raw, 'train')}: {classes} distinct labels, more than {MAX_CLASSES} classes")
    else:
        raise ConfigError("load_split: the number of classes is needed when the training split is not read")
    for split in raw.y:
        y = raw.y[split]
        out = np.flatnonzero((y < 0) | (y > classes - 1))
        if len(out):
            i = int(out[0])
            value = y[i].item()
            raise DatasetError(
                f"{_where(raw, split)}: label {i} is {value:g}, outside 0..{classes - 1} ({said}; "
                f"{len(out)} labels outside in all)"
            )
    if "train" in raw.y and "test" in raw.y:
        absent = np.setdiff1d(np.unique(raw.y["test"]), np.unique(raw.y["train"]))
        if len(absent):
            raise DatasetError(
                f"{raw.source}: class {int(absent[0])} is in the test split but not in the training split"
            )
    return classes


VALIDATION = "validation"


def validation_count(validation, n_train: int) -> int:
    """Training samples held out for validation: 0 for None; ``N`` for an integer N >= 1;
    ``max(1, round(f * n_train))`` for a fraction 0 < f < 1. At least one sample must remain."""
    if validation is None:
        return 0
    if isinstance(validation, bool) or not isinstance(validation, (int, float, np.integer, np.floating)):
        raise ConfigError(f"--validation must be a number of samples or a fraction in (0, 1), got {validation!r}")
    if isinstance(validation, (float, np.floating)) and not float(validation).is_integer():
        if not 0 < validation < 1:
            raise ConfigError(f"--validation as a fraction must be in (0, 1), got {validation}")
        count = max(1, round(float(validation) * n_train))
    else:
        count = int(validation)
        if count < 1:
            raise ConfigError(f"--validation must be at least 1 sample (or a fraction in (0, 1)), got {validation}")
    if count >= n_train:
        raise ConfigError(
            f"--validation {validation} holds out {count} of {n_train} training samples; at least one must remain"
        )
    return count


def _hold_out(raw: _Raw, validation) -> dict:
    """Cut the last ``validation_count`` training samples of ``raw`` off into a validation split
    (in place); returns the record of what was held out. A class of the validation split absent
    from the samples left to train on is refused, as for the test split."""
    x, y = raw.x["train"], raw.y["train"]
    count = validation_count(validation, len(y))
    first = len(y) - count
    absent = np.setdiff1d(np.unique(y[first:]), np.unique(y[:first]))
    if len(absent):
        raise DatasetError(
            f"{raw.source}: --validation {validation} holds out the last {count} training samples, which hold "
            f"every sample of class {int(absent[0])}; hold out fewer"
        )
    raw.x[VALIDATION], raw.y[VALIDATION] = x[first:], y[first:]
    raw.x["train"], raw.y["train"] = x[:first], y[:first]
    return {"asked": validation, "samples": count, "first_index": first}


def _check_limit(limit, flag: str = "--limit") -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{flag} must be a positive number of images, got {limit}")


def _fitted_scaling(raw: _Raw, scaling, split: str = "train"):
    """The scaling every split of ``raw`` is coded with: a given ``FeatureScaling`` as it is;
    None for uint8 data (codes already); ``FIT``: one fitted on ``raw``'s training split (after any
    validation tail was cut off, before ``--limit``), one range for images, one per feature else;
    ``split`` is the split whose dtype decides whether codes need scaling."""
    if isinstance(scaling, FeatureScaling):
        return scaling
    if scaling is not None and scaling != FIT:
        raise ConfigError(f"load_split: scaling must be None, FIT or a FeatureScaling, got {scaling!r}")
    x = raw.x[split]
    if x.dtype == np.uint8:
        return None
    if scaling is None:
        raise DatasetError(
            f"{raw.source}: {x.dtype} features need scaling to 8-bit codes, but the model takes codes as they "
            "are (it was trained on uint8 data)"
        )
    if "train" not in raw.x:
        raise ConfigError("load_split: fitting the scaling needs the training split; read the splits with load_splits")
    return FeatureScaling.fit(raw.x["train"], per_feature=raw.image_shape is None)


def _split_of(raw: _Raw, split: str, scaling, classes: int, held_out, limit) -> LabeledImages:
    x = raw.x[split]
    if scaling is not None:
        codes = scaling.codes(x)
    elif x.dtype == np.uint8:
        codes = x.reshape(len(x), -1)
    else:  # a split of another dtype than the training split's (npz)
        raise DatasetError(f"{_where(raw, split)}: {x.dtype} features, but the training split is uint8 codes")
    labels = raw.y[split].astype(np.uint8)
    if limit is not None:
        codes, labels = codes[:limit], labels[:limit]
    return LabeledImages(
        images=np.ascontiguousarray(codes),
        labels=labels,
        image_shape=raw.image_shape,
        files=raw.files["train" if split == VALIDATION else split],
        verified=raw.verified,
        scaling=scaling,
        classes=classes,
        source=raw.source,
        validation=held_out,
    )


@dataclass(frozen=True, eq=False)
class Splits:
    """What ``load_splits`` read: the training split, the test split and the validation tail
    (None when none was asked for), all coded with the one ``scaling``."""

    train: LabeledImages
    test: LabeledImages
    validation: LabeledImages | None

    def __iter__(self) -> Iterator[LabeledImages | None]:
        return iter((self.train, self.test, self.validation))


def load_splits(
    data=None,
    limit: int | None = None,
    *,
    scaling=FIT,
    n_classes: int | None = None,
    validation=None,
    test_limit: int | None = None,
) -> Splits:
    """Every split a training run needs from ``data``, read once: ``(train, test, validation)``.

    The source is read and checked once (``load_split``'s checks); ``validation`` holds out the
    last training samples, the scaling is resolved once (``FIT``: fitted on the training split
    less that tail, before ``limit``) and every split is coded with it; ``limit`` cuts the
    training split, ``test_limit`` the test split.
    """
    _check_limit(limit)
    _check_limit(test_limit, "the test limit")
    raw = _read_source(data, SPLITS)
    classes = _check_raw(raw, n_classes)
    held_out = _hold_out(raw, validation) if validation is not None else None
    scaling = _fitted_scaling(raw, scaling)
    return Splits(
        train=_split_of(raw, "train", scaling, classes, held_out, limit),
        test=_split_of(raw, "test", scaling, classes, None, test_limit),
        validation=_split_of(raw, VALIDATION, scaling, classes, held_out, None) if held_out else None,
    )


def load_split(
    data=None,
    split: str = "test",
    limit: int | None = None,
    *,
    scaling=None,
    n_classes: int | None = None,
    validation=None,
) -> LabeledImages:
    """One checked split of ``data`` (module docstring: what ``--data`` takes), as 8-bit codes,
    cut to its first ``limit`` samples. A run that needs several splits reads them at once with
    ``load_splits``.

    Both splits are read and checked (counts, empty splits, NaN/inf, labels in
    ``0 .. n_classes - 1`` with ``n_classes`` given or the distinct training labels, no test
    class absent from training), except that an IDX directory with ``n_classes`` given reads only
    ``split``. ``scaling``: None = the data must be codes already (uint8); ``FIT`` = fit a
    ``FeatureScaling`` on the training split when they are not; a ``FeatureScaling`` (a model's) is
    applied. Every fault is one DatasetError / ConfigError line.

    ``validation`` (``validation_count``: N samples or a fraction) holds out the last samples of
    the training split before ``limit`` cuts it: split "train" is what remains (and the scaling is
    fitted on it alone), split "validation" the held-out tail (``LabeledImages.validation``).
    """
    if split not in (*SPLITS, VALIDATION):
        raise ConfigError(f"dataset split must be one of {(*SPLITS, VALIDATION)}, got {split!r}")
    if split == VALIDATION and validation is None:
        raise ConfigError("load_split: the validation split needs validation= (a count or a fraction)")
    _check_limit(limit)
    test_only = n_classes is not None and split == "test"
    raw = _read_source(data, (split,) if test_only else SPLITS)
    classes = _check_raw(raw, n_classes)
    held_out = _hold_out(raw, validation) if validation is not None and not test_only else None
    return _split_of(raw, split, _fitted_scaling(raw, scaling, split), classes, held_out, limit)
