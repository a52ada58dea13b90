"""HDF5 files: exact-network checkpoints and weight images. The only module that imports h5py.

Both kinds share a root header (attributes ``format = "popcount-learn"``, ``format_version``,
``kind``) so that ``load_model`` can dispatch on what a file declares itself to be. The layouts
are documented in ``docs/weight-image.md``; they are readable with plain h5py or ``h5dump``.

Integrity: every file is **sealed**: its first 512 bytes (an HDF5 user block, which HDF5 and
h5dump skip) hold the SHA-256 and length of everything after them, so that every byte of the
file, metadata included, is covered. A reader verifies the seal on the bytes in memory before
HDF5 parses anything, and parses those same bytes, so a damaged or edited file never reaches
HDF5's metadata code. Inside, every dataset carries a ``sha256`` attribute (hex digest of its
values as little-endian bytes in C order) and a weight image carries ``crc32``, the CRC-32 of
``weight_image.upload_bytes`` (the exact stream a board receives). Files written before the
seal are verified against a ``SHA256SUMS`` file beside them when it lists them (the shipped
models), else read as before (datasets and CRC only) with HDF5 confined to a child process
with a deadline. Readers refuse anything they cannot read exactly (``ModelFileError``, one
line); nothing is cast or defaulted.

Writes are atomic: the file is written under a temporary name in the target's directory,
sealed, fsynced and renamed over the target, so an interrupted write leaves the old file
untouched; a target that is not a regular file (a FIFO, a device) is refused, never replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import re
import secrets
import selectors
import signal
import stat
import time
import warnings

import h5py
import numpy as np

from . import __version__
from .datapath import DatapathConfig
from .encoding import FeatureScaling, InputEncoding, SpikeEncoding
from .errors import ConfigError, DatasetError, ModelFileError
from .learning import LearningConfig
from .network import ExactNetwork
from .weight_image import LayerImage, WeightImage, image_crc32, threshold_dtype, weight_dtype

FORMAT_NAME = "popcount-learn"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KIND_NETWORK = "exact-network"
KIND_WEIGHT_IMAGE = "weight-image"
KINDS = (KIND_NETWORK, KIND_WEIGHT_IMAGE)

# The seal: an HDF5 user block of SEAL_BYTES at the start of the file (docs/weight-image.md).
SEAL_BYTES = 512
SEAL_FIRST_LINE = b"popcount-learn sealed HDF5 1\n"
_SEAL_TEXT = re.compile(rb"popcount-learn sealed HDF5 1\nsha256 ([0-9a-f]{64})\nbytes ([1-9][0-9]{0,15})\n")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
CHECKSUM_FILE = "SHA256SUMS"  # beside files written before the seal (datasets/pretrained)
MAX_FILE_BYTES = 1 << 30  # larger than any model this format holds; refused before reading

# How a loaded file's content was verified (ModelFile.integrity).
SEALED = "sealed"
LISTED = "listed"
UNSEALED = "unsealed"
INTEGRITY_TEXT = {
    SEALED: "sealed: SHA-256 of the whole file verified before parsing",
    LISTED: "written before files were sealed; the whole file matches its SHA256SUMS entry",
    UNSEALED: "written before files were sealed and not in a SHA256SUMS: only the datasets' SHA-256 "
    "(and a weight image's CRC-32) are verified; learning rule, scales and provenance are not covered",
}
# An unsealed, unlisted file is parsed by HDF5 in a child process that must finish in this time,
# and may not grow its address space by more than this (a damaged size must not fill the machine).
UNVERIFIED_PARSE_DEADLINE_S = 10.0
UNVERIFIED_PARSE_MEMORY_BYTES = 2 << 30

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INTEGRITY_TEXT",
    "KIND_NETWORK",
    "KIND_WEIGHT_IMAGE",
    "SUPPORTED_VERSIONS",
    "ModelFile",
    "dataset_sha256",
    "load_model",
    "load_model_and_metadata",
    "load_network",
    "load_weight_image",
    "read_model_file",
    "save_network",
    "save_weight_image",
    "seal_block",
]


def dataset_sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of an array's values as little-endian bytes in C (row-major) order."""
    a = np.asarray(array)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"dataset_sha256 covers numeric arrays only, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return hashlib.sha256(a.tobytes(order="C")).hexdigest()


def seal_block(hdf5_part: bytes) -> bytes:
    """The 512-byte seal of a file whose HDF5 part (everything after the seal) is ``hdf5_part``:
    ``popcount-learn sealed HDF5 1\\nsha256 <hex>\\nbytes <length>\\n`` padded with zero bytes."""
    text = SEAL_FIRST_LINE + f"sha256 {hashlib.sha256(hdf5_part).hexdigest()}\nbytes {len(hdf5_part)}\n".encode()
    return text.ljust(SEAL_BYTES, b"\0")


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _os_reason(exc: BaseException) -> str:
    """One line for an OSError, also for h5py's multi-line ones ("No space left on device")."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"error message = '([^']*)'", str(exc))
    return found.group(1) if found else _one_line(exc)


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


# --- writing ---------------------------------------------------------------------------------


def save_network(path, network: ExactNetwork, metadata: dict | None = None) -> None:
    """Write an exact float network and its JSON-able training ``metadata`` atomically.

    Layer ``k``'s weights go to dataset ``layers/k/weights`` in their own float dtype.
    Raises ConfigError for non-float weights or metadata that JSON cannot hold, ModelFileError
    when the file cannot be written.
    """
    if not isinstance(network, ExactNetwork):
        raise TypeError(f"save_network needs an ExactNetwork, got {type(network).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise ConfigError(f"metadata must be a dict (stored as a JSON object), got {type(metadata).__name__}")
    if min(network.topology) < 1:
        # The reader requires every layer size >= 1; do not write a file it would refuse.
        raise ConfigError(f"cannot save a network with an empty layer: topology {network.topology}")
    metadata_json = json.dumps(_json_ready({} if metadata is None else metadata, "metadata"))
    for k, w in enumerate(network.weights):
        if w.dtype not in (np.float32, np.float64):
            raise ConfigError(f"layer {k}: weights must be float32 or float64 to be saved, got {w.dtype}")
    enc = network.encoding

    def fill(f: h5py.File) -> None:
        _write_header(f, KIND_NETWORK)
        f.attrs["topology"] = np.asarray(network.topology, dtype=np.int64)
        f.attrs["metadata_json"] = metadata_json
        _write_encoding(f.create_group("encoding"), enc)
        for k, w in enumerate(network.weights):
            _write_dataset(f.create_group(f"layers/{k}"), "weights", np.asarray(w))

    _atomic_write(path, fill)


def save_weight_image(path, image: WeightImage) -> None:
    """Write a weight image atomically (layout and checksums: docs/weight-image.md).

    ``weights_lsb`` is stored as int8 (weight_bits <= 8) or int16; ``threshold_lsb`` in the
    smallest signed type that fits membrane_bits. Raises ConfigError for provenance that JSON
    cannot hold, ModelFileError when the file cannot be written.
    """
    if not isinstance(image, WeightImage):
        raise TypeError(f"save_weight_image needs a WeightImage, got {type(image).__name__}")
    spec = image.spec
    provenance_json = json.dumps(_json_ready(image.provenance, "provenance"))
    crc = image_crc32(image)
    wdtype, tdtype = weight_dtype(spec), threshold_dtype(spec)

    def fill(f: h5py.File) -> None:
        _write_header(f, KIND_WEIGHT_IMAGE)
        f.attrs["topology"] = np.asarray(image.topology, dtype=np.int64)
        f.attrs["crc32"] = np.uint32(crc)
        f.attrs["provenance_json"] = provenance_json
        if image.encoding is not None:  # else the spec's binary fields state it (docs/weight-image.md)
            _write_encoding(f.create_group("input_encoding"), image.encoding)
        for group_name, config in (("datapath", spec), ("learning", image.learning)):
            if config is None:
                continue  # an inference-only image has no learning rule
            g = f.create_group(group_name)
            for fld in dataclasses.fields(config):
                _put_scalar_attr(g.attrs, fld.name, getattr(config, fld.name), f"{group_name}.{fld.name}")
        for k, layer in enumerate(image.layers):
            lg = f.create_group(f"layers/{k}")
            # Exact: __post_init__ checked that every weight fits weight_bits.
            _write_dataset(lg, "weights_lsb", np.asarray(layer.weights_lsb).astype(wdtype))
            lg.attrs["threshold_lsb"] = tdtype.type(layer.threshold_lsb)
            lg.attrs["scale"] = np.float64(layer.scale)

    _atomic_write(path, fill)


def _write_encoding(g: h5py.Group, enc: InputEncoding) -> None:
    """One attribute per scalar field (a dark pixel that never spikes: ``dark_time = +inf``);
    a feature scaling as datasets ``scaling_low`` / ``scaling_high`` (float64)."""
    for name, value in enc.to_dict().items():
        if name == "dark_time":
            value = math.inf if value is None else value
        _put_scalar_attr(g.attrs, name, value, f"encoding.{name}")
    if enc.scaling is not None:
        _write_dataset(g, "scaling_low", np.asarray(enc.scaling.low, dtype=np.float64))
        _write_dataset(g, "scaling_high", np.asarray(enc.scaling.high, dtype=np.float64))


def _write_header(f: h5py.File, kind: str) -> None:
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = np.int64(FORMAT_VERSION)
    f.attrs["kind"] = kind
    f.attrs["writer"] = f"popcount-learn {__version__}"


def _write_dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    """Contiguous, uncompressed, little-endian dataset with its ``sha256`` attribute."""
    data = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    ds = group.create_dataset(name, data=data)
    ds.attrs["sha256"] = dataset_sha256(data)


def _put_scalar_attr(attrs, name: str, value, where: str) -> None:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: boolean fields have no file representation yet")
    if isinstance(value, (int, np.integer)):
        attrs[name] = np.int64(value)
    elif isinstance(value, (float, np.floating)):
        attrs[name] = np.float64(value)
    elif isinstance(value, str):
        attrs[name] = value
    else:
        raise TypeError(f"{where}: cannot store a {type(value).__name__} as an attribute")


def _json_ready(value, where: str):
    """``value`` as plain JSON types; numpy scalars become Python numbers, tuples lists.

    Anything else (arrays, objects, non-string keys) raises ConfigError naming its place.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: key {key!r} is not a string (JSON keys must be strings)")
            out[key] = _json_ready(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_ready(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ConfigError(
        f"{where}: a {type(value).__name__} cannot be stored as JSON "
        "(use numbers, strings, booleans, None, lists and dicts; arrays via .tolist())"
    )


def replaceable_target(path) -> str:
    """The path a save to ``path`` writes: ``path`` itself, or the file a symbolic link at
    ``path`` points to. ModelFileError if something other than a regular file is there (a FIFO,
    a device, a directory): the rename would destroy it."""
    path = os.fspath(path)
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write: {_os_reason(exc)}") from None
    if not stat.S_ISREG(mode):
        raise ModelFileError(f"{path}: is {_file_type(mode)}, not a regular file; refusing to replace it")
    return target


def _atomic_write(path, fill) -> None:
    """Run ``fill(h5py.File)`` on a temporary file beside the target, seal it, fsync, rename it
    onto the target (``replaceable_target(path)``).

    On any exception (KeyboardInterrupt included) the temporary file is removed and an
    existing target is left as it was.
    """
    path = os.fspath(path)
    target = replaceable_target(path)
    directory = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never clobber a file we did not create; mode 0o666 lets the umask decide.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write: {_os_reason(exc)}") from None
    try:
        with h5py.File(tmp, "w", userblock_size=SEAL_BYTES) as f:
            fill(f)
        with open(tmp, "r+b") as raw:
            raw.seek(SEAL_BYTES)
            seal = seal_block(raw.read())
            raw.seek(0)
            raw.write(seal)
            raw.flush()
            os.fsync(raw.fileno())
        replaceable_target(path)  # again: the check before the write may be minutes old
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ModelFileError(f"{path}: cannot write: {_os_reason(exc)}") from None
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; not every platform or file system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A loaded file: the model, its metadata (a weight image's provenance) and how its content
    was verified (``SEALED``, ``LISTED`` or ``UNSEALED``; ``INTEGRITY_TEXT`` says what each means)."""

    model: ExactNetwork | WeightImage
    metadata: dict
    integrity: str

    @property
    def fully_verified(self) -> bool:
        """True when every byte of the file was checked (sealed, or listed in SHA256SUMS)."""
        return self.integrity in (SEALED, LISTED)


def read_model_file(path, expected_kind: str | None = None) -> ModelFile:
    """Read and verify a model file of either kind (or of ``expected_kind``). Faults raise
    ModelFileError, one line starting with the path."""
    path = os.fspath(path)
    data = _read_bytes(path)
    integrity = _verify(path, data)
    if integrity == UNSEALED:
        tree = _read_tree_in_child(path, data, UNVERIFIED_PARSE_DEADLINE_S)
    else:
        tree = _read_tree_here(path, data)
    r = _Reader(path, tree, integrity)
    kind = r.check_header(expected_kind)
    if kind == KIND_WEIGHT_IMAGE:
        image = r.weight_image()
        return ModelFile(image, image.provenance, integrity)
    network, metadata = r.network()
    return ModelFile(network, metadata, integrity)


def load_network(path) -> tuple[ExactNetwork, dict]:
    """Read an exact-network file: ``(network, metadata)``. Faults raise ModelFileError."""
    loaded = read_model_file(path, KIND_NETWORK)
    return loaded.model, loaded.metadata


def load_weight_image(path) -> WeightImage:
    """Read a weight image, verifying the seal, checksums, shapes, bit widths and the CRC-32."""
    return read_model_file(path, KIND_WEIGHT_IMAGE).model


def load_model_and_metadata(path) -> tuple[ExactNetwork | WeightImage, dict]:
    """Read whatever model the file declares, in one pass: ``(network, metadata)`` for an
    exact-network file, ``(image, image.provenance)`` for a weight image."""
    loaded = read_model_file(path)
    return loaded.model, loaded.metadata


def load_model(path) -> ExactNetwork | WeightImage:
    """Read whatever model the file declares: an ExactNetwork or a WeightImage."""
    return read_model_file(path).model


# -- the bytes and their verification --


def _read_bytes(path: str) -> bytes:
    """The whole file, read through one descriptor that is checked to be a regular file (a
    FIFO or a device is never read: it could block forever or never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path}: is a directory, not a model file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read: {_os_reason(exc)}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise ModelFileError(f"{path}: cannot read: {_os_reason(exc)}") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ModelFileError(f"{path}: is a directory, not a model file")
        if not stat.S_ISREG(st.st_mode):
            raise ModelFileError(f"{path}: is {_file_type(st.st_mode)}, not a model file")
        raise ModelFileError(f"{path}: {st.st_size:,} bytes, more than any model file ({MAX_FILE_BYTES:,})")
    with os.fdopen(fd, "rb") as raw:
        try:
            data = raw.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot read: {_os_reason(exc)}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ModelFileError(f"{path}: more than {MAX_FILE_BYTES:,} bytes, more than any model file")
    return data


def _verify(path: str, data: bytes) -> str:
    """How ``data`` is verified before parsing (SEALED / LISTED) or that it cannot be (UNSEALED);
    ModelFileError when a seal or a SHA256SUMS entry does not match."""
    if data[: len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
        return _verify_listed(path, data)
    if data.startswith(SEAL_FIRST_LINE[:14]) or data[SEAL_BYTES : SEAL_BYTES + 8] == HDF5_SIGNATURE:
        _verify_seal(path, data)
        return SEALED
    if not data:
        raise ModelFileError(f"{path}: not an HDF5 file (empty); expected a popcount-learn network or weight image")
    offset = 1024
    while offset + 8 <= len(data):
        if data[offset : offset + 8] == HDF5_SIGNATURE:
            raise ModelFileError(
                f"{path}: an HDF5 file with a {offset}-byte user block that is not a popcount-learn seal; "
                "not a popcount-learn file"
            )
        offset *= 2
    raise ModelFileError(
        f"{path}: not an HDF5 file (no HDF5 signature); expected a popcount-learn network or weight image"
    )


def _verify_seal(path: str, data: bytes) -> None:
    block = data[:SEAL_BYTES]
    found = _SEAL_TEXT.match(block)
    if found is None or any(block[found.end() :]) or len(block) < SEAL_BYTES:
        raise ModelFileError(
            f"{path}: damaged seal (the first {SEAL_BYTES} bytes are not a popcount-learn seal); the file is damaged"
        )
    digest, length = found.group(1).decode(), int(found.group(2))
    held = len(data) - SEAL_BYTES
    if held < length:
        raise ModelFileError(f"{path}: truncated: the seal says {length:,} bytes follow it, the file holds {held:,}")
    if held > length:
        raise ModelFileError(
            f"{path}: grown after it was written (appended to or edited): the seal says {length:,} bytes "
            f"follow it, the file holds {held:,}"
        )
    computed = hashlib.sha256(memoryview(data)[SEAL_BYTES:]).hexdigest()
    if computed != digest:
        raise ModelFileError(
            f"{path}: content SHA-256 mismatch: the seal says {digest[:16]}..., the bytes give {computed[:16]}...; "
            "the file was damaged or edited after it was written (popcount-learn refuses edited files)"
        )


def _verify_listed(path: str, data: bytes) -> str:
    """An unsealed file: LISTED when ``SHA256SUMS`` beside it lists it (and it matches), else UNSEALED."""
    from .data import read_checksums  # the sha256sum-format parser of the MNIST copy

    sums_path = os.path.join(os.path.dirname(os.path.abspath(path)), CHECKSUM_FILE)
    if not os.path.isfile(sums_path):
        return UNSEALED
    try:
        expected = read_checksums(sums_path).get(os.path.basename(path))
    except DatasetError as exc:
        raise ModelFileError(f"{path}: cannot verify it: {exc}") from None
    if expected is None:
        return UNSEALED
    computed = hashlib.sha256(data).hexdigest()
    if computed != expected:
        raise ModelFileError(
            f"{path}: SHA-256 {computed[:16]}... differs from {expected[:16]}... listed in {sums_path}; "
            "the file was damaged or altered"
        )
    return LISTED


# -- HDF5 into a plain tree --
#
# The tree: {"name", "attrs": {name: value}, "groups": {name: tree}, "datasets": {name:
# {"name", "attrs", "dtype", "data"}}, "members": [every member name]}. Values are numpy
# scalars and arrays, str, or _Unsupported; nothing in it refers to h5py any more, so checking
# it cannot touch HDF5 again and it can cross a process boundary (pickle).

_MAX_MEMBERS = 256
_MAX_DEPTH = 4
_MAX_ATTRIBUTES = 256
_MAX_ATTRIBUTE_ELEMENTS = 4096
_MAX_ATTRIBUTE_BYTES = 64 << 20


class _Unreadable(Exception):
    """HDF5 could not read a structure (its one-line reason)."""


@dataclasses.dataclass(frozen=True)
class _Unsupported:
    """An attribute value of a type the format never writes (compound, reference, empty, ...)."""

    what: str


def _attribute_value(value):
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (str, np.bool_, np.integer, np.floating)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value
        if value.dtype.kind in "SUO" and all(isinstance(v, (str, bytes, np.bytes_, np.str_)) for v in value.flat):
            return np.array([_attribute_value(v) for v in value.flat], dtype=object).reshape(value.shape)
        return _Unsupported(f"array of {value.dtype}")
    return _Unsupported(type(value).__name__)


def _read_attributes(obj, where: str) -> dict:
    names = list(obj.attrs)
    if len(names) > _MAX_ATTRIBUTES:
        raise _Unreadable(f"{where} has {len(names)} attributes")
    out = {}
    for name in names:
        aid = h5py.h5a.open(obj.id, name.encode("utf-8"))
        shape = aid.shape
        elements = math.prod(shape) if shape else 1
        if elements > _MAX_ATTRIBUTE_ELEMENTS or aid.get_storage_size() > _MAX_ATTRIBUTE_BYTES:
            raise _Unreadable(f"attribute {name!r} on {where} claims {elements:,} elements")
        out[name] = _attribute_value(obj.attrs[name])
    return out


def _read_dataset(ds, where: str, file_bytes: int) -> dict:
    node = {"name": where, "attrs": _read_attributes(ds, where), "dtype": ds.dtype, "data": None}
    dtype = ds.dtype
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None or ds.shape is None:
        return node  # the checks name the type; the values are never needed
    nbytes = math.prod(ds.shape) * dtype.itemsize
    if nbytes > file_bytes:
        raise _Unreadable(f"dataset {where} claims shape {ds.shape} ({nbytes:,} bytes), more than the file holds")
    plist = ds.id.get_create_plist()
    if plist.get_external_count():
        raise _Unreadable(f"dataset {where} keeps its data in another file")
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = ds.id.get_offset()
        if nbytes and (offset is None or offset + nbytes > file_bytes):
            raise _Unreadable(f"dataset {where}: its data lies outside the file")
    elif layout != h5py.h5d.COMPACT:
        raise _Unreadable(f"dataset {where} is stored chunked or virtual; the format stores datasets contiguous")
    node["data"] = np.asarray(ds[()])
    return node


def _read_group(group, where: str, depth: int, file_bytes: int) -> dict:
    node = {"name": where, "attrs": _read_attributes(group, where), "groups": {}, "datasets": {}, "members": []}
    names = list(group)
    if len(names) > _MAX_MEMBERS:
        raise _Unreadable(f"group {where} has {len(names)} members")
    for name in names:
        path = f"{where.rstrip('/')}/{name}"
        node["members"].append(name)
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise _Unreadable(f"{path} is a {type(link).__name__}; the format has no links")
        obj = group.get(name)
        if isinstance(obj, h5py.Group):
            if depth >= _MAX_DEPTH:
                raise _Unreadable(f"group {path} is nested deeper than the format goes")
            node["groups"][name] = _read_group(obj, path, depth + 1, file_bytes)
        elif isinstance(obj, h5py.Dataset):
            node["datasets"][name] = _read_dataset(obj, path, file_bytes)
    return node


def _read_tree(data: bytes) -> dict:
    """Every group, dataset and attribute of the HDF5 file in ``data`` as a plain tree;
    _Unreadable (one line) for anything HDF5 fails on or the format cannot hold."""
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            return _read_group(f, "/", 0, len(data))
    except _Unreadable:
        raise
    except Exception as exc:  # h5py raises OSError, RuntimeError, KeyError, TypeError, ... on damage
        raise _Unreadable(_one_line(f"{type(exc).__name__}: {exc}")) from None


def _damaged(path: str, reason: str) -> ModelFileError:
    return ModelFileError(f"{path}: truncated or damaged HDF5 file ({reason})")


def _read_tree_here(path: str, data: bytes) -> dict:
    """Parse verified bytes in this process."""
    try:
        return _read_tree(data)
    except _Unreadable as exc:
        raise _damaged(path, str(exc)) from None


def _read_tree_in_child(path: str, data: bytes, deadline_s: float) -> dict:
    """Parse unverified bytes in a forked child that must answer within ``deadline_s``.

    HDF5 can loop on damaged metadata (inside C, holding the GIL, deaf to Ctrl-C); a child
    that overruns is killed and the file refused. Where fork is not available the bytes are
    parsed here, unbounded.
    """
    if not hasattr(os, "fork"):
        return _read_tree_here(path, data)
    read_end, write_end = os.pipe()
    # h5py's global lock is held across the fork, so that no other thread of this process holds
    # it in the child (where that thread does not exist); the child releases its copy itself.
    with _h5py_lock(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "fork() in a threaded process"
        pid = os.fork()
    if pid == 0:  # the child: parse, send the tree or the reason, never return
        try:
            os.close(read_end)
            _limit_address_space(UNVERIFIED_PARSE_MEMORY_BYTES + 4 * len(data))
            try:
                result = ("tree", _read_tree(data))
            except _Unreadable as exc:
                result = ("unreadable", str(exc))
            except BaseException as exc:
                result = ("unreadable", _one_line(f"{type(exc).__name__}: {exc}"))
            with os.fdopen(write_end, "wb") as out:
                out.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    selector = selectors.DefaultSelector()
    try:
        selector.register(read_end, selectors.EVENT_READ)
        deadline = time.monotonic() + deadline_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _damaged(path, f"HDF5 did not finish reading its structure within {deadline_s:g} s")
            if selector.select(left):
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        selector.close()
        os.close(read_end)
        _end_child(pid)
    try:
        kind, value = pickle.loads(b"".join(chunks))
    except Exception:
        raise _damaged(path, "HDF5 crashed reading its structure") from None
    if kind != "tree":
        raise _damaged(path, value)
    return value


def _h5py_lock():
    """h5py's global lock (``h5py._objects.phil``), or no lock if this h5py has none by that name."""
    try:
        from h5py._objects import phil
    except ImportError:
        return contextlib.nullcontext()
    return phil


def _limit_address_space(extra_bytes: int) -> None:
    """Let this process grow by at most ``extra_bytes`` of address space (Linux; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        import resource

        with open("/proc/self/statm") as f:
            now = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = now + extra_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _end_child(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


# -- checking the tree --


def _plain(value):
    """Attribute value as a plain Python scalar where it is one; anything else unchanged."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


class _Reader:
    """The tree of one file plus its path, so that every fault names the file."""

    def __init__(self, path: str, tree: dict, integrity: str):
        self.path = path
        self.f = tree
        self.integrity = integrity

    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {_one_line(message, 400)}")

    # -- generic pieces --

    def attr(self, obj, name: str, *, array: bool = False):
        """Attribute ``name`` as a plain scalar; an array only where ``array`` allows one."""
        where = "root" if obj["name"] == "/" else obj["name"]
        if name not in obj["attrs"]:
            raise self.fail(f"missing attribute {name!r} on {where}")
        value = _plain(obj["attrs"][name])
        if isinstance(value, _Unsupported):
            raise self.fail(f"attribute {name!r} on {where} has a type the format never writes ({value.what})")
        if isinstance(value, np.ndarray) and not array:
            raise self.fail(f"attribute {name!r} on {where} must be a scalar, got an array of shape {value.shape}")
        return value

    def int_attr(self, obj, name: str) -> int:
        value = self.attr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"attribute {name!r} on {obj['name']} must be an integer, got {value!r}")
        return value

    def group(self, parent, name: str) -> dict:
        obj = parent["groups"].get(name)
        if obj is None:
            raise self.fail(f"missing group {parent['name'].rstrip('/')}/{name}")
        return obj

    def dataset(self, group, name: str, dtype_ok, expected: str) -> np.ndarray:
        """Read ``group/name`` after checking its dtype with ``dtype_ok`` and its SHA-256."""
        obj = group["datasets"].get(name)
        if obj is None:
            raise self.fail(f"missing dataset {group['name']}/{name}")
        if not dtype_ok(obj["dtype"]) or obj["data"] is None:
            raise self.fail(f"dataset {obj['name']} has dtype {obj['dtype']}, expected {expected}")
        data = obj["data"]
        stored = self.attr(obj, "sha256")
        computed = dataset_sha256(data)
        if stored != computed:
            raise self.fail(
                f"SHA-256 mismatch in dataset {obj['name']}: stored {str(stored)[:16]}..., "
                f"computed {computed[:16]}...; the data is corrupted"
            )
        return data

    def json_attr(self, name: str) -> dict:
        text = self.attr(self.f, name)
        if not isinstance(text, str):
            raise self.fail(f"attribute {name!r} must be a JSON string, got {type(text).__name__}")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise self.fail(f"attribute {name!r} is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise self.fail(f"attribute {name!r} must hold a JSON object, got {type(value).__name__}")
        return value

    def check_header(self, expected_kind: str | None) -> str:
        if "format" not in self.f["attrs"]:
            raise self.fail("an HDF5 file, but not a popcount-learn file (no 'format' attribute at the root)")
        fmt = self.attr(self.f, "format")
        if fmt != FORMAT_NAME:
            raise self.fail(f"an HDF5 file of format {fmt!r}, not a popcount-learn file")
        version = self.int_attr(self.f, "format_version")
        if version not in SUPPORTED_VERSIONS:
            raise self.fail(
                f"format version {version} is not supported; popcount-learn {__version__} reads "
                f"version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}"
            )
        kind = self.attr(self.f, "kind")
        if kind not in KINDS:
            raise self.fail(f"unknown kind {kind!r}; expected one of {KINDS}")
        if expected_kind is not None and kind != expected_kind:
            raise self.fail(f"file kind is {kind!r}, expected {expected_kind!r} (load_model reads either)")
        return kind

    def topology(self) -> tuple[int, ...]:
        value = self.attr(self.f, "topology", array=True)
        topo = np.asarray(value)
        if topo.ndim != 1 or topo.dtype.kind not in "iu" or len(topo) < 2 or np.any(topo < 1):
            raise self.fail(f"attribute 'topology' must be >= 2 positive integers, got {value!r}")
        return tuple(int(n) for n in topo)

    def layer_groups(self, n_layers: int) -> list[dict]:
        layers = self.group(self.f, "layers")
        names = sorted(layers["members"])
        expected = sorted(str(k) for k in range(n_layers))
        if names != expected:
            raise self.fail(f"group /layers holds {names}, but the topology has {n_layers} layer(s): {expected}")
        return [self.group(layers, str(k)) for k in range(n_layers)]

    def check_shape(self, k: int, name: str, data: np.ndarray, topology: tuple[int, ...]) -> None:
        expected = (topology[k] + 1, topology[k + 1])
        if data.shape != expected:
            raise self.fail(
                f"layer {k}: {name} has shape {data.shape}, but topology {topology} needs {expected} "
                "(n_pre + 1 bias row, n_post)"
            )

    # -- weight image --

    def config(self, group_name: str, cls, label: str):
        """A spec dataclass from one attribute per field of group ``group_name``; every field
        must be there and nothing else (no silent defaults)."""
        g = self.group(self.f, group_name)
        stored = {name: self.attr(g, name) for name in g["attrs"]}
        names = [fld.name for fld in dataclasses.fields(cls)]
        added = getattr(cls, "ADDED_FIELDS", {})  # fields newer than some stored files: absent = off
        missing = [n for n in names if n not in stored and n not in added]
        unknown = sorted(set(stored) - set(names))
        if missing:
            raise self.fail(f"{label} lacks field(s) {missing}")
        if unknown:
            raise self.fail(f"{label} has unknown field(s) {unknown} (written by a newer popcount-learn?)")
        try:
            return cls.from_dict(stored)
        except ConfigError as exc:
            raise self.fail(f"invalid {label}: {exc}") from None

    def spec(self) -> DatapathConfig:
        return self.config("datapath", DatapathConfig, "datapath spec")

    def learning(self) -> LearningConfig | None:
        if "learning" not in self.f["members"]:
            return None
        return self.config("learning", LearningConfig, "learning rule spec")

    def weight_image(self) -> WeightImage:
        spec = self.spec()
        topology = self.topology()
        provenance = self.json_attr("provenance_json")
        wdtype, tdtype = weight_dtype(spec), threshold_dtype(spec)
        layers = []
        for k, g in enumerate(self.layer_groups(len(topology) - 1)):
            w = self.dataset(
                g,
                "weights_lsb",
                lambda dt: dt.kind == "i" and dt.itemsize == wdtype.itemsize,
                f"{wdtype.name} for weight_bits={spec.weight_bits}",
            )
            self.check_shape(k, "weights_lsb", w, topology)
            if w.size and (w.min() < spec.weight_min or w.max() > spec.weight_max):
                raise self.fail(
                    f"layer {k}: weights_lsb outside the {spec.weight_bits}-bit range "
                    f"[{spec.weight_min}, {spec.weight_max}] (min {w.min()}, max {w.max()})"
                )
            raw_th = g["attrs"].get("threshold_lsb")
            if raw_th is None:
                raise self.fail(f"layer {k}: missing attribute 'threshold_lsb'")
            th = np.asarray(raw_th)
            if th.shape != () or th.dtype.kind != "i" or th.dtype.itemsize != tdtype.itemsize:
                raise self.fail(
                    f"layer {k}: threshold_lsb must be a scalar {tdtype.name} for membrane_bits="
                    f"{spec.membrane_bits}, got {th.dtype} {th.shape}"
                )
            threshold = int(th)
            if not 1 <= threshold <= spec.membrane_max:
                raise self.fail(
                    f"layer {k}: threshold_lsb {threshold} outside 1..{spec.membrane_max} "
                    f"({spec.membrane_bits}-bit membrane register)"
                )
            scale = _plain(g["attrs"].get("scale"))
            if not isinstance(scale, float) or not (math.isfinite(scale) and scale > 0):
                raise self.fail(f"layer {k}: scale must be a positive finite float, got {scale!r}")
            layers.append(LayerImage(weights_lsb=w.astype(wdtype), threshold_lsb=threshold, scale=scale))
        try:
            encoding = self.encoding("input_encoding") if "input_encoding" in self.f["members"] else None
            image = WeightImage(
                spec=spec, layers=tuple(layers), provenance=provenance, learning=self.learning(), encoding=encoding
            )
        except ConfigError as exc:
            raise self.fail(f"inconsistent weight image: {exc}") from None
        stored_crc = self.int_attr(self.f, "crc32")
        computed_crc = image_crc32(image)
        if stored_crc != computed_crc:
            raise self.fail(
                f"whole-image CRC-32 mismatch: stored 0x{stored_crc & 0xFFFFFFFF:08x}, computed 0x{computed_crc:08x} "
                "over the upload byte stream (spec, thresholds or weights were altered)"
            )
        return image

    # -- exact network --

    def encoding(self, group_name: str = "encoding") -> InputEncoding:
        """An /encoding group: (threshold, dark_time) alone is a file from before graded input
        (binary); anything else must hold every scalar field of InputEncoding."""
        g = self.group(self.f, group_name)
        names = set(g["attrs"])
        old = {"threshold", "dark_time"}
        values = {name: self.attr(g, name) for name in sorted(names)}
        for name in ("threshold", "silence"):
            if name in values:
                values[name] = self.int_attr(g, name)
        if "dark_time" in values:
            dark_time = values["dark_time"]
            if not isinstance(dark_time, float):
                raise self.fail(f"encoding dark_time must be a float (inf = never), got {dark_time!r}")
            values["dark_time"] = None if dark_time == math.inf else dark_time
        scaling = None
        if g["datasets"]:
            if set(g["datasets"]) != {"scaling_low", "scaling_high"}:
                raise self.fail(
                    f"{group_name} holds datasets {sorted(g['datasets'])}, expected scaling_low, scaling_high"
                )
            low = self.dataset(g, "scaling_low", lambda dt: dt == np.float64, "float64")
            high = self.dataset(g, "scaling_high", lambda dt: dt == np.float64, "float64")
            try:
                scaling = FeatureScaling(np.asarray(low), np.asarray(high))
            except ConfigError as exc:
                raise self.fail(f"invalid feature scaling: {exc}") from None
        try:
            if names == old:
                return SpikeEncoding(threshold=values["threshold"], dark_time=values["dark_time"], scaling=scaling)
            return InputEncoding.from_dict(values, scaling=scaling)
        except ConfigError as exc:
            raise self.fail(f"invalid encoding: {exc}") from None

    def check_recorded_encoding(self, encoding: SpikeEncoding, metadata: dict) -> None:
        """An unsealed file's /encoding against the copy ``train`` records in the metadata
        (``metadata["encoding"]``), so that damage to either one is caught without a seal."""
        recorded = metadata.get("encoding")
        if not isinstance(recorded, dict) or set(recorded) != {"threshold", "dark_time"}:
            return
        if recorded != {"threshold": encoding.threshold, "dark_time": encoding.dark_time}:
            raise self.fail(
                f"/encoding (threshold {encoding.threshold}, dark_time {encoding.dark_time}) differs from the "
                f"encoding recorded in metadata_json ({recorded}); one of them was altered"
            )

    def network(self) -> tuple[ExactNetwork, dict]:
        topology = self.topology()
        encoding = self.encoding()
        metadata = self.json_attr("metadata_json")
        if self.integrity == UNSEALED:
            self.check_recorded_encoding(encoding, metadata)
        weights = []
        for k, g in enumerate(self.layer_groups(len(topology) - 1)):
            w = self.dataset(g, "weights", lambda dt: dt.kind == "f", "a float type")
            self.check_shape(k, "weights", w, topology)
            weights.append(w.astype(w.dtype.newbyteorder("=")))
        try:
            network = ExactNetwork(weights=weights, encoding=encoding)
        except ConfigError as exc:
            raise self.fail(f"inconsistent network: {exc}") from None
        return network, metadata
