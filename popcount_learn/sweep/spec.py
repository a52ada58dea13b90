"""The sweep file (TOML): a base configuration, axes over any spec field, grid or random sampling.

::

    [sweep]
    mode = "exact"            # or "onchip"
    data = "datasets/mnist"   # optional: the shipped MNIST
    epochs = 3
    limit = 10000             # training images (optional: all)
    test_limit = 10000        # test images (optional: all)

    [base]                    # fixed fields, by group: train, datapath, learning, encoding, hardware
    train.batch_size = 32
    hardware.lanes = 4

    [axes]                    # one list of values per field; hidden and seed are shorthands
    datapath.weight_bits = [3, 4, 5, 6, 7, 8]
    datapath.time_shift = [5, 6]
    hidden = [100, 200, 400]  # = train.hidden; a list of lists for deeper networks
    seed = [0, 1]             # = train.seed (and the on-chip rule's seed unless learning.seed is set)

    [sampling]                # optional
    method = "random"         # default "grid": every combination
    points = 20               # random: this many distinct points, drawn with
    seed = 0                  # this seed; an axis may then be a range {low = 1e-4, high = 1e-2, log = true}

Groups: ``train`` = ``TrainConfig`` (exact) or ``OnchipTrainConfig`` (onchip), ``datapath`` =
``DatapathConfig`` (built as ``DatapathConfig.for_weight_bits(weight_bits, ...)``, so the
registers widen with the weights unless set), ``learning`` = ``LearningConfig`` (onchip only),
``encoding`` = ``SpikeEncoding`` (``dark_time = "never"`` for None), ``hardware`` =
``cost.HardwareConfig``. Every point is built and checked when the file is read: an unknown
field, a value of the wrong type or out of range, or an empty axis is one ``SweepConfigError``
naming the place, before anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cost import HardwareConfig
from ..datapath import DatapathConfig
from ..encoding import SpikeEncoding
from ..errors import ConfigError
from ..learning import LearningConfig
from ..onchip_train import OnchipTrainConfig
from ..quantize import dark_input_step_for
from ..train import TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as the tomli package
    import tomli as tomllib

MODES = ("exact", "onchip")
SWEEP_KEYS = ("mode", "data", "epochs", "limit", "test_limit", "name")
SAMPLING_KEYS = ("method", "points", "seed")
SHORTHANDS = {"hidden": "train.hidden", "seed": "train.seed"}
# Fields the sweep sets itself (from [sweep] or per point), not settable by axis or base.
RESERVED = {"train.epochs": "set epochs in [sweep]"}


class SweepConfigError(ConfigError):
    """A sweep file that cannot run: bad TOML, unknown field, bad value, empty axis."""


def _groups(mode: str) -> dict[str, type]:
    groups = {
        "train": TrainConfig if mode == "exact" else OnchipTrainConfig,
        "datapath": DatapathConfig,
        "encoding": SpikeEncoding,
        "hardware": HardwareConfig,
    }
    if mode == "onchip":
        groups["learning"] = LearningConfig
    return groups


def _field_types(cls) -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class PointConfig:
    """Everything one point's training, emulation and cost depend on (its hash names its files)."""

    mode: str
    data_sha256: tuple[tuple[str, str], ...]
    limit: int | None
    test_limit: int | None
    train: dict
    datapath: dict
    encoding: dict
    hardware: dict
    learning: dict | None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["data_sha256"] = dict(self.data_sha256)
        return d

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of the whole configuration (hex)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def objects(self):
        """(train config, DatapathConfig, SpikeEncoding, HardwareConfig, LearningConfig or None)."""
        train_cls = TrainConfig if self.mode == "exact" else OnchipTrainConfig
        train = dict(self.train, hidden=tuple(self.train["hidden"]))
        datapath = dict(self.datapath)
        spec = DatapathConfig.for_weight_bits(datapath.pop("weight_bits"), **datapath)
        learning = LearningConfig(**self.learning) if self.learning is not None else None
        return train_cls(**train), spec, SpikeEncoding(**self.encoding), HardwareConfig(**self.hardware), learning


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked sweep: its settings, the axes and the points in sweep order."""

    path: str
    text: str
    mode: str
    data: str | None
    epochs: int
    limit: int | None
    test_limit: int | None
    base: dict  # {"group.field": value} fixed for every point
    axes: dict
    points: tuple[dict, ...]  # per point: {"group.field": value} of the axes only

    def point_configs(self, data_sha256: dict[str, str]) -> list[PointConfig]:
        """Every point fully resolved (defaults filled in), for data with these file hashes."""
        return [self._resolve(p, data_sha256) for p in self.points]

    def _resolve(self, axis_values: dict, data_sha256: dict[str, str]) -> PointConfig:
        values = dict(self.base)
        values.update(axis_values)
        by_group: dict[str, dict] = {g: {} for g in _groups(self.mode)}
        for key, v in values.items():
            group, name = key.split(".", 1)
            by_group[group][name] = v
        train = by_group["train"]
        train["epochs"] = self.epochs
        train_obj = (TrainConfig if self.mode == "exact" else OnchipTrainConfig)(
            **{k: (tuple(v) if k == "hidden" else v) for k, v in train.items()}
        )
        datapath = by_group["datapath"]
        bits = datapath.pop("weight_bits", 8)
        spec = DatapathConfig.for_weight_bits(bits, **datapath)
        encoding = SpikeEncoding(**by_group["encoding"])
        dark_input_step_for(spec, encoding)  # a dark time the datapath cannot represent fails here
        hardware = HardwareConfig(**by_group["hardware"])
        learning = None
        if self.mode == "onchip":
            fields = dict(by_group["learning"])
            fields.setdefault("seed", train_obj.seed)
            learning = LearningConfig(**fields).to_dict()
        train_dict = dataclasses.asdict(train_obj)
        train_dict["hidden"] = list(train_obj.hidden)
        return PointConfig(
            mode=self.mode,
            data_sha256=tuple(sorted(data_sha256.items())),
            limit=self.limit,
            test_limit=self.test_limit,
            train=train_dict,
            datapath=spec.to_dict(),
            encoding=dataclasses.asdict(encoding),
            hardware=dataclasses.asdict(hardware),
            learning=learning,
        )


def _flatten(table: dict, where: str) -> dict[str, object]:
    """{"datapath": {"time_shift": 6}} -> {"datapath.time_shift": 6}; shorthands expanded."""
    flat = {}
    for key, value in table.items():
        if key in SHORTHANDS:
            flat[SHORTHANDS[key]] = value
        elif isinstance(value, dict):
            for name, v in value.items():
                if isinstance(v, dict) and not _is_range(v):
                    raise SweepConfigError(f"[{where}] {key}.{name}: nested tables go one level deep (group.field)")
                flat[f"{key}.{name}"] = v
        else:
            raise SweepConfigError(
                f"[{where}] {key}: expected group.field (groups: train, datapath, learning, encoding, "
                "hardware) or hidden / seed"
            )
    return flat


def _is_range(v) -> bool:
    return isinstance(v, dict) and set(v) >= {"low", "high"}


def _check_key(key: str, mode: str, where: str) -> str:
    group, name = key.split(".", 1)
    groups = _groups(mode)
    if group not in groups:
        extra = " (learning applies to mode onchip)" if group == "learning" else ""
        raise SweepConfigError(f"[{where}] {key}: unknown group {group!r}; the groups are {', '.join(groups)}{extra}")
    types = _field_types(groups[group])
    if name not in types:
        raise SweepConfigError(f"[{where}] {key}: unknown {group} field {name!r}; the fields are {', '.join(types)}")
    if key in RESERVED:
        raise SweepConfigError(f"[{where}] {key}: {RESERVED[key]}")
    return types[name]


def _typed(value, type_name: str, where: str):
    """A TOML value converted to a field's declared type, or a SweepConfigError naming ``where``."""

    def bad(expected):
        return SweepConfigError(f"{where}: expected {expected}, got {value!r}")

    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if type_name == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if type_name.startswith("tuple"):  # hidden sizes: 100 or [100] or [100, 50]
        sizes = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(sizes, list) or not sizes or not all(type(h) is int for h in sizes):
            raise bad("a layer size or a list of layer sizes")
        return list(sizes)
    if type_name == "float | None":  # dark_time
        if value == "never":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad('a number or "never"')
        return float(value)
    raise bad(f"a value of type {type_name}")  # pragma: no cover - every field type is listed above


def _sample_range(spec: dict, type_name: str, rng: np.random.Generator, where: str):
    unknown = set(spec) - {"low", "high", "log"}
    if unknown:
        raise SweepConfigError(f"{where}: a range has low, high and optionally log; unknown {sorted(unknown)}")
    low, high = (_typed(spec[k], "float" if type_name == "float" else "int", f"{where}.{k}") for k in ("low", "high"))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SweepConfigError(f"{where}.log: expected true or false, got {log!r}")
    if not low < high:
        raise SweepConfigError(f"{where}: low must be below high, got {low} and {high}")
    if log and low <= 0:
        raise SweepConfigError(f"{where}: a log range needs low > 0, got {low}")
    if type_name == "int":
        return int(rng.integers(low, high + 1))
    u = rng.random()
    if log:
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return float(low + u * (high - low))


def load_sweep(path) -> SweepSpec:
    """Read and check a sweep file: every point is built (so every value is range-checked)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepConfigError(f"{path}: cannot read the sweep file ({exc.strerror})") from None
    return parse_sweep(text, str(path))


def parse_sweep(text: str, path: str = "<sweep>") -> SweepSpec:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _parse(doc, text, path)
    except SweepConfigError as exc:
        raise SweepConfigError(f"{path}: {exc}") from None
    except ConfigError as exc:  # a spec object refused a value
        raise SweepConfigError(f"{path}: {exc}") from None


def _parse(doc: dict, text: str, path: str) -> SweepSpec:
    unknown = set(doc) - {"sweep", "base", "axes", "sampling"}
    if unknown:
        raise SweepConfigError(f"unknown table(s) {sorted(unknown)}; the tables are sweep, base, axes, sampling")
    sweep = doc.get("sweep")
    if not isinstance(sweep, dict):
        raise SweepConfigError("a [sweep] table with mode and epochs is required")
    bad_keys = set(sweep) - set(SWEEP_KEYS)
    if bad_keys:
        raise SweepConfigError(f"[sweep] unknown key(s) {sorted(bad_keys)}; the keys are {', '.join(SWEEP_KEYS)}")
    mode = sweep.get("mode", "exact")
    if mode not in MODES:
        raise SweepConfigError(f"[sweep] mode: expected one of {MODES}, got {mode!r}")
    if "epochs" not in sweep:
        raise SweepConfigError("[sweep] epochs is required")
    epochs = _typed(sweep["epochs"], "int", "[sweep] epochs")
    limits = {}
    for key in ("limit", "test_limit"):
        v = sweep.get(key)
        if v is not None:
            v = _typed(v, "int", f"[sweep] {key}")
            if v < 1:
                raise SweepConfigError(f"[sweep] {key}: expected a positive number of images, got {v}")
        limits[key] = v
    data = sweep.get("data")
    if data is not None and not isinstance(data, str):
        raise SweepConfigError(f"[sweep] data: expected a directory name, got {data!r}")

    base_raw = doc.get("base", {})
    if not isinstance(base_raw, dict):
        raise SweepConfigError("[base] must be a table")
    base = {}
    for key, value in _flatten(base_raw, "base").items():
        base[key] = _typed(value, _check_key(key, mode, "base"), f"[base] {key}")

    axes_raw = doc.get("axes", {})
    if not isinstance(axes_raw, dict):
        raise SweepConfigError("[axes] must be a table")
    axes = {}
    for key, values in _flatten(axes_raw, "axes").items():
        type_name = _check_key(key, mode, "axes")
        if _is_range(values):
            axes[key] = values
            continue
        if not isinstance(values, list):
            raise SweepConfigError(f"[axes] {key}: expected a list of values, got {values!r}")
        if not values:
            raise SweepConfigError(f"[axes] {key}: the axis is empty; give at least one value")
        if key == "train.hidden" and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            values = [[v] for v in values]  # hidden = [100, 200]: one hidden layer of each size
        typed = [_typed(v, type_name, f"[axes] {key}[{i}]") for i, v in enumerate(values)]
        if len({json.dumps(v) for v in typed}) != len(typed):
            raise SweepConfigError(f"[axes] {key}: repeated values {values}")
        axes[key] = typed
        if key in base:
            raise SweepConfigError(f"{key} is both in [base] and in [axes]")

    sampling = doc.get("sampling", {})
    if not isinstance(sampling, dict) or set(sampling) - set(SAMPLING_KEYS):
        raise SweepConfigError(f"[sampling] takes {', '.join(SAMPLING_KEYS)}")
    method = sampling.get("method", "grid")
    if method not in ("grid", "random"):
        raise SweepConfigError(f"[sampling] method: expected grid or random, got {method!r}")
    if method == "grid":
        ranged = [k for k, v in axes.items() if _is_range(v)]
        if ranged:
            raise SweepConfigError(f'[axes] {ranged[0]}: a range needs [sampling] method = "random"')
        if {"points", "seed"} & set(sampling):
            raise SweepConfigError('[sampling] points and seed apply to method = "random"')
        names = list(axes)
        points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]
    else:
        if "points" not in sampling:
            raise SweepConfigError('[sampling] method = "random" needs points = N')
        n = _typed(sampling["points"], "int", "[sampling] points")
        seed = _typed(sampling.get("seed", 0), "int", "[sampling] seed")
        if n < 1 or seed < 0:
            raise SweepConfigError("[sampling] points must be >= 1 and seed >= 0")
        points = _random_points(axes, mode, n, seed)

    spec = SweepSpec(
        path=path,
        text=text,
        mode=mode,
        data=data,
        epochs=epochs,
        limit=limits["limit"],
        test_limit=limits["test_limit"],
        base=base,
        axes=axes,
        points=tuple(points) or ({},),
    )
    # Build every point now: a value out of range is refused before anything runs.
    for i, p in enumerate(spec.points):
        try:
            spec._resolve(p, {})
        except ConfigError as exc:
            desc = ", ".join(f"{k}={v}" for k, v in p.items()) or "the base point"
            raise SweepConfigError(f"point {i} ({desc}): {exc}") from None
    return spec


def _random_points(axes: dict, mode: str, n: int, seed: int) -> list[dict]:
    """``n`` distinct points, each axis drawn uniformly (a list) or from its range, seeded."""
    rng = np.random.default_rng(seed)
    points, seen = [], set()
    if all(not _is_range(v) for v in axes.values()):
        size = math.prod(len(v) for v in axes.values())
        if n > size:
            raise SweepConfigError(f"[sampling] points = {n}, but the axes have only {size} combinations")
    tries = 0
    while len(points) < n:
        tries += 1
        if tries > 100 * n:
            raise SweepConfigError(f"[sampling] could not draw {n} distinct points from the axes")
        p = {}
        for key, values in axes.items():
            type_name = _check_key(key, mode, "axes")
            p[key] = (
                _sample_range(values, type_name, rng, f"[axes] {key}")
                if _is_range(values)
                else values[int(rng.integers(len(values)))]
            )
        k = json.dumps(p, sort_keys=True)
        if k not in seen:
            seen.add(k)
            points.append(p)
    return points
