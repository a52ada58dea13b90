"""The user's own data (issue 14): --data sources (IDX of any size, .npz, scikit-learn's sets),
checked labels and features, the input encoding (binary, latency) and its feature scaling,
carried by models and weight images and taken the same way by the exact model and the emulator."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data import idx_bytes

from popcount_learn import cli, commands, h5io
from popcount_learn.data import FIT, MNIST_FILES, load_split, sklearn_split
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate, encode_input_steps
from popcount_learn.encoding import FeatureScaling, InputEncoding
from popcount_learn.errors import ConfigError, DatasetError
from popcount_learn.network import ExactNetwork
from popcount_learn.quantize import encoding_for, quantize

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "datasets" / "pretrained"


def run(args, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(args, capsys, needle: str) -> str:
    code, _, err = run(args, capsys)
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    return err


def write_npz(path, rng=None, n_train=40, n_test=12, n_features=5, classes=3, **override):
    rng = rng or np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(n_train, n_features)),
        "y_train": np.arange(n_train) % classes,
        "x_test": rng.normal(size=(n_test, n_features)),
        "y_test": np.arange(n_test) % classes,
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


# --- the encoding: one definition of value -> time -> step -------------------------------------


def reference_latency_step(t_max: float, v: int, time_shift: int) -> int:
    """docs/datapath.md, "Input encoding", written out per code."""
    return math.floor(t_max * (255 - v) * float(2**time_shift) / 255 + 0.5)


@settings(max_examples=60, deadline=None)
@given(
    t_max=st.floats(0.01, 4.0),
    silence=st.integers(0, 255),
    time_shift=st.integers(0, 8),
)
def test_latency_step_table_is_the_documented_rounding_of_the_float_times(t_max, silence, time_shift):
    spec = DatapathConfig(time_shift=time_shift, max_steps=1 << 12)
    enc = InputEncoding.latency(t_max, silence)
    table = enc.step_table(spec)
    times = enc.code_times()
    for v in range(256):
        if v < silence:
            assert table[v] == -1 and times[v] == math.inf
            continue
        assert table[v] == reference_latency_step(t_max, v, time_shift)
        assert times[v] == pytest.approx(t_max * (255 - v) / 255, rel=1e-12, abs=1e-15)
        # The step is the nearest grid point of the float time.
        assert abs(table[v] * spec.dt - times[v]) <= spec.dt / 2 + 1e-12
    # Larger values spike no later.
    spiking = table[silence:]
    assert np.all(np.diff(spiking) <= 0)


def test_binary_table_is_the_old_threshold_rule():
    spec = DatapathConfig(input_threshold=100, dark_input_step=7)
    codes = np.arange(256, dtype=np.uint8)[None, :]
    table = encoding_for(spec).step_table(spec)
    assert np.array_equal(table, np.where(np.arange(256) > 100, 0, 7))
    assert np.array_equal(encode_input_steps(spec, codes), table[None, :])
    assert np.array_equal(encode_input_steps(spec, codes, encoding_for(spec)), table[None, :])


def test_latency_t_max_beyond_the_step_window_is_refused():
    with pytest.raises(ConfigError, match="max_steps"):
        InputEncoding.latency(9.0).step_table(DatapathConfig())  # 9 * 64 = 576 > 511


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "latency", "threshold": 100},
        {"kind": "binary", "t_max": 2.0},
        {"kind": "binary", "silence": 3},
        {"kind": "graded"},
        {"kind": "latency", "t_max": -1.0},
        {"kind": "latency", "silence": 256},
    ],
)
def test_encoding_refuses_fields_of_the_other_kind_and_bad_values(fields):
    with pytest.raises(ConfigError):
        InputEncoding(**fields)


def test_encoding_from_dict_is_strict():
    d = InputEncoding.latency(2.0, 5).to_dict()
    assert InputEncoding.from_dict(d) == InputEncoding.latency(2.0, 5)
    with pytest.raises(ConfigError, match="missing"):
        InputEncoding.from_dict({k: v for k, v in d.items() if k != "silence"})
    with pytest.raises(ConfigError, match="unknown"):
        InputEncoding.from_dict(dict(d, colour="red"))


def test_exact_model_takes_the_real_valued_times():
    enc = InputEncoding.latency(1.5, 10)
    codes = np.array([[0, 9, 10, 128, 255]], dtype=np.uint8)
    z = enc.input_z(codes)
    expected = [math.inf, math.inf, math.exp(1.5 * 245 / 255), math.exp(1.5 * 127 / 255), 1.0]
    assert z[0].tolist() == pytest.approx(expected)


def test_feature_scaling_maps_the_training_range_to_codes():
    x = np.array([[0.0, 5.0, 2.0], [10.0, 5.0, 4.0], [2.5, 5.0, 3.0]])
    s = FeatureScaling.fit(x, per_feature=True)
    codes = s.codes(x)
    assert codes[:, 0].tolist() == [0, 255, 64]  # 63.75 rounds up
    assert codes[:, 1].tolist() == [0, 0, 0]  # constant in training
    assert codes[:, 2].tolist() == [0, 255, 128]  # 127.5 -> 128 (half up)
    # Test values outside the training range are clipped, not wrapped.
    assert s.codes(np.array([[-3.0, 1.0, 9.0]])).tolist() == [[0, 0, 255]]
    one = FeatureScaling.fit(x, per_feature=False)
    assert one.low.shape == (1,) and one.codes(np.array([[10.0, 0.0, 5.0]])).tolist() == [[255, 0, 128]]


# --- models and images carry it; old ones mean what they meant --------------------------------


def latency_network(n_in=6, seed=3):
    enc = InputEncoding.latency(1.25, 4, FeatureScaling(np.zeros(n_in), np.arange(1, n_in + 1, dtype=float)))
    rng = np.random.default_rng(seed)
    w0 = rng.normal(0.4, 0.5, size=(n_in + 1, 12))
    w1 = rng.normal(0.3, 0.5, size=(13, 3))
    return ExactNetwork([w0, w1], enc)


def test_one_range_for_all_features_survives_the_files(tmp_path):
    enc = InputEncoding.latency(scaling=FeatureScaling.fit(np.array([[0.0, 3.0], [16.0, 2.0]]), per_feature=False))
    net = ExactNetwork.random((2, 4, 2), encoding=enc)
    h5io.save_network(tmp_path / "g.h5", net)
    back = h5io.load_network(tmp_path / "g.h5")[0].encoding
    assert back == enc and back.scaling.codes(np.array([[8.0, 16.0]])).tolist() == [[128, 255]]


def test_latency_network_and_image_round_trip_through_the_files(tmp_path):
    net = latency_network()
    h5io.save_network(tmp_path / "n.h5", net, {"note": "x"})
    back, _ = h5io.load_network(tmp_path / "n.h5")
    assert back.encoding == net.encoding and back.encoding.scaling == net.encoding.scaling
    image = quantize(back)
    assert image.encoding == net.encoding
    h5io.save_weight_image(tmp_path / "i.h5", image)
    loaded = h5io.load_weight_image(tmp_path / "i.h5")
    assert loaded.input_encoding == net.encoding
    assert np.array_equal(loaded.input_encoding.scaling.high, np.arange(1, 7))
    info = commands.inspect(tmp_path / "i.h5")
    assert info["encoding"]["kind"] == "latency" and info["encoding"]["silence"] == 4


def test_a_latency_image_refuses_binary_spec_fields():
    with pytest.raises(ConfigError, match="binary"):
        quantize(latency_network(), DatapathConfig(input_threshold=100))


@pytest.mark.parametrize("name", ["net100.h5", "net100-int8.h5", "net600-onchip.h5"])
def test_shipped_files_load_as_the_binary_code_they_were_made_with(name, mnist_dir):
    model = h5io.load_model(PRETRAINED / name)
    enc = model.encoding if isinstance(model, ExactNetwork) else model.input_encoding
    assert enc == InputEncoding(kind="binary", threshold=128, dark_time=None)
    if not isinstance(model, ExactNetwork):
        assert model.encoding is None  # nothing new stored or implied
        images = load_split(mnist_dir, "test", 40, n_classes=10).images
        old_rule = np.where(images > 128, 0, -1).astype(np.int32)
        result = emulate(model, images)
        assert np.array_equal(result.input_spike_steps, old_rule)


def test_emulator_takes_the_table_steps_of_a_latency_image():
    image = quantize(latency_network())
    codes = np.random.default_rng(1).integers(0, 256, size=(30, 6)).astype(np.uint8)
    table = image.input_encoding.step_table(image.spec)
    result = emulate(image, codes)
    assert np.array_equal(result.input_spike_steps, table[codes])
    same = emulate(image, input_spike_steps=table[codes])
    assert np.array_equal(same.predicted, result.predicted)
    assert all(np.array_equal(a, b) for a, b in zip(same.spike_steps, result.spike_steps, strict=True))
    # One step moved by one is seen in what the emulator reports.
    moved = table[codes].copy()
    i, j = np.argwhere(moved > 0)[0]
    moved[i, j] -= 1
    assert not np.array_equal(emulate(image, input_spike_steps=moved).input_spike_steps, result.input_spike_steps)
    # Binary steps would be different: the image really is graded.
    assert not np.array_equal(result.input_spike_steps, encode_input_steps(image.spec, codes))


# --- data sources -----------------------------------------------------------------------------


def test_sklearn_sets_load_offline_split_and_stratified():
    train = load_split("sklearn:digits", "train", scaling=FIT)
    test = load_split("sklearn:digits", "test", scaling=train.scaling, n_classes=train.n_classes)
    assert train.images.dtype == np.uint8 and train.images.shape[1] == 64 and train.image_shape == (8, 8)
    assert len(train.labels) + len(test.labels) == 1797 and train.n_classes == 10
    assert train.scaling.low.tolist() == [0.0] and train.scaling.high.tolist() == [16.0]
    for name, n_features, classes in (("breast_cancer", 30, 2), ("iris", 4, 3), ("wine", 13, 3)):
        d = load_split(f"sklearn:{name}", "train", scaling=FIT)
        assert d.images.shape[1] == n_features and d.n_classes == classes and d.image_shape is None
        assert d.scaling.low.shape == (n_features,)
    labels = np.repeat([0, 1, 2], [8, 20, 12])
    tr, te = sklearn_split(labels)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 40
    assert np.bincount(labels[te]).tolist() == [2, 5, 3]
    assert np.array_equal(sklearn_split(labels)[1], te)


def test_npz_floats_are_scaled_by_the_training_split(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    train = load_split(path, "train", scaling=FIT)
    test = load_split(path, "test", scaling=train.scaling, n_classes=3)
    raw = np.load(path)
    lo, hi = raw["x_train"].min(axis=0), raw["x_train"].max(axis=0)
    expected = np.clip(np.floor((raw["x_test"] - lo) * 255 / (hi - lo) + 0.5), 0, 255)
    assert np.array_equal(test.images, expected.astype(np.uint8))
    assert train.images.min(axis=0).tolist() == [0] * 5 and train.images.max(axis=0).tolist() == [255] * 5
    with pytest.raises(DatasetError, match="need scaling"):
        load_split(path, "test", n_classes=3)  # a model trained on codes cannot take floats


def write_idx_dir(directory: Path, rows: int, cols: int, train_labels, test_labels) -> Path:
    directory.mkdir()
    rng = np.random.default_rng(0)
    for split, labels in (("train", train_labels), ("test", test_labels)):
        labels = np.asarray(labels, dtype=np.uint8)
        images = rng.integers(0, 256, size=(len(labels), rows, cols), dtype=np.uint8)
        image_name, label_name = MNIST_FILES[split]
        (directory / image_name).write_bytes(idx_bytes(images))
        (directory / label_name).write_bytes(idx_bytes(labels))
    return directory


def test_idx_of_any_image_size(tmp_path):
    d = write_idx_dir(tmp_path / "small", 5, 7, np.arange(30) % 4, np.arange(8) % 4)
    data = load_split(d, "train")
    assert data.images.shape == (30, 35) and data.image_shape == (5, 7) and data.n_classes == 4


# --- bad data: one line, nothing written -------------------------------------------------------


def _bad_cases(tmp_path):
    labels = np.arange(60) % 3
    mislabelled = labels.copy()
    mislabelled[17] = 200
    yield "mislabelled", write_idx_dir(tmp_path / "ml", 4, 4, mislabelled, np.arange(9) % 3), "label 17 is 200"
    yield "counts", write_npz(tmp_path / "c.npz", y_test=np.arange(11) % 3), "12 samples but 11 labels"
    yield "empty", write_npz(tmp_path / "e.npz", x_test=np.zeros((0, 5)), y_test=np.zeros(0, int)), "the split is empty"
    nan = np.random.default_rng(0).normal(size=(40, 5))
    nan[3, 2] = np.nan
    yield "nan", write_npz(tmp_path / "n.npz", x_train=nan), "sample 3, feature 2 is nan"
    inf = np.random.default_rng(0).normal(size=(12, 5))
    inf[5, 0] = np.inf
    yield "inf", write_npz(tmp_path / "i.npz", x_test=inf), "sample 5, feature 0 is inf"
    yield "missing key", write_npz(tmp_path / "k.npz", y_test=None), "missing key(s) y_test"
    yield "test-only class", write_npz(tmp_path / "t.npz", y_test=np.arange(12) % 4), "label 3 is 3, outside 0..2"
    yield "not integer", write_npz(tmp_path / "f.npz", y_train=np.arange(40) % 3 + 0.5), "not an integer"
    yield "features", write_npz(tmp_path / "w.npz", x_test=np.zeros((12, 4))), "different feature counts"


def test_bad_data_is_one_line_and_nothing_is_written(tmp_path, capsys):
    for what, data, needle in _bad_cases(tmp_path):
        out = tmp_path / f"{what}.h5"
        refused(["train", "--data", data, "--hidden", "4", "--epochs", "1", "--out", out], capsys, needle)
        assert not out.exists(), what
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == []


def test_a_test_class_absent_from_training_is_refused(tmp_path, capsys):
    path = write_npz(tmp_path / "a.npz", y_train=np.arange(40) % 2 * 2, y_test=np.arange(12) % 3)
    # --classes 3 lets label 2 through, but class 1 was never trained on.
    refused(["train", "--data", path, "--classes", "3", "--out", tmp_path / "m.h5"], capsys, "class 1 is in the test")
    assert not (tmp_path / "m.h5").exists()


def test_unknown_sklearn_set_and_augment_on_a_table(tmp_path, capsys):
    refused(["train", "--data", "sklearn:mnist", "--out", tmp_path / "m.h5"], capsys, "unknown scikit-learn set")
    refused(
        ["train", "--data", "sklearn:iris", "--augment-shift", "1", "--out", tmp_path / "m.h5"],
        capsys,
        "table of features",
    )
    refused(["train", "--data", "sklearn:iris", "--t-max", "2", "--encoding", "binary"], capsys, "--t-max")


# --- end to end: train, evaluate, export, emulate on scaled data -----------------------------


def test_train_evaluate_export_on_a_table_keep_the_scaling(tmp_path, capsys):
    model, image = tmp_path / "iris.h5", tmp_path / "iris8.h5"
    code, _, err = run(
        ["--threads", "1", "train", "--data", "sklearn:iris", "--hidden", "16", "--epochs", "2", "--out", model,
         "--no-progress", "--json"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    net, metadata = h5io.load_network(model)
    assert net.encoding.kind == "latency"  # auto: scaled data
    assert net.encoding.scaling.low.shape == (4,)
    assert metadata["config"]["augment_shift_px"] == 0
    assert metadata["classes"] == 3 and metadata["dataset"].startswith("sklearn:iris")
    ev = commands.evaluate(model, data_dir="sklearn:iris")
    assert ev["accuracy"] == metadata["test"]["accuracy"]
    commands.export(model, image, data_dir="sklearn:iris")
    loaded = h5io.load_weight_image(image)
    assert loaded.input_encoding == net.encoding
    em = commands.evaluate(image, data_dir="sklearn:iris", emulate=True)
    test = load_split("sklearn:iris", "test", scaling=net.encoding.scaling, n_classes=3)
    direct = emulate(loaded, test.images)
    assert em["accuracy"] == float((direct.predicted == test.labels).mean())


def test_graded_mnist_emulator_is_bit_exact_against_the_slow_reference(mnist_dir):
    from reference_emulator import diff_results, reference_emulate

    net, _ = h5io.load_network(PRETRAINED / "net100.h5")
    graded = ExactNetwork(net.weights, InputEncoding.latency(4.0, 1))
    image = quantize(graded)
    codes = load_split(mnist_dir, "test", 6, n_classes=10).images
    steps = image.input_encoding.step_table(image.spec)[codes]
    assert len(np.unique(steps)) > 20  # graded: many distinct steps, not 0 / never
    result = emulate(image, codes)
    assert diff_results(result, reference_emulate(image, steps)) == []
    # The comparison sees every first-layer weight moved by one LSB.
    layer = image.layers[0]
    w = np.where(layer.weights_lsb < image.spec.weight_max, layer.weights_lsb + 1, layer.weights_lsb - 1)
    bumped = dataclasses.replace(
        image, layers=(dataclasses.replace(layer, weights_lsb=w.astype(layer.weights_lsb.dtype)), *image.layers[1:])
    )
    assert diff_results(result, reference_emulate(bumped, steps)) != []


def test_evaluate_and_export_check_the_data_with_the_same_loader(tmp_path, capsys):
    rng = np.random.default_rng(2)
    y_test = np.arange(12) % 10
    y_test[4] = 10  # the model has 10 outputs
    path = write_npz(tmp_path / "bad.npz", rng, n_features=784, classes=10, y_test=y_test)
    out = tmp_path / "x.h5"
    refused(["export", PRETRAINED / "net100.h5", "-o", out, "--data", path], capsys, "label 4 is 10, outside 0..9")
    assert not out.exists()
    refused(["evaluate", PRETRAINED / "net100-int8.h5", "--emulate", "--data", path], capsys, "label 4 is 10")
