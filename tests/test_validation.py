"""A validation split (issue 14): the last training samples held out before --limit, measured per
epoch, stored with the model; nothing changes unless it is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from popcount_learn import cli, commands, h5io
from popcount_learn.data import FIT, load_split, load_splits, validation_count
from popcount_learn.errors import ConfigError, DatasetError
from popcount_learn.evaluate import evaluate_exact
from popcount_learn.onchip_train import OnchipTrainConfig
from popcount_learn.train import TrainConfig


def _table(path, n_train=40, n_test=12, seed=0, y_train=None):
    rng = np.random.default_rng(seed)
    y = np.arange(n_train) % 3 if y_train is None else y_train
    x_train = rng.normal(size=(n_train, 5)) + y[:, None]  # learnable: the class shifts every feature
    y_test = np.arange(n_test) % 3
    np.savez(path, x_train=x_train, y_train=y, x_test=rng.normal(size=(n_test, 5)) + y_test[:, None], y_test=y_test)
    return path


def test_validation_count_takes_a_count_or_a_fraction():
    assert validation_count(None, 100) == 0
    assert validation_count(10, 100) == 10
    assert validation_count(0.25, 114) == round(0.25 * 114) == 28
    assert validation_count(0.001, 100) == 1  # a fraction never holds out nothing
    for bad in (0, -3, 1.5, 100, 250, True, "5"):
        with pytest.raises(ConfigError):
            validation_count(bad, 100)


def test_the_last_samples_are_held_out_before_the_limit_and_the_scaling_is_fitted_without_them(tmp_path):
    path = _table(tmp_path / "t.npz")
    whole = load_split(str(path), "train", scaling=FIT)
    train = load_split(str(path), "train", scaling=FIT, validation=10)
    val = load_split(str(path), "validation", scaling=train.scaling, validation=10)
    raw = np.load(path)["x_train"]
    assert train.n_samples == 30 and val.n_samples == 10
    assert np.array_equal(train.scaling.low, raw[:30].min(axis=0))  # not the held-out samples' range
    assert not np.array_equal(train.scaling.low, whole.scaling.low)
    assert np.array_equal(val.images, train.scaling.codes(raw[30:]))
    assert np.array_equal(np.concatenate([train.labels, val.labels]), whole.labels)
    assert train.validation == val.validation == {"asked": 10, "samples": 10, "first_index": 30}
    limited = load_split(str(path), "train", 7, scaling=FIT, validation=10)
    assert np.array_equal(limited.images, train.images[:7])  # --limit cuts what remains
    assert whole.validation is None


def test_a_held_out_tail_with_a_whole_class_is_refused(tmp_path):
    path = _table(tmp_path / "s.npz", y_train=np.repeat([0, 1, 2], [15, 15, 10]))  # sorted by class
    with pytest.raises(DatasetError, match="every sample of class 2"):
        load_split(str(path), "train", scaling=FIT, validation=10)
    assert load_split(str(path), "train", scaling=FIT, validation=9).n_samples == 31
    with pytest.raises(ConfigError):
        load_split(str(path), "validation", scaling=FIT)  # which samples? not said


def test_sklearn_training_order_is_shuffled_so_a_tail_holds_every_class():
    # iris is stored sorted by class: its last 28 training samples would be one class.
    val = load_split("sklearn:iris", "validation", scaling=FIT, validation=0.25)
    assert val.n_samples == 28 and len(np.unique(val.labels)) == 3


def test_train_measures_the_held_out_samples_every_epoch_and_keeps_them_in_the_model(tmp_path):
    path = _table(tmp_path / "t.npz", n_train=60)
    out = tmp_path / "m.h5"
    config = TrainConfig(hidden=(16,), epochs=2, augment_shift_px=0)
    result = commands.train(config=config, data_dir=str(path), out=out, validation=15, given={"epochs"})
    history = result["history"]
    assert [("validation" in r) for r in history] == [True, True]
    network, metadata = h5io.load_model_and_metadata(out)
    train = load_split(str(path), "train", scaling=FIT, validation=15)
    val = load_split(str(path), "validation", scaling=network.encoding.scaling, validation=15)
    again = evaluate_exact(network, val.images, val.labels).summary()
    assert result["validation"] == again == history[-1]["validation"] == metadata["validation"]["summary"]
    assert metadata["validation"]["samples"] == 15 and metadata["validation"]["first_index"] == 45
    assert metadata["train_images"] == train.n_samples == 45
    # Trained on the remaining 45 only: the same as training on a file that holds just those.
    raw = np.load(path)
    cut = tmp_path / "cut.npz"
    np.savez(cut, x_train=raw["x_train"][:45], y_train=raw["y_train"][:45], x_test=raw["x_test"], y_test=raw["y_test"])
    commands.train(config=config, data_dir=str(cut), out=tmp_path / "c.h5", given={"epochs"})
    alone = h5io.load_model(tmp_path / "c.h5")
    assert all(np.array_equal(a, b) for a, b in zip(alone.weights, network.weights, strict=True))


def test_cli_prints_validation_and_refuses_bad_sizes_in_one_line(tmp_path, capsys):
    path = _table(tmp_path / "t.npz", n_train=30)
    out = tmp_path / "m.h5"
    base = ["--threads", "1", "train", "--data", str(path), "--hidden", "8", "--epochs", "1", "--out", str(out)]
    assert cli.main([*base, "--validation", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "val acc" in printed and "validation_accuracy" in printed
    out.unlink()
    for bad in ("0", "1.0", "-2", "x", "1e9"):  # refused by the parser: usage and one line
        with pytest.raises(SystemExit) as stop:
            cli.main([*base, "--validation", bad])
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and "argument --validation" in err[0] and not out.exists()
    assert cli.main([*base, "--validation", "30"]) == 2  # all 30 samples: none left to train on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least one must remain" in err[0] and not out.exists()


def _count_calls(monkeypatch, owner, name) -> list:
    """Replace ``owner.name`` by a wrapper that records its first argument; returns the record."""
    calls, real = [], getattr(owner, name)

    def counted(first, *args, **kwargs):
        calls.append(str(first))
        return real(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_a_training_run_reads_each_data_file_once(tmp_path, monkeypatch):
    from test_user_data import write_idx_dir

    from popcount_learn import data

    config = TrainConfig(hidden=(8,), epochs=1, augment_shift_px=0)
    idx = write_idx_dir(tmp_path / "idx", 5, 7, np.arange(40) % 4, np.arange(12) % 4)
    reads = _count_calls(monkeypatch, data, "read_idx")
    commands.train(config=config, data_dir=str(idx), validation=8, given={"epochs"})
    assert sorted(Path(p).name for p in reads) == sorted(n for names in data.MNIST_FILES.values() for n in names)

    table = _table(tmp_path / "t.npz")
    opened = _count_calls(monkeypatch, np, "load")
    commands.train(config=config, data_dir=str(table), validation=8, given={"epochs"})
    assert opened == [str(table)]
    del opened[:]
    commands.train_onchip(config=OnchipTrainConfig(hidden=(8,), epochs=1), data_dir=str(table), validation=8)
    assert opened == [str(table)]


def test_load_splits_gives_what_the_single_splits_give(tmp_path):
    path = str(_table(tmp_path / "t.npz"))
    train, test, val = load_splits(path, 20, validation=10)
    one_train = load_split(path, "train", 20, scaling=FIT, validation=10)
    assert train.scaling == one_train.scaling and train.validation == val.validation == one_train.validation
    for got, want in (
        (train, one_train),
        (test, load_split(path, "test", scaling=one_train.scaling, n_classes=3)),
        (val, load_split(path, "validation", scaling=one_train.scaling, validation=10)),
    ):
        assert np.array_equal(got.images, want.images) and np.array_equal(got.labels, want.labels)
    assert load_splits(path).validation is None and load_splits(path, test_limit=5).test.n_samples == 5
