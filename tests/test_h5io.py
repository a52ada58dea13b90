"""HDF5 checkpoints and weight images: round trips, the upload stream, atomic writes, corruption.

Expected values are computed here from the documented layout (docs/weight-image.md) with struct,
hashlib and zlib, never by calling the code under test for the answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import signal
import stat
import struct
import subprocess
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from factories import (
    datapath_configs,
    exact_networks,
    json_values,
    random_datapath_config,
    random_exact_network,
    random_provenance,
    random_weight_image,
    weight_images,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popcount_learn import datapath as datapath_module
from popcount_learn import h5io
from popcount_learn.datapath import OVERFLOW_POLICIES, TIE_RULES, DatapathConfig
from popcount_learn.errors import ConfigError, ModelFileError
from popcount_learn.learning import LearningConfig
from popcount_learn.network import ExactNetwork
from popcount_learn.weight_image import (
    UPLOAD_SPEC_FIELDS,
    LayerImage,
    WeightImage,
    image_crc32,
    upload_bytes,
)

ROUND_TRIP = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("h5io")


def le_sha256(array: np.ndarray) -> str:
    """The documented dataset digest: SHA-256 of the values as little-endian bytes, C order."""
    a = np.ascontiguousarray(array)
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<")).tobytes(order="C")).hexdigest()


def reseal(path) -> None:
    """Seal ``path`` again after an edit, by the documented layout (docs/weight-image.md,
    Integrity), as a writer that seals whatever it wrote would: what is tested behind it is the
    reader's checks of the content."""
    body = Path(path).read_bytes()[512:]
    text = b"popcount-learn sealed HDF5 1\nsha256 %s\nbytes %d\n" % (
        hashlib.sha256(body).hexdigest().encode(),
        len(body),
    )
    Path(path).write_bytes(text.ljust(512, b"\0") + body)


@contextlib.contextmanager
def edited(path):
    """The file open in h5py for writing, sealed again afterwards."""
    with h5py.File(path, "r+") as f:
        yield f
    reseal(path)


def expected_itemsize(bits: int) -> int:
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def small_image(spec: DatapathConfig | None = None, seed: int = 1) -> WeightImage:
    spec = spec or DatapathConfig()
    return random_weight_image(seed, spec=spec, topology=(6, 4, 3), provenance=random_provenance(seed))


# --- round trips -----------------------------------------------------------------------------


def assert_same_image(loaded: WeightImage, original: WeightImage) -> None:
    assert loaded.spec == original.spec
    assert loaded.topology == original.topology
    assert loaded.provenance == original.provenance
    assert len(loaded.layers) == len(original.layers)
    for a, b in zip(loaded.layers, original.layers, strict=True):
        assert a.weights_lsb.dtype == b.weights_lsb.dtype
        np.testing.assert_array_equal(a.weights_lsb, b.weights_lsb)
        assert a.threshold_lsb == b.threshold_lsb and type(a.threshold_lsb) is int
        assert a.scale == b.scale and type(a.scale) is float


@ROUND_TRIP
@given(image=weight_images())
def test_weight_image_round_trip(workdir, image):
    path = workdir / "round_trip.pclw.h5"
    h5io.save_weight_image(path, image)
    loaded = h5io.load_weight_image(path)
    assert_same_image(loaded, image)
    assert upload_bytes(loaded) == upload_bytes(image)

    # The file itself, read with plain h5py, holds what the format document promises.
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "popcount-learn" and f.attrs["kind"] == "weight-image"
        assert int(f.attrs["format_version"]) == 1
        assert tuple(f.attrs["topology"]) == image.topology
        assert int(f.attrs["crc32"]) == zlib.crc32(upload_bytes(image))
        assert {
            k: (v.item() if hasattr(v, "item") else v) for k, v in f["datapath"].attrs.items()
        } == dataclasses.asdict(image.spec)
        for k, layer in enumerate(image.layers):
            ds = f[f"layers/{k}/weights_lsb"]
            assert ds.dtype.kind == "i" and ds.dtype.itemsize == expected_itemsize(image.spec.weight_bits)
            assert ds.chunks is None and ds.compression is None  # contiguous: offsets are meaningful
            assert ds.attrs["sha256"] == le_sha256(layer.weights_lsb)
            th = f[f"layers/{k}"].attrs["threshold_lsb"]
            assert th.dtype.kind == "i" and th.dtype.itemsize == expected_itemsize(image.spec.membrane_bits)


def test_non_canonical_weight_dtype_is_stored_exactly(workdir):
    image = small_image(DatapathConfig(weight_bits=12))
    wide = WeightImage(
        image.spec,
        tuple(
            LayerImage(layer.weights_lsb.astype(np.int64), np.int64(layer.threshold_lsb), layer.scale)
            for layer in image.layers
        ),
        image.provenance,
    )
    h5io.save_weight_image(workdir / "wide.h5", wide)
    loaded = h5io.load_weight_image(workdir / "wide.h5")
    for a, b in zip(loaded.layers, wide.layers, strict=True):
        assert a.weights_lsb.dtype == np.int16
        np.testing.assert_array_equal(a.weights_lsb, b.weights_lsb)


@ROUND_TRIP
@given(network=exact_networks(), metadata=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_network_round_trip(workdir, network, metadata):
    path = workdir / "net.h5"
    h5io.save_network(path, network, metadata)
    loaded, meta = h5io.load_network(path)
    assert meta == metadata
    assert loaded.encoding == network.encoding
    assert loaded.topology == network.topology
    for a, b in zip(loaded.weights, network.weights, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    with h5py.File(path, "r") as f:
        for k, w in enumerate(network.weights):
            assert f[f"layers/{k}/weights"].attrs["sha256"] == le_sha256(w)


def test_network_metadata_defaults_and_normalisation(workdir):
    net = random_exact_network(3)
    h5io.save_network(workdir / "n0.h5", net)
    assert h5io.load_network(workdir / "n0.h5")[1] == {}
    meta = {"seed": np.int64(7), "lr": np.float32(0.5), "topology": (784, 800, 10), "ok": np.bool_(True)}
    h5io.save_network(workdir / "n1.h5", net, meta)
    loaded = h5io.load_network(workdir / "n1.h5")[1]
    assert loaded == {"seed": 7, "lr": 0.5, "topology": [784, 800, 10], "ok": True}
    assert type(loaded["seed"]) is int and type(loaded["ok"]) is bool


@pytest.mark.parametrize(
    "metadata, where",
    [
        ({"w": np.zeros(3)}, "metadata['w']"),
        ({"history": [{"loss": object()}]}, "metadata['history'][0]['loss']"),
        ({3: "x"}, "metadata: key 3 is not a string"),
    ],
)
def test_metadata_that_json_cannot_hold_is_refused(workdir, metadata, where):
    path = workdir / "refused.h5"
    with pytest.raises(ConfigError, match="^" + re.escape(where)):
        h5io.save_network(path, random_exact_network(0), metadata)
    assert not path.exists()


def test_network_that_could_not_be_read_back_is_refused(workdir):
    # Both used to be written, into files that load_network then refused.
    path = workdir / "unreadable.h5"
    with pytest.raises(ConfigError, match="metadata must be a dict"):
        h5io.save_network(path, random_exact_network(0), [1, 2])
    # ExactNetwork refuses an empty layer when built; a later mutation must still not be saved.
    with pytest.raises(ConfigError, match="at least one input row"):
        ExactNetwork([np.ones((1, 2))])
    net = ExactNetwork([np.ones((2, 2))])
    net.weights[0] = np.ones((1, 2))
    with pytest.raises(ConfigError, match=r"empty layer: topology \(0, 2\)"):
        h5io.save_network(path, net)
    assert not path.exists()


def test_non_float_network_weights_are_refused(workdir):
    with pytest.raises(ConfigError, match="float numpy array"):
        ExactNetwork([np.ones((3, 2), dtype=np.int32)])
    net = ExactNetwork([np.ones((3, 2))])
    net.weights[0] = np.ones((3, 2), dtype=np.int32)  # mutated after validation
    with pytest.raises(ConfigError, match="layer 0: weights must be float"):
        h5io.save_network(workdir / "int_net.h5", net)


def test_big_endian_dataset_from_another_writer_reads_by_value(workdir):
    net = random_exact_network(5, topology=(3, 2), dtype="float64")
    path = workdir / "be.h5"
    h5io.save_network(path, net)
    with edited(path) as f:
        del f["layers/0/weights"]
        ds = f["layers/0"].create_dataset("weights", data=net.weights[0].astype(">f8"))
        ds.attrs["sha256"] = le_sha256(net.weights[0])
    loaded, _ = h5io.load_network(path)
    np.testing.assert_array_equal(loaded.weights[0], net.weights[0])
    assert loaded.weights[0].dtype == np.float64 and loaded.weights[0].dtype.isnative


def test_load_model_dispatches_on_kind(workdir):
    image, net = small_image(), random_exact_network(2)
    h5io.save_weight_image(workdir / "img.h5", image)
    h5io.save_network(workdir / "net.h5", net, {"epochs": 1})
    got_image, got_net = h5io.load_model(workdir / "img.h5"), h5io.load_model(workdir / "net.h5")
    assert isinstance(got_image, WeightImage) and isinstance(got_net, ExactNetwork)
    assert_same_image(got_image, image)
    np.testing.assert_array_equal(got_net.weights[0], net.weights[0])
    with pytest.raises(ModelFileError, match="file kind is 'weight-image', expected 'exact-network'"):
        h5io.load_network(workdir / "img.h5")
    with pytest.raises(ModelFileError, match="file kind is 'exact-network', expected 'weight-image'"):
        h5io.load_weight_image(workdir / "net.h5")


@pytest.mark.parametrize(
    "layer, provenance, message",
    [
        (LayerImage(np.zeros((3, 0), dtype=np.int8), 5, 1.0), {}, r"shape \(3, 0\).*at least one neuron"),
        (LayerImage(np.zeros((1, 3), dtype=np.int8), 5, 1.0), {}, r"shape \(1, 3\).*presynaptic row"),
        (LayerImage([[1], [2]], 5, 1.0), {}, "weights_lsb must be a 2-D integer array, got list"),
        (LayerImage(np.ones((3, 2), dtype=np.int8), 5, "1.0"), {}, "scale must be a positive finite number"),
        (LayerImage(np.ones((3, 2), dtype=np.int8), 5, True), {}, "scale must be a positive finite number"),
        (LayerImage(np.ones((3, 2), dtype=np.int8), 5, 1.0), [1, 2], "provenance must be a dict"),
    ],
)
def test_weight_image_refuses_what_a_file_could_not_hold(layer, provenance, message):
    # Each of these used to construct (or crash with a raw TypeError / AttributeError); the
    # empty layers and the list provenance were even saved, into files that load refused.
    with pytest.raises(ConfigError, match=message):
        WeightImage(DatapathConfig(), (layer,), provenance)


def test_weight_image_refuses_a_foreign_spec_or_layer():
    with pytest.raises(ConfigError, match="DatapathConfig spec"):
        WeightImage(DatapathConfig().to_dict(), (LayerImage(np.ones((3, 2), dtype=np.int8), 5, 1.0),))
    with pytest.raises(ConfigError, match="layer 0: expected a LayerImage"):
        WeightImage(DatapathConfig(), ((np.ones((3, 2), dtype=np.int8), 5, 1.0),))


# --- factories -------------------------------------------------------------------------------


def test_factory_varies_every_spec_field():
    configs = [random_datapath_config(seed) for seed in range(300)]
    for fld in dataclasses.fields(DatapathConfig):
        values = {getattr(c, fld.name) for c in configs}
        assert len(values) > 1, f"factory never varies {fld.name}"


@settings(max_examples=200, deadline=None)
@given(spec=datapath_configs())
def test_strategy_builds_valid_specs_that_round_trip_as_dicts(spec):
    assert DatapathConfig.from_dict(dataclasses.asdict(spec)) == spec


# --- the upload stream -----------------------------------------------------------------------


def parse_upload_stream(data: bytes) -> dict:
    """Parser written from the byte table in docs/weight-image.md (what the firmware will do)."""
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    (magic,) = take("<4s")
    (version,) = take("<i")
    names = [
        "time_shift",
        "weight_bits",
        "current_frac_bits",
        "current_bits",
        "membrane_bits",
        "current_overflow",
        "membrane_overflow",
        "input_threshold",
        "dark_input_step",
        "max_steps",
        "tie_rule",
    ]
    header = dict(zip(names, take("<11i"), strict=True))
    (n_layers,) = take("<i")
    wfmt = "b" if header["weight_bits"] <= 8 else "h"
    layers = []
    for _ in range(n_layers):
        n_rows, n_post, threshold = take("<3i")
        flat = take(f"<{n_rows * n_post}{wfmt}")
        layers.append((threshold, np.array(flat, dtype=np.int64).reshape(n_rows, n_post)))
    assert pos == len(data), "trailing bytes after the last layer"
    return {"magic": magic, "version": version, "header": header, "layers": layers}


@ROUND_TRIP
@given(image=weight_images())
def test_upload_stream_parses_back_to_the_image(image):
    data = upload_bytes(image)
    assert upload_bytes(image) == data  # deterministic
    assert image_crc32(image) == zlib.crc32(data)
    parsed = parse_upload_stream(data)
    assert parsed["magic"] == b"PCLW" and parsed["version"] == 1
    codes = {"saturate": 0, "wrap": 1, "max_membrane": 0, "lowest_index": 1}
    for name, value in dataclasses.asdict(image.spec).items():
        assert parsed["header"][name] == (codes[value] if isinstance(value, str) else value), name
    assert len(parsed["layers"]) == len(image.layers)
    for (threshold, w), layer in zip(parsed["layers"], image.layers, strict=True):
        assert threshold == layer.threshold_lsb
        np.testing.assert_array_equal(w, layer.weights_lsb)


def test_upload_stream_bytes_by_hand():
    spec = DatapathConfig(
        time_shift=3,
        weight_bits=4,
        current_frac_bits=2,
        current_bits=10,
        membrane_bits=12,
        current_overflow="wrap",
        membrane_overflow="saturate",
        input_threshold=100,
        dark_input_step=5,
        max_steps=300,
        tie_rule="lowest_index",
    )
    w = np.array([[-8, 7], [1, -1], [0, 2]], dtype=np.int8)
    image = WeightImage(spec, (LayerImage(w, 513, 0.25),))
    expected = bytes.fromhex(
        "50434c57"
        "01000000"  # magic, stream version 1
        "03000000"
        "04000000"
        "02000000"
        "0a000000"
        "0c000000"  # shifts and widths
        "01000000"
        "00000000"  # current wraps, membrane saturates
        "64000000"
        "05000000"
        "2c010000"
        "01000000"  # threshold 100, dark step 5, 300 steps, lowest_index
        "01000000"  # one layer
        "03000000"
        "02000000"
        "01020000"  # 3 rows, 2 neurons, threshold 513
        "f807"
        "01ff"
        "0002"  # rows: (-8, 7), (1, -1), (0, 2)
    )
    assert upload_bytes(image) == expected
    assert image_crc32(image) == zlib.crc32(expected)

    spec16 = DatapathConfig(weight_bits=16, current_frac_bits=0, current_bits=16, dark_input_step=-1)
    w16 = np.array([[-32768], [32767]], dtype=np.int16)
    stream = upload_bytes(WeightImage(spec16, (LayerImage(w16, 1, 1.0),)))
    assert stream[40:44] == bytes.fromhex("ffffffff")  # dark_input_step -1
    assert stream[-4:] == bytes.fromhex("0080ff7f")  # int16 little-endian


def test_upload_layout_covers_every_spec_field():
    assert set(UPLOAD_SPEC_FIELDS) == {f.name for f in dataclasses.fields(DatapathConfig)}
    codes = DatapathConfig.ENUM_CODES
    assert set(codes["current_overflow"]) == set(codes["membrane_overflow"]) == set(OVERFLOW_POLICIES)
    assert set(codes["tie_rule"]) == set(TIE_RULES)
    # The emulator's and the headers' codes (datapath.py) are the ones the stream uses.
    assert (
        codes["current_overflow"] is datapath_module.OVERFLOW_CODES and codes["tie_rule"] is datapath_module.TIE_CODES
    )


ALTERNATIVE_VALUES = {
    "time_shift": 5,
    "weight_bits": 9,
    "current_frac_bits": 5,
    "current_bits": 23,
    "membrane_bits": 23,
    "current_overflow": "wrap",
    "membrane_overflow": "wrap",
    "input_threshold": 127,
    "dark_input_step": 7,
    "max_steps": 511,
    "tie_rule": "lowest_index",
}


def test_crc_changes_with_every_spec_field_threshold_and_weight():
    image = small_image()
    # Thresholds that stay valid under every alternative spec value.
    base = WeightImage(
        image.spec, tuple(LayerImage(layer.weights_lsb, 100 + k, layer.scale) for k, layer in enumerate(image.layers))
    )
    crcs = {"base": image_crc32(base)}
    assert set(ALTERNATIVE_VALUES) == {f.name for f in dataclasses.fields(DatapathConfig)}
    for name, value in ALTERNATIVE_VALUES.items():
        spec = dataclasses.replace(base.spec, **{name: value})
        crcs[name] = image_crc32(WeightImage(spec, base.layers, base.provenance))
    layers = list(base.layers)
    layers[1] = LayerImage(layers[1].weights_lsb, layers[1].threshold_lsb + 1, layers[1].scale)
    crcs["threshold"] = image_crc32(WeightImage(base.spec, tuple(layers), base.provenance))
    first = base.layers[0]
    w = first.weights_lsb.copy()
    w[-1, -1] = w[-1, -1] + 1 if w[-1, -1] < 127 else 0
    # Only the weight differs from base: same threshold and scale.
    crcs["weight"] = image_crc32(
        WeightImage(base.spec, (LayerImage(w, first.threshold_lsb, first.scale), *base.layers[1:]))
    )
    assert len(set(crcs.values())) == len(crcs)
    # Documented as not covered: scale and provenance do not change what a board computes.
    rescaled = tuple(LayerImage(layer.weights_lsb, layer.threshold_lsb, layer.scale * 3.0) for layer in base.layers)
    assert image_crc32(WeightImage(base.spec, rescaled, {"mode": "other"})) == crcs["base"]


# --- atomic writes ---------------------------------------------------------------------------


def test_successful_write_leaves_only_the_target(tmp_path):
    h5io.save_weight_image(tmp_path / "a.h5", small_image())
    h5io.save_weight_image(tmp_path / "a.h5", small_image(seed=2))  # replace
    assert os.listdir(tmp_path) == ["a.h5"]
    assert_same_image(h5io.load_weight_image(tmp_path / "a.h5"), small_image(seed=2))


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, RuntimeError])
def test_interrupted_write_keeps_old_file_and_removes_temp(tmp_path, monkeypatch, exc_type):
    target = tmp_path / "model.h5"
    old = small_image(seed=3)
    h5io.save_weight_image(target, old)
    before = target.read_bytes()
    real = h5io._write_dataset
    calls = []

    def fail_on_second_layer(group, name, data):
        calls.append(name)
        if len(calls) == 2:
            raise exc_type("interrupted mid-write")
        real(group, name, data)

    monkeypatch.setattr(h5io, "_write_dataset", fail_on_second_layer)
    with pytest.raises(exc_type):
        h5io.save_weight_image(target, small_image(seed=4))
    assert len(calls) == 2  # the failure really happened after data had been written
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.h5"]
    calls.clear()
    with pytest.raises(exc_type):
        h5io.save_network(tmp_path / "new.h5", random_exact_network(0, topology=(3, 3, 2)))
    assert os.listdir(tmp_path) == ["model.h5"]
    monkeypatch.undo()
    assert_same_image(h5io.load_weight_image(target), old)


def test_failed_fsync_is_reported_and_cleaned_up(tmp_path, monkeypatch):
    target = tmp_path / "model.h5"
    h5io.save_weight_image(target, small_image())
    before = target.read_bytes()

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(ModelFileError, match=r"model\.h5: cannot write: .*Input/output error"):
        h5io.save_weight_image(target, small_image(seed=9))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.h5"]


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match=r"nowhere/m\.h5: cannot write"):
        h5io.save_weight_image(tmp_path / "nowhere" / "m.h5", small_image())


# --- refusing damaged or foreign files -------------------------------------------------------


@pytest.fixture
def image_file(tmp_path):
    spec = DatapathConfig(weight_bits=6, membrane_bits=12)
    image = random_weight_image(11, spec=spec, topology=(5, 4, 3), provenance={"mode": "test"})
    path = tmp_path / "image.h5"
    h5io.save_weight_image(path, image)
    return path, image


def rewrite_dataset(path, name: str, data: np.ndarray) -> None:
    """Replace a dataset behind the writer's back, with a correct SHA-256 for the new data."""
    with edited(path) as f:
        del f[name]
        ds = f.create_dataset(name, data=data)
        ds.attrs["sha256"] = le_sha256(data)


def refused(path, loader=h5io.load_weight_image) -> str:
    with pytest.raises(ModelFileError) as info:
        loader(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in refused(tmp_path / "absent.h5", h5io.load_model)
    assert "is a directory, not a model file" in refused(tmp_path, h5io.load_model)


def test_not_hdf5(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_text("definitely not HDF5\n" * 100)
    assert "not an HDF5 file" in refused(path, h5io.load_model)
    path.write_bytes(b"")
    assert "not an HDF5 file" in refused(path, h5io.load_model)


def test_someone_elses_hdf5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(4))
    assert "not a popcount-learn file (no 'format' attribute" in refused(path, h5io.load_model)
    with h5py.File(path, "r+") as f:
        f.attrs["format"] = "nir"
    assert "an HDF5 file of format 'nir', not a popcount-learn file" in refused(path, h5io.load_model)


@pytest.mark.parametrize(
    "group, name",
    [("/", "format"), ("/", "kind"), ("/layers/0/weights_lsb", "sha256"), ("/datapath", "tie_rule")],
)
@pytest.mark.parametrize("n_values", [1, 2])
def test_array_where_a_scalar_belongs_is_refused(image_file, group, name, n_values):
    # Used to end in a raw ValueError (ambiguous truth value) or TypeError (unhashable array).
    path, _ = image_file
    with edited(path) as f:
        value = f[group].attrs[name]
        f[group].attrs[name] = np.array([value] * n_values, dtype=h5py.string_dtype())
    message = refused(path, h5io.load_model)
    assert f"attribute '{name}' on " in message and f"must be a scalar, got an array of shape ({n_values},)" in message


def test_unsupported_version(image_file):
    path, _ = image_file
    with edited(path) as f:
        f.attrs["format_version"] = np.int64(2)
    message = refused(path)
    assert "format version 2 is not supported" in message and "reads version(s) 1" in message


def test_unknown_kind(image_file):
    path, _ = image_file
    with edited(path) as f:
        f.attrs["kind"] = "spreadsheet"
    assert "unknown kind 'spreadsheet'" in refused(path, h5io.load_model)


def test_flipped_byte_in_weights_is_caught_by_sha256(image_file):
    path, image = image_file
    with h5py.File(path, "r") as f:
        offset = f["layers/1/weights_lsb"].id.get_offset()
    assert offset is not None
    with open(path, "r+b") as raw:
        raw.seek(offset + 3)
        byte = raw.read(1)[0]
        raw.seek(offset + 3)
        raw.write(bytes([byte ^ 0x01]))
    with h5py.File(path, "r") as f:  # the flip landed in the weights, nowhere else
        changed = f["layers/1/weights_lsb"][()] != image.layers[1].weights_lsb
        assert changed.sum() == 1 and changed.reshape(-1)[3]
    assert "content SHA-256 mismatch: the seal says" in refused(path)
    reseal(path)  # behind the seal, the dataset's own digest names the dataset that was hit
    assert "SHA-256 mismatch in dataset /layers/1/weights_lsb" in refused(path)


def test_flipped_byte_in_network_weights(tmp_path):
    path = tmp_path / "net.h5"
    h5io.save_network(path, random_exact_network(1, topology=(4, 3, 2), dtype="float64"))
    with h5py.File(path, "r") as f:
        offset = f["layers/0/weights"].id.get_offset()
    with open(path, "r+b") as raw:
        raw.seek(offset + 10)
        byte = raw.read(1)[0]
        raw.seek(offset + 10)
        raw.write(bytes([byte ^ 0x80]))
    assert "content SHA-256 mismatch" in refused(path, h5io.load_network)
    reseal(path)
    assert "SHA-256 mismatch in dataset /layers/0/weights" in refused(path, h5io.load_network)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_file(image_file, keep):
    path, _ = image_file
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert "truncated: the seal says" in refused(path)
    path.write_bytes(data[512 : int(len(data) * keep)])  # a file from before the seal, truncated
    assert "truncated or damaged HDF5 file" in refused(path)


def test_weight_outside_bit_width(image_file):
    path, image = image_file
    w = image.layers[0].weights_lsb.copy()
    w[2, 1] = 40  # fits int8 but not the 6-bit range [-32, 31]
    rewrite_dataset(path, "layers/0/weights_lsb", w)
    message = refused(path)
    assert "layer 0: weights_lsb outside the 6-bit range [-32, 31]" in message and "max 40" in message


def test_threshold_outside_membrane_width(image_file):
    path, _ = image_file
    with edited(path) as f:
        f["layers/1"].attrs["threshold_lsb"] = np.int16(3000)
    assert "layer 1: threshold_lsb 3000 outside 1..2047 (12-bit membrane register)" in refused(path)


def test_wrong_shape(image_file):
    path, image = image_file
    w = np.zeros((image.topology[1] + 2, image.topology[2]), dtype=np.int8)
    rewrite_dataset(path, "layers/1/weights_lsb", w)
    assert "layer 1: weights_lsb has shape (6, 3), but topology (5, 4, 3) needs (5, 3)" in refused(path)


def test_layer_count_disagrees_with_topology(image_file):
    path, _ = image_file
    with edited(path) as f:
        f.attrs["topology"] = np.array([5, 4], dtype=np.int64)
    assert "group /layers holds ['0', '1'], but the topology has 1 layer(s)" in refused(path)


@pytest.mark.parametrize(
    "data, expected",
    [
        (np.zeros((6, 4), dtype=np.float32), "has dtype float32, expected int8 for weight_bits=6"),
        (np.zeros((6, 4), dtype=np.int16), "has dtype int16, expected int8 for weight_bits=6"),
        (np.zeros((6, 4), dtype=np.uint8), "has dtype uint8, expected int8 for weight_bits=6"),
    ],
)
def test_weights_of_wrong_type_are_refused_not_cast(image_file, data, expected):
    path, _ = image_file
    rewrite_dataset(path, "layers/0/weights_lsb", data)
    assert f"dataset /layers/0/weights_lsb {expected}" in refused(path)


def test_threshold_of_wrong_type(image_file):
    path, _ = image_file
    with edited(path) as f:
        f["layers/0"].attrs["threshold_lsb"] = np.float64(100.0)
    assert "layer 0: threshold_lsb must be a scalar int16 for membrane_bits=12" in refused(path)


def test_missing_checksum(image_file):
    path, _ = image_file
    with edited(path) as f:
        del f["layers/0/weights_lsb"].attrs["sha256"]
    assert "missing attribute 'sha256' on /layers/0/weights_lsb" in refused(path)


def test_altered_threshold_trips_the_image_crc(image_file):
    path, image = image_file
    with edited(path) as f:
        f["layers/0"].attrs["threshold_lsb"] = np.int16(image.layers[0].threshold_lsb % 2047 + 1)
    message = refused(path)
    assert "whole-image CRC-32 mismatch" in message
    assert f"stored 0x{zlib.crc32(upload_bytes(image)):08x}" in message


def test_altered_spec_trips_the_image_crc(image_file):
    path, _ = image_file
    with edited(path) as f:
        f["datapath"].attrs["tie_rule"] = (
            "lowest_index" if f["datapath"].attrs["tie_rule"] != "lowest_index" else "max_membrane"
        )
    assert "whole-image CRC-32 mismatch" in refused(path)


def test_spec_fields_missing_unknown_or_invalid(image_file):
    path, _ = image_file
    with edited(path) as f:
        del f["datapath"].attrs["tie_rule"]
    assert "datapath spec lacks field(s) ['tie_rule']" in refused(path)
    with edited(path) as f:
        f["datapath"].attrs["tie_rule"] = "max_membrane"
        f["datapath"].attrs["clock_mhz"] = np.int64(100)
    assert "datapath spec has unknown field(s) ['clock_mhz']" in refused(path)
    with edited(path) as f:
        del f["datapath"].attrs["clock_mhz"]
        f["datapath"].attrs["time_shift"] = np.float64(6.0)
    assert "invalid datapath spec: DatapathConfig: time_shift must be an int, got 6.0" in refused(path)


def test_invalid_network_contents(tmp_path):
    path = tmp_path / "net.h5"
    net = random_exact_network(4, topology=(3, 2), dtype="float32")
    h5io.save_network(path, net)
    w = net.weights[0].copy()
    w[0, 0] = np.nan
    rewrite_dataset(path, "layers/0/weights", w)
    assert "inconsistent network: layer 0: weights contain NaN or inf" in refused(path, h5io.load_network)
    rewrite_dataset(path, "layers/0/weights", np.zeros((4, 2), dtype=np.int32))
    assert "dataset /layers/0/weights has dtype int32, expected a float type" in refused(path, h5io.load_network)
    rewrite_dataset(path, "layers/0/weights", net.weights[0])
    with edited(path) as f:
        f["encoding"].attrs["dark_time"] = np.float64(-1.0)
    assert "invalid encoding: dark_time must be a positive finite time or None" in refused(path, h5io.load_network)


# --- consumers of the file -------------------------------------------------------------------


def test_emulator_agrees_on_original_and_reloaded_image(tmp_path):
    emulator = pytest.importorskip("popcount_learn.emulator")
    spec = DatapathConfig(time_shift=4, current_frac_bits=4, current_bits=24, membrane_bits=24, max_steps=96)
    rng = np.random.default_rng(0)
    layers = []
    for n_pre, n_post in ((16, 12), (12, 4)):
        w = rng.integers(-40, 128, size=(n_pre + 1, n_post)).astype(np.int8)
        layers.append(LayerImage(w, threshold_lsb=int(rng.integers(3000, 9000)), scale=0.01))
    image = WeightImage(spec, tuple(layers), {"mode": "test"})
    h5io.save_weight_image(tmp_path / "e.h5", image)
    reloaded = h5io.load_weight_image(tmp_path / "e.h5")
    pixels = rng.integers(0, 256, size=(40, 16)).astype(np.uint8)
    a = emulator.emulate(image, pixels, full_raster=True)
    b = emulator.emulate(reloaded, pixels, full_raster=True)
    assert np.any(a.predicted >= 0), "test image never decides; the comparison would be vacuous"
    for name in emulator.EmulationResult.FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        for xs, ys in zip(x, y, strict=True) if isinstance(x, tuple) else [(x, y)]:
            np.testing.assert_array_equal(xs, ys, err_msg=name)


@pytest.mark.needs("h5dump")
def test_h5dump_reads_a_weight_image(tmp_path):
    path = tmp_path / "dump.h5"
    h5io.save_weight_image(path, small_image())
    out = subprocess.run(["h5dump", "-H", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'DATASET "weights_lsb"' in out.stdout and "H5T_STD_I8LE" in out.stdout


# --- the seal: every byte covered, checked before HDF5 parses anything ----------------------

PRETRAINED = Path(__file__).resolve().parents[1] / "datasets" / "pretrained"


def test_the_seal_is_the_documented_user_block(tmp_path):
    path = tmp_path / "sealed.h5"
    h5io.save_weight_image(path, small_image())
    data = path.read_bytes()
    body = data[512:]
    text = b"popcount-learn sealed HDF5 1\nsha256 %s\nbytes %d\n" % (
        hashlib.sha256(body).hexdigest().encode(),
        len(body),
    )
    assert data[:512] == text + b"\0" * (512 - len(text))
    assert body[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5 (and h5dump) find the superblock after the user block
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512 and f.attrs["kind"] == "weight-image"
    assert h5io.read_model_file(path).integrity == h5io.SEALED


def test_every_byte_of_a_sealed_file_is_covered(tmp_path):
    # Every byte of the seal, every fourth of the rest (all of them: BENCHMARKS.md, tools/fuzz_model_files.py).
    path = tmp_path / "small.h5"
    h5io.save_network(path, random_exact_network(3, topology=(3, 2)), {"note": "x"})
    data = path.read_bytes()
    accepted = []
    for i in [*range(512), *range(512, len(data), 4)]:
        damaged = bytearray(data)
        damaged[i] ^= 0xFF
        path.write_bytes(damaged)
        try:
            h5io.load_network(path)
            accepted.append(i)
        except ModelFileError:
            pass
    assert accepted == [], f"flips accepted at offsets {accepted[:10]} of {len(data)}"


def test_an_h5py_edit_of_the_learning_rule_is_refused(tmp_path):
    path = tmp_path / "onchip.h5"
    image = dataclasses.replace(small_image(), learning=LearningConfig(margin_steps=4, seed=3))
    h5io.save_weight_image(path, image)
    assert h5io.load_weight_image(path).learning == image.learning
    for group, name, value in (("learning", "margin_steps", np.int64(9)), ("learning", "seed", np.int64(4))):
        h5io.save_weight_image(path, image)
        with h5py.File(path, "r+") as f:
            f[group].attrs[name] = value
        assert "after it was written" in refused(path)
    # A scale, which the exact evaluation of an image uses, likewise.
    h5io.save_weight_image(path, image)
    with h5py.File(path, "r+") as f:
        f["layers/0"].attrs["scale"] = np.float64(2.0)
    assert "after it was written" in refused(path)


def test_a_damaged_seal_or_length_is_refused(tmp_path):
    path = tmp_path / "s.h5"
    h5io.save_weight_image(path, small_image())
    data = path.read_bytes()
    for damaged, needle in (
        (data[:40] + b"X" + data[41:], "damaged seal"),
        (data[:500] + b"\1" + data[501:], "damaged seal"),
        (data + b"\0", "grown after it was written"),
        (data[:-1], "truncated: the seal says"),
        (data[:300], "damaged seal"),
    ):
        path.write_bytes(damaged)
        assert needle in refused(path)


# --- files from before the seal --------------------------------------------------------------


def unseal(path) -> None:
    """The same file as a writer from before the seal wrote it (no user block)."""
    Path(path).write_bytes(Path(path).read_bytes()[512:])


def test_an_unsealed_file_loads_and_says_how_far_it_is_verified(tmp_path):
    path = tmp_path / "old.h5"
    image = small_image()
    h5io.save_weight_image(path, image)
    unseal(path)
    loaded = h5io.read_model_file(path)
    assert loaded.integrity == h5io.UNSEALED and not loaded.fully_verified
    assert_same_image(loaded.model, image)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other.h5\n")
    assert h5io.read_model_file(path).integrity == h5io.UNSEALED  # listed elsewhere, not this one
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  old.h5\n")
    loaded = h5io.read_model_file(path)
    assert loaded.integrity == h5io.LISTED and loaded.fully_verified
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(data)
    assert "SHA256SUMS; the file was damaged or altered" in refused(path)
    (tmp_path / "SHA256SUMS").write_text("not a checksum line\n")
    assert "cannot verify it" in refused(path)


def test_the_shipped_models_are_listed_and_load_with_their_meaning():
    sums = {line.split()[1]: line.split()[0] for line in (PRETRAINED / "SHA256SUMS").read_text().splitlines()}
    assert sorted(sums) == sorted(p.name for p in PRETRAINED.glob("*.h5"))
    for name, digest in sums.items():
        path = PRETRAINED / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        loaded = h5io.read_model_file(path)
        # Files written before the seal are verified by the list; later ones carry their seal.
        assert loaded.integrity == (h5io.SEALED if path.read_bytes().startswith(h5io.SEAL_FIRST_LINE) else h5io.LISTED)
        assert loaded.fully_verified
        with h5py.File(path, "r") as f:  # what the file says, read by plain h5py
            assert tuple(f.attrs["topology"]) == loaded.model.topology
            if isinstance(loaded.model, WeightImage):
                assert int(f.attrs["crc32"]) == image_crc32(loaded.model)
                assert ("learning" in f) == (loaded.model.learning is not None)
            else:
                assert int(f["encoding"].attrs["threshold"]) == loaded.model.encoding.threshold


def test_the_flipped_encoding_of_a_shipped_float_model_is_refused(tmp_path):
    # Byte 22152 of net100.h5 holds /encoding's threshold: the flip makes it 127 instead of 128.
    data = bytearray((PRETRAINED / "net100.h5").read_bytes())
    data[22152] ^= 0xFF
    copy = tmp_path / "net100.h5"
    copy.write_bytes(data)
    with h5py.File(copy, "r") as f:
        assert int(f["encoding"].attrs["threshold"]) == 127  # the flip is where it should be
    (tmp_path / "SHA256SUMS").write_bytes((PRETRAINED / "SHA256SUMS").read_bytes())
    assert "listed in" in refused(copy, h5io.load_network)  # as shipped: the whole file is listed
    (tmp_path / "SHA256SUMS").unlink()
    message = refused(copy, h5io.load_network)  # unlisted: the training metadata's copy disagrees
    assert "/encoding (threshold 127, dark_time None) differs from the encoding recorded" in message
    # Sealed (saved again), the same attribute is covered by the seal.
    net, metadata = h5io.load_network(PRETRAINED / "net100.h5")
    h5io.save_network(copy, net, metadata)
    with h5py.File(copy, "r+") as f:
        f["encoding"].attrs["threshold"] = np.int64(127)
    assert "after it was written" in refused(copy, h5io.load_network)


def test_hdf5_that_never_finishes_is_cut_off_at_the_deadline(tmp_path, monkeypatch):
    path = tmp_path / "old.h5"
    h5io.save_weight_image(path, small_image())
    unseal(path)
    pid_file = tmp_path / "child.pid"

    def spin(data):  # what HDF5 does on some damaged metadata: never returns (here in Python)
        pid_file.write_text(str(os.getpid()))
        while True:
            pass

    monkeypatch.setattr(h5io, "_read_tree", spin)
    monkeypatch.setattr(h5io, "UNVERIFIED_PARSE_DEADLINE_S", 1.0)
    t0 = time.monotonic()
    message = refused(path)
    assert time.monotonic() - t0 < 5
    assert "did not finish reading its structure within 1 s" in message
    child = int(pid_file.read_text())
    assert child != os.getpid()
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left behind
        os.kill(child, 0)


def test_a_crash_while_parsing_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "old.h5"
    h5io.save_weight_image(path, small_image())
    unseal(path)
    monkeypatch.setattr(h5io, "_read_tree", lambda data: os.kill(os.getpid(), signal.SIGKILL))
    assert "HDF5 crashed reading its structure" in refused(path)


def test_a_runaway_allocation_while_parsing_fails_in_the_child(tmp_path, monkeypatch):
    # A damaged size can make HDF5 allocate without bound; the child's address space is capped.
    path = tmp_path / "old.h5"
    h5io.save_weight_image(path, small_image())
    unseal(path)
    monkeypatch.setattr(h5io, "_read_tree", lambda data: bytearray(16 << 30))  # untouched pages, if it got them
    assert "MemoryError" in refused(path)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_is_never_read_nor_replaced(tmp_path, kind):
    path = tmp_path / "node"
    if kind == "fifo":
        os.mkfifo(path)
        what = "a FIFO (named pipe)"
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
        except PermissionError:
            pytest.skip("making a device node needs root")
        what = "a character device"
    t0 = time.monotonic()
    assert f"is {what}, not a model file" in refused(path, h5io.load_model)
    assert time.monotonic() - t0 < 5  # a FIFO with no writer must not block the reader
    with pytest.raises(ModelFileError, match=re.escape(f"is {what}, not a regular file; refusing to replace it")):
        h5io.save_weight_image(path, small_image())
    mode = os.lstat(path).st_mode
    assert (stat.S_ISFIFO if kind == "fifo" else stat.S_ISCHR)(mode)
    assert sorted(os.listdir(tmp_path)) == ["node"]  # no temporary file left


def test_a_save_through_a_symbolic_link_replaces_the_file_it_points_to(tmp_path):
    real = tmp_path / "real.h5"
    h5io.save_weight_image(real, small_image(seed=1))
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    h5io.save_weight_image(link, small_image(seed=2))
    assert link.is_symlink()
    assert_same_image(h5io.load_weight_image(real), small_image(seed=2))


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 64 KiB tmpfs (needs root: mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(tiny_filesystem):
    target = tiny_filesystem / "big.h5"
    net = random_exact_network(2, topology=(300, 40, 10), dtype="float64")  # ~100 KB of weights
    with pytest.raises(ModelFileError) as info:
        h5io.save_network(target, net)
    assert str(info.value) == f"{target}: cannot write: No space left on device"
    assert os.listdir(tiny_filesystem) == []
