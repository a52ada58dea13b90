"""HDF5 files: exact-network checkpoints and weight images. The only module that imports h5py.

Both kinds share a root header (attributes ``format = "popcount-learn"``, ``format_version``,
``kind``) so that ``load_model`` can dispatch on what a file declares itself to be. The layouts
are documented in ``docs/weight-image.md``; they are readable with plain h5py or ``h5dump``.

Integrity: every dataset carries a ``sha256`` attribute (hex digest of its values as
little-endian bytes in C order); a weight image also carries ``crc32``, the CRC-32 of
``weight_image.upload_bytes`` (the exact stream a board receives). Readers check both and refuse
anything they cannot read exactly (``ModelFileError``); nothing is cast or defaulted.

Writes are atomic: the file is written under a temporary name in the target's directory,
fsynced and renamed over the target, so an interrupted write leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import secrets

import h5py
import numpy as np

from . import __version__
from .datapath import DatapathConfig
from .encoding import SpikeEncoding
from .errors import ConfigError, ModelFileError
from .learning import LearningConfig
from .network import ExactNetwork
from .weight_image import LayerImage, WeightImage, image_crc32, threshold_dtype, weight_dtype

FORMAT_NAME = "popcount-learn"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KIND_NETWORK = "exact-network"
KIND_WEIGHT_IMAGE = "weight-image"
KINDS = (KIND_NETWORK, KIND_WEIGHT_IMAGE)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KIND_NETWORK",
    "KIND_WEIGHT_IMAGE",
    "SUPPORTED_VERSIONS",
    "dataset_sha256",
    "load_model",
    "load_network",
    "load_weight_image",
    "save_network",
    "save_weight_image",
]


def dataset_sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of an array's values as little-endian bytes in C (row-major) order."""
    a = np.asarray(array)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"dataset_sha256 covers numeric arrays only, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return hashlib.sha256(a.tobytes(order="C")).hexdigest()


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
        g = f.create_group("encoding")
        g.attrs["threshold"] = np.int64(enc.threshold)
        # A dark pixel that never spikes spikes at t = +inf.
        g.attrs["dark_time"] = np.float64(math.inf if enc.dark_time is None else enc.dark_time)
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


def _atomic_write(path, fill) -> None:
    """Run ``fill(h5py.File)`` on a temporary file beside ``path``, fsync, rename onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and an
    existing ``path`` is left as it was.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # O_EXCL: never clobber a file we did not create; mode 0o666 lets the umask decide.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ModelFileError(f"{path}: cannot write: {exc}") from exc
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


def load_network(path) -> tuple[ExactNetwork, dict]:
    """Read an exact-network file: ``(network, metadata)``. Faults raise ModelFileError."""
    with _Reader.open(path) as r:
        r.check_header(KIND_NETWORK)
        return r.network()


def load_weight_image(path) -> WeightImage:
    """Read a weight image, verifying checksums, shapes, bit widths and the CRC-32."""
    with _Reader.open(path) as r:
        r.check_header(KIND_WEIGHT_IMAGE)
        return r.weight_image()


def load_model_and_metadata(path) -> tuple[ExactNetwork | WeightImage, dict]:
    """Read whatever model the file declares, in one pass: ``(network, metadata)`` for an
    exact-network file, ``(image, image.provenance)`` for a weight image."""
    with _Reader.open(path) as r:
        kind = r.check_header(None)
        if kind == KIND_WEIGHT_IMAGE:
            image = r.weight_image()
            return image, image.provenance
        return r.network()


def load_model(path) -> ExactNetwork | WeightImage:
    """Read whatever model the file declares: an ExactNetwork or a WeightImage."""
    return load_model_and_metadata(path)[0]


def _plain(value):
    """HDF5 attribute value as a plain Python scalar where it is one; anything else unchanged."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return str(value)
    return value


class _Reader:
    """An open file plus its path, so that every fault names the file."""

    def __init__(self, path: str, f: h5py.File):
        self.path = path
        self.f = f

    @classmethod
    @contextlib.contextmanager
    def open(cls, path):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise ModelFileError(f"{path}: no such file")
        if os.path.isdir(path):
            raise ModelFileError(f"{path}: is a directory, not a model file")
        try:
            if not h5py.is_hdf5(path):
                raise ModelFileError(
                    f"{path}: not an HDF5 file (no HDF5 signature); expected a popcount-learn network or weight image"
                )
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ModelFileError(f"{path}: truncated or damaged HDF5 file ({exc})") from exc
        try:
            with f:
                yield cls(path, f)
        except OSError as exc:
            raise ModelFileError(f"{path}: truncated or damaged HDF5 file ({exc})") from exc

    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {message}")

    # -- generic pieces --

    def attr(self, obj, name: str, *, array: bool = False):
        """Attribute ``name`` as a plain scalar; an array only where ``array`` allows one."""
        where = "root" if obj.name == "/" else obj.name
        if name not in obj.attrs:
            raise self.fail(f"missing attribute {name!r} on {where}")
        value = _plain(obj.attrs[name])
        if isinstance(value, np.ndarray) and not array:
            raise self.fail(f"attribute {name!r} on {where} must be a scalar, got an array of shape {value.shape}")
        return value

    def int_attr(self, obj, name: str) -> int:
        value = self.attr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"attribute {name!r} on {obj.name} must be an integer, got {value!r}")
        return value

    def group(self, parent, name: str) -> h5py.Group:
        obj = parent.get(name)
        if not isinstance(obj, h5py.Group):
            raise self.fail(f"missing group {parent.name.rstrip('/')}/{name}")
        return obj

    def dataset(self, group, name: str, dtype_ok, expected: str) -> np.ndarray:
        """Read ``group/name`` after checking its dtype with ``dtype_ok`` and its SHA-256."""
        obj = group.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise self.fail(f"missing dataset {group.name}/{name}")
        if not dtype_ok(obj.dtype):
            raise self.fail(f"dataset {obj.name} has dtype {obj.dtype}, expected {expected}")
        data = np.asarray(obj[()])
        stored = self.attr(obj, "sha256")
        if data.dtype.kind not in "iuf":
            raise self.fail(f"dataset {obj.name} has dtype {obj.dtype}, expected {expected}")
        computed = dataset_sha256(data)
        if stored != computed:
            raise self.fail(
                f"SHA-256 mismatch in dataset {obj.name}: stored {str(stored)[:16]}..., "
                f"computed {computed[:16]}...; the data is corrupted"
            )
        return data

    def json_attr(self, name: str) -> dict:
        text = self.attr(self.f, name)
        if not isinstance(text, str):
            raise self.fail(f"attribute {name!r} must be a JSON string, got {type(text).__name__}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self.fail(f"attribute {name!r} is not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise self.fail(f"attribute {name!r} must hold a JSON object, got {type(value).__name__}")
        return value

    def check_header(self, expected_kind: str | None) -> str:
        attrs = self.f.attrs
        if "format" not in attrs:
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

    def layer_groups(self, n_layers: int) -> list[h5py.Group]:
        layers = self.group(self.f, "layers")
        names = sorted(layers.keys())
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
        stored = {name: self.attr(g, name) for name in g.attrs}
        names = [fld.name for fld in dataclasses.fields(cls)]
        missing = [n for n in names if n not in stored]
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
        if "learning" not in self.f:
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
            raw_th = g.attrs.get("threshold_lsb")
            if raw_th is None:
                raise self.fail(f"layer {k}: missing attribute 'threshold_lsb'")
            th_dtype = np.asarray(raw_th).dtype
            if np.asarray(raw_th).shape != () or th_dtype.kind != "i" or th_dtype.itemsize != tdtype.itemsize:
                raise self.fail(
                    f"layer {k}: threshold_lsb must be a scalar {tdtype.name} for membrane_bits="
                    f"{spec.membrane_bits}, got {th_dtype} {np.asarray(raw_th).shape}"
                )
            threshold = int(_plain(raw_th))
            if not 1 <= threshold <= spec.membrane_max:
                raise self.fail(
                    f"layer {k}: threshold_lsb {threshold} outside 1..{spec.membrane_max} "
                    f"({spec.membrane_bits}-bit membrane register)"
                )
            scale = _plain(g.attrs.get("scale"))
            if not isinstance(scale, float) or not (math.isfinite(scale) and scale > 0):
                raise self.fail(f"layer {k}: scale must be a positive finite float, got {scale!r}")
            layers.append(LayerImage(weights_lsb=w.astype(wdtype), threshold_lsb=threshold, scale=scale))
        try:
            image = WeightImage(spec=spec, layers=tuple(layers), provenance=provenance, learning=self.learning())
        except ConfigError as exc:
            raise self.fail(f"inconsistent weight image: {exc}") from None
        stored_crc = self.int_attr(self.f, "crc32")
        computed_crc = image_crc32(image)
        if stored_crc != computed_crc:
            raise self.fail(
                f"whole-image CRC-32 mismatch: stored 0x{stored_crc:08x}, computed 0x{computed_crc:08x} "
                "over the upload byte stream (spec, thresholds or weights were altered)"
            )
        return image

    # -- exact network --

    def encoding(self) -> SpikeEncoding:
        g = self.group(self.f, "encoding")
        unknown = sorted(set(g.attrs.keys()) - {"threshold", "dark_time"})
        if unknown:
            raise self.fail(f"encoding has unknown field(s) {unknown}")
        threshold = self.int_attr(g, "threshold")
        dark_time = self.attr(g, "dark_time")
        if not isinstance(dark_time, float):
            raise self.fail(f"encoding dark_time must be a float (inf = never), got {dark_time!r}")
        try:
            return SpikeEncoding(threshold=threshold, dark_time=None if dark_time == math.inf else dark_time)
        except ConfigError as exc:
            raise self.fail(f"invalid encoding: {exc}") from None

    def network(self) -> tuple[ExactNetwork, dict]:
        topology = self.topology()
        encoding = self.encoding()
        metadata = self.json_attr("metadata_json")
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
