"""HDF5 checkpoints and weight images: round trips, the upload stream, atomic writes, corruption.

Expected values are computed here from the documented layout (docs/weight-image.md) with struct,
hashlib and zlib, never by calling the code under test for the answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import struct
import subprocess
import zlib

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
    with h5py.File(path, "r+") as f:
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
    with h5py.File(path, "r+") as f:
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
    with h5py.File(path, "r+") as f:
        value = f[group].attrs[name]
        f[group].attrs[name] = np.array([value] * n_values, dtype=h5py.string_dtype())
    message = refused(path, h5io.load_model)
    assert f"attribute '{name}' on " in message and f"must be a scalar, got an array of shape ({n_values},)" in message


def test_unsupported_version(image_file):
    path, _ = image_file
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(2)
    message = refused(path)
    assert "format version 2 is not supported" in message and "reads version(s) 1" in message


def test_unknown_kind(image_file):
    path, _ = image_file
    with h5py.File(path, "r+") as f:
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
    assert "SHA-256 mismatch in dataset /layers/0/weights" in refused(path, h5io.load_network)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_file(image_file, keep):
    path, _ = image_file
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
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
    with h5py.File(path, "r+") as f:
        f["layers/1"].attrs["threshold_lsb"] = np.int16(3000)
    assert "layer 1: threshold_lsb 3000 outside 1..2047 (12-bit membrane register)" in refused(path)


def test_wrong_shape(image_file):
    path, image = image_file
    w = np.zeros((image.topology[1] + 2, image.topology[2]), dtype=np.int8)
    rewrite_dataset(path, "layers/1/weights_lsb", w)
    assert "layer 1: weights_lsb has shape (6, 3), but topology (5, 4, 3) needs (5, 3)" in refused(path)


def test_layer_count_disagrees_with_topology(image_file):
    path, _ = image_file
    with h5py.File(path, "r+") as f:
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
    with h5py.File(path, "r+") as f:
        f["layers/0"].attrs["threshold_lsb"] = np.float64(100.0)
    assert "layer 0: threshold_lsb must be a scalar int16 for membrane_bits=12" in refused(path)


def test_missing_checksum(image_file):
    path, _ = image_file
    with h5py.File(path, "r+") as f:
        del f["layers/0/weights_lsb"].attrs["sha256"]
    assert "missing attribute 'sha256' on /layers/0/weights_lsb" in refused(path)


def test_altered_threshold_trips_the_image_crc(image_file):
    path, image = image_file
    with h5py.File(path, "r+") as f:
        f["layers/0"].attrs["threshold_lsb"] = np.int16(image.layers[0].threshold_lsb % 2047 + 1)
    message = refused(path)
    assert "whole-image CRC-32 mismatch" in message
    assert f"stored 0x{zlib.crc32(upload_bytes(image)):08x}" in message


def test_altered_spec_trips_the_image_crc(image_file):
    path, _ = image_file
    with h5py.File(path, "r+") as f:
        f["datapath"].attrs["tie_rule"] = (
            "lowest_index" if f["datapath"].attrs["tie_rule"] != "lowest_index" else "max_membrane"
        )
    assert "whole-image CRC-32 mismatch" in refused(path)


def test_spec_fields_missing_unknown_or_invalid(image_file):
    path, _ = image_file
    with h5py.File(path, "r+") as f:
        del f["datapath"].attrs["tie_rule"]
    assert "datapath spec lacks field(s) ['tie_rule']" in refused(path)
    with h5py.File(path, "r+") as f:
        f["datapath"].attrs["tie_rule"] = "max_membrane"
        f["datapath"].attrs["clock_mhz"] = np.int64(100)
    assert "datapath spec has unknown field(s) ['clock_mhz']" in refused(path)
    with h5py.File(path, "r+") as f:
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
    with h5py.File(path, "r+") as f:
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
