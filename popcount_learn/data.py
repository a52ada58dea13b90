"""MNIST-style IDX datasets: parsing, checksum verification and the shipped MNIST copy.

IDX layout (big-endian): two zero bytes, a type code (only ``0x08`` = uint8 is accepted), the
number of dimensions ``d``, then ``d`` uint32 sizes, then ``prod(sizes)`` payload bytes in C
order. Files may be gzip-compressed (detected by a ``.gz`` suffix or the gzip magic ``1f 8b``).

Checksums: when a dataset directory holds a ``SHA256SUMS`` file (``sha256sum`` format,
``<hex>  <name>`` per line) and ``verify=True``, every file that is loaded must be listed there
and match. A directory *without* ``SHA256SUMS`` is accepted without verification;
``LabeledImages.verified`` records which case applied.
"""

from __future__ import annotations

import dataclasses
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

    images: uint8 ``(n, rows * cols)``, one flattened image per row.
    labels: uint8 ``(n,)``; any value 0..255 is allowed.
    image_shape: ``(rows, cols)`` from the image file header.
    files: the image and label files that were read.
    verified: True when both files were checked against ``SHA256SUMS``.
    """

    images: np.ndarray
    labels: np.ndarray
    image_shape: tuple[int, int]
    files: tuple[Path, Path]
    verified: bool

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.images, self.labels))

    @property
    def n_samples(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        """``max(label) + 1`` (0 for an empty split)."""
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


def load_split(
    data_dir: str | os.PathLike | None = None, split: str = "test", limit: int | None = None
) -> LabeledImages:
    """``load_mnist(data_dir or the shipped MNIST, split)``, cut to its first ``limit`` images.

    What the commands train and evaluate on: a split without images, or with images of no
    pixels, is a DatasetError here (``load_mnist`` itself reads such files as they are).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"--limit must be a positive number of images, got {limit}")
    data = load_mnist(data_dir if data_dir is not None else default_data_dir(), split)
    image_path = data.files[0]
    if data.n_samples == 0:
        raise DatasetError(f"{image_path} holds 0 images; the {split} split needs at least one")
    if data.images.shape[1] == 0:
        rows, cols = data.image_shape
        raise DatasetError(f"{image_path} holds images of {rows} x {cols} pixels; they need at least one pixel")
    if limit is None:
        return data
    return dataclasses.replace(data, images=data.images[:limit], labels=data.labels[:limit])
