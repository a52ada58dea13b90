"""Random valid objects for round-trip and property tests.

Two ways in: ``random_*(rng_or_seed)`` for plain seeded use, and hypothesis strategies
(``datapath_configs()``, ``weight_images()``, ...) that draw every field within its valid range.
Array contents come from a numpy generator seeded by hypothesis, which keeps the strategies fast.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from hypothesis import strategies as st

from popcount_learn.datapath import OVERFLOW_POLICIES, TIE_RULES, DatapathConfig
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.network import ExactNetwork
from popcount_learn.weight_image import LayerImage, WeightImage, weight_dtype


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


# --- DatapathConfig --------------------------------------------------------------------------


def random_datapath_config(rng_or_seed) -> DatapathConfig:
    """Every field drawn uniformly from its valid range (see DatapathConfig.__post_init__)."""
    rng = _rng(rng_or_seed)
    weight_bits = int(rng.integers(2, 17))
    current_frac_bits = int(rng.integers(0, 17))
    max_steps = int(rng.choice([1, 2, int(rng.integers(3, 4096)), 1 << 20]))
    dark = -1 if max_steps < 2 or rng.random() < 0.5 else int(rng.integers(1, max_steps))
    return DatapathConfig(
        time_shift=int(rng.integers(0, 13)),
        weight_bits=weight_bits,
        current_frac_bits=current_frac_bits,
        current_bits=int(rng.integers(weight_bits + current_frac_bits, 33)),
        membrane_bits=int(rng.integers(2, 33)),
        current_overflow=str(rng.choice(OVERFLOW_POLICIES)),
        membrane_overflow=str(rng.choice(OVERFLOW_POLICIES)),
        input_threshold=int(rng.integers(0, 255)),
        dark_input_step=dark,
        max_steps=max_steps,
        tie_rule=str(rng.choice(TIE_RULES)),
    )


@st.composite
def datapath_configs(draw) -> DatapathConfig:
    """Hypothesis strategy over valid DatapathConfigs, every field varied (shrinks per field)."""
    weight_bits = draw(st.integers(2, 16))
    current_frac_bits = draw(st.integers(0, 16))
    max_steps = draw(st.integers(1, 1 << 20))
    dark = draw(st.just(-1) | st.integers(1, max(1, max_steps - 1))) if max_steps > 1 else -1
    return DatapathConfig(
        time_shift=draw(st.integers(0, 12)),
        weight_bits=weight_bits,
        current_frac_bits=current_frac_bits,
        current_bits=draw(st.integers(weight_bits + current_frac_bits, 32)),
        membrane_bits=draw(st.integers(2, 32)),
        current_overflow=draw(st.sampled_from(OVERFLOW_POLICIES)),
        membrane_overflow=draw(st.sampled_from(OVERFLOW_POLICIES)),
        input_threshold=draw(st.integers(0, 254)),
        dark_input_step=dark,
        max_steps=max_steps,
        tie_rule=draw(st.sampled_from(TIE_RULES)),
    )


# --- provenance / metadata -------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def random_provenance(rng_or_seed) -> dict:
    """A provenance record with the usual fields and plausible values."""
    rng = _rng(rng_or_seed)
    return {
        "mode": str(rng.choice(["exact", "popcount", "finetune"])),
        "epochs": int(rng.integers(0, 50)),
        "seed": int(rng.integers(0, 2**31)),
        "dataset": "mnist",
        "package_version": "0.1.0",
        "accuracy": float(rng.random()),
        "created_utc": "2026-01-02T03:04:05+00:00",
        "history": [{"epoch": e, "loss": float(rng.random()), "accuracy": float(rng.random())} for e in range(3)],
    }


@st.composite
def provenances(draw) -> dict:
    """The usual provenance fields plus arbitrary extra JSON values (unicode keys included)."""
    record = {
        "mode": draw(st.sampled_from(["exact", "popcount", "finetune"])),
        "epochs": draw(st.integers(0, 1000)),
        "seed": draw(st.integers(0, 2**63 - 1)),
        "dataset": draw(st.text(max_size=10)),
        "package_version": "0.1.0",
        "accuracy": draw(st.floats(0.0, 1.0)),
        "created_utc": "2026-01-02T03:04:05+00:00",
    }
    record.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return record


# --- weight images ---------------------------------------------------------------------------


def random_topology(rng_or_seed, max_layers: int = 3, max_width: int = 9) -> tuple[int, ...]:
    rng = _rng(rng_or_seed)
    n_layers = int(rng.integers(1, max_layers + 1))
    return tuple(int(n) for n in rng.integers(1, max_width + 1, size=n_layers + 1))


def random_weight_image(
    rng_or_seed, spec: DatapathConfig | None = None, topology=None, provenance: dict | None = None
) -> WeightImage:
    """Weights uniform over the full ``weight_bits`` range with both extremes present."""
    rng = _rng(rng_or_seed)
    spec = spec or random_datapath_config(rng)
    topology = tuple(topology or random_topology(rng))
    layers = []
    for n_pre, n_post in itertools.pairwise(topology):
        w = rng.integers(spec.weight_min, spec.weight_max + 1, size=(n_pre + 1, n_post))
        flat = w.reshape(-1)
        corners = rng.choice(flat.size, size=min(2, flat.size), replace=False)
        flat[corners[0]] = spec.weight_min
        if len(corners) > 1:
            flat[corners[1]] = spec.weight_max
        threshold = int(rng.choice([1, spec.membrane_max, int(rng.integers(1, spec.membrane_max + 1))]))
        scale = float(2.0 ** rng.uniform(-30, 10))
        layers.append(LayerImage(weights_lsb=w.astype(weight_dtype(spec)), threshold_lsb=threshold, scale=scale))
    if provenance is None:
        provenance = random_provenance(rng)
    return WeightImage(spec=spec, layers=tuple(layers), provenance=provenance)


@st.composite
def weight_images(draw, max_layers: int = 3, max_width: int = 9) -> WeightImage:
    spec = draw(datapath_configs())
    n_layers = draw(st.integers(1, max_layers))
    topology = tuple(draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1, max_size=n_layers + 1)))
    seed = draw(st.integers(0, 2**32 - 1))
    return random_weight_image(seed, spec=spec, topology=topology, provenance=draw(provenances()))


def make_image(spec, weights, thresholds):
    """A WeightImage from integer weight matrices and thresholds (scale 1)."""
    layers = tuple(
        LayerImage(np.asarray(w, dtype=np.int64), int(t), 1.0) for w, t in zip(weights, thresholds, strict=True)
    )
    return WeightImage(spec, layers)


# ----------------------------------------------------------------------------------------------
# Random cases


@st.composite
def emulator_cases(draw):
    """(image, uint8 images or None, input spike steps or None): small networks whose neurons
    fire, with narrow registers, both policies and tie rules, extremes sprinkled in."""
    weight_bits = draw(st.integers(2, 16))
    frac = draw(st.integers(0, min(16, 32 - weight_bits)))
    narrow = draw(st.booleans())
    cb_lo = weight_bits + frac
    current_bits = cb_lo if narrow else draw(st.integers(cb_lo, 32))
    membrane_bits = draw(st.integers(2, 12)) if draw(st.booleans()) else draw(st.integers(2, 32))
    max_steps = draw(st.integers(1, 40))
    dark = draw(st.sampled_from([-1, -1, *list(range(1, max_steps))[:5], max_steps - 1])) if max_steps > 1 else -1
    if dark == 0:
        dark = -1
    spec = DatapathConfig(
        time_shift=draw(st.integers(0, 12)),
        weight_bits=weight_bits,
        current_frac_bits=frac,
        current_bits=current_bits,
        membrane_bits=membrane_bits,
        current_overflow=draw(st.sampled_from(["saturate", "wrap"])),
        membrane_overflow=draw(st.sampled_from(["saturate", "wrap"])),
        input_threshold=draw(st.integers(0, 254)),
        dark_input_step=dark,
        max_steps=max_steps,
        tie_rule=draw(st.sampled_from(["max_membrane", "lowest_index"])),
    )
    topology = [draw(st.integers(1, 12))] + [draw(st.integers(1, 20)) for _ in range(draw(st.integers(1, 3)))]
    # Weights and inputs come from a numpy generator seeded by hypothesis: hypothesis' own
    # integer lists favour repeated boundary values, which hide e.g. tie-rule differences.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    wmin, wmax = spec.weight_min, spec.weight_max
    extremes = np.array([wmin, wmax, 0, 1, -1])
    weights, thresholds = [], []
    for n_pre, n_post in itertools.pairwise(topology):
        shape = (n_pre + 1, n_post)
        w = rng.integers(wmin, wmax + 1, size=shape)
        # Mostly positive weights in some layers so that spikes propagate; extremes sprinkled in.
        if rng.random() < 0.5:
            w = np.abs(w) - (rng.random(shape) < 0.2) * np.abs(w)
            w = np.clip(w, wmin, wmax)
        pick = rng.random(shape) < 0.15
        w[pick] = rng.choice(extremes, size=int(pick.sum()))
        weights.append(w.astype(np.int64))
        # Threshold around a few weight LSBs times a few steps, so that neurons do fire.
        exp = draw(st.integers(-2, 10))
        th = int(2.0 ** (weight_bits - 2 + frac + exp) * rng.uniform(0.5, 2.0))
        thresholds.append(min(max(th, 1), spec.membrane_max) if rng.random() < 0.9 else spec.membrane_max)
    image = make_image(spec, weights, thresholds)
    n_images = draw(st.integers(1, 4))
    shape = (n_images, topology[0])
    if draw(st.booleans()):
        images = rng.integers(0, 256, size=shape).astype(np.uint8)
        images[rng.random(shape) < 0.3] = 255
        steps = None
    else:
        images = None
        special = np.array([-1, 0, 0, 1, 2, max_steps - 1, max_steps, 3 * max_steps])
        steps = np.where(
            rng.random(shape) < 0.6, rng.choice(special, size=shape), rng.integers(-1, max_steps + 3, size=shape)
        )
    return image, images, steps


# --- exact networks --------------------------------------------------------------------------


def random_encoding(rng_or_seed) -> SpikeEncoding:
    rng = _rng(rng_or_seed)
    dark_time = None if rng.random() < 0.5 else float(rng.uniform(1e-3, 20.0))
    return SpikeEncoding(threshold=int(rng.integers(0, 255)), dark_time=dark_time)


def random_exact_network(rng_or_seed, topology=None, dtype=None) -> ExactNetwork:
    rng = _rng(rng_or_seed)
    topology = tuple(topology or random_topology(rng))
    dtype = np.dtype(dtype or rng.choice(["float32", "float64"]))
    weights = [
        (rng.normal(0.0, 1.0, size=(n_pre + 1, n_post)) * 10.0 ** rng.uniform(-3, 3)).astype(dtype)
        for n_pre, n_post in itertools.pairwise(topology)
    ]
    return ExactNetwork(weights=weights, encoding=random_encoding(rng))


encodings = st.builds(
    SpikeEncoding,
    threshold=st.integers(0, 254),
    dark_time=st.none() | st.floats(min_value=1e-6, max_value=1e6),
)


@st.composite
def exact_networks(draw, max_layers: int = 3, max_width: int = 9) -> ExactNetwork:
    n_layers = draw(st.integers(1, max_layers))
    topology = tuple(draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1, max_size=n_layers + 1)))
    net = random_exact_network(
        draw(st.integers(0, 2**32 - 1)), topology=topology, dtype=draw(st.sampled_from(["float32", "float64"]))
    )
    return ExactNetwork(weights=net.weights, encoding=draw(encodings))


# --- a graded 8-bit image --------------------------------------------------------------------


def graded_net100():
    """The shipped net100-int8 (784-100-10) under a latency encoding (t_max 2, silence 1): an
    8-bit image with graded input steps 0..128 and silent black pixels that still decides (96.9%
    on the first 1000 MNIST test images, emulated). Built here, not shipped: the weights are the
    sealed file's, the encoding is the only change."""
    from pathlib import Path

    from popcount_learn.encoding import InputEncoding
    from popcount_learn.h5io import load_weight_image

    path = Path(__file__).resolve().parents[1] / "datasets" / "pretrained" / "net100-int8.h5"
    image = load_weight_image(path)
    return dataclasses.replace(image, encoding=InputEncoding.latency(t_max=2.0, silence=1))
