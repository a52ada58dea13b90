"""The recipe travels (issue 14): defaults derived from the data (the budget in Adam steps) that
leave binarised MNIST as it was, on-chip training that keeps a latency encoding, and the
cost-against-silence plot."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from popcount_learn import cli, commands, plots
from popcount_learn.encoding import FeatureScaling, InputEncoding, common_level_fraction, latency_t_max_for
from popcount_learn.errors import ConfigError
from popcount_learn.train import MIN_ADAM_STEPS, TrainConfig, budget_for


def test_a_set_with_enough_steps_keeps_the_tuned_budget():
    config = TrainConfig()
    for n in (60_000, 3000, 1347, 427):  # MNIST, the invariant's --limit 3000, digits, breast_cancer
        adapted = budget_for(config, n)
        steps = math.ceil(n / config.batch_size) * config.epochs
        if steps >= MIN_ADAM_STEPS:
            assert adapted is config  # not even a copy: MNIST runs exactly the tuned numbers
        else:
            assert adapted.epochs > config.epochs


def test_a_small_set_gets_more_epochs_and_the_same_total_lr_decay():
    config = TrainConfig()
    adapted = budget_for(config, 114)  # iris' training split: 4 steps an epoch
    assert adapted.epochs == math.ceil(MIN_ADAM_STEPS / 4) == 375
    assert math.ceil(114 / 32) * adapted.epochs >= MIN_ADAM_STEPS
    assert adapted.lr_decay**adapted.epochs == pytest.approx(config.lr_decay**config.epochs, rel=1e-9)
    assert dataclasses.replace(adapted, epochs=config.epochs, lr_decay=config.lr_decay) == config


def test_asked_for_fields_are_kept():
    config = TrainConfig(epochs=7)
    assert budget_for(config, 114) is config  # not the default: asked for, from Python too
    assert budget_for(TrainConfig(), 114, given={"epochs"}) == TrainConfig()  # --epochs 30
    for config, given in ((TrainConfig(lr_decay=0.93), {"lr_decay"}), (TrainConfig(lr_decay=0.5), set())):
        kept = budget_for(config, 114, given=given)
        assert kept.epochs == 375 and kept.lr_decay == config.lr_decay
    assert budget_for(TrainConfig(epochs=0), 114).epochs == 0


def test_latency_defaults_every_code_spiking_and_auto_keeps_binary_for_idx_codes():
    scaling = FeatureScaling.fit(np.arange(4.0)[None], False)
    codes = np.array([[0, 255, 0, 255], [0, 0, 255, 255]], np.uint8)  # every code at an end: t_max 3
    image = SimpleNamespace(image_shape=(2, 2), scaling=scaling, images=codes)
    table = SimpleNamespace(image_shape=None, scaling=scaling, images=np.full((2, 4), 77, np.uint8))
    assert commands.choose_encoding("latency", image).silence == 0
    assert commands.choose_encoding("latency", image).t_max == 3.0 == InputEncoding.latency().t_max
    assert commands.choose_encoding("latency", table).t_max == 2.0  # every code graded
    assert commands.choose_encoding("latency", table, t_max=4.5).t_max == 4.5  # asked for: kept
    assert commands.choose_encoding("auto", table).silence == 0
    assert commands.choose_encoding("latency", image, silence=3).silence == 3
    assert commands.choose_encoding("auto", image).kind == "latency"
    mnist = SimpleNamespace(image_shape=(28, 28), scaling=None)  # IDX codes: binary, as tuned
    assert commands.choose_encoding("auto", mnist) == InputEncoding()


def test_latency_window_is_derived_from_the_share_of_codes_at_the_ends():
    # 2 + max(f, m): f the fraction of codes that are 0 or 255 (3 of 8 here), m = 0 for one sample.
    codes = np.array([[0, 255, 255, 10, 20, 30, 40, 50]], np.uint8)
    assert latency_t_max_for(codes) == 2.38
    assert latency_t_max_for(np.zeros((3, 5), np.uint8)) == 3.0
    assert latency_t_max_for(np.full((3, 5), 128, np.uint8)) == 2.0
    assert latency_t_max_for(np.zeros((0, 5), np.uint8)) == 3.0
    with pytest.raises(ConfigError):
        latency_t_max_for(np.zeros((2, 2), np.float64))  # codes, not raw features


def test_latency_window_grows_with_the_share_of_the_samples_common_level():
    level_only = np.repeat(np.array([[10], [60], [200]], np.uint8), 4, axis=1)  # samples differ in level alone
    pattern_only = np.array([[10, 200, 60, 130], [200, 10, 130, 60], [60, 130, 200, 10]], np.uint8)  # equal means
    assert common_level_fraction(level_only) == 1.0 and latency_t_max_for(level_only) == 3.0
    assert common_level_fraction(pattern_only) == 0.0 and latency_t_max_for(pattern_only) == 2.0
    rng = np.random.default_rng(5)
    for n_features in (2, 4, 30):  # the slow reference; independent features give about 1 / n_features
        codes = rng.integers(1, 255, size=(400, n_features)).astype(np.uint8)
        x = codes.astype(np.float64)
        m = common_level_fraction(codes)
        assert m == pytest.approx(x.mean(axis=1).var() / x.var(), rel=1e-12)
        assert m == pytest.approx(1 / n_features, rel=0.3)
        assert latency_t_max_for(codes) == round(2 + m, 2)
    base = rng.integers(1, 255, size=(400, 1))
    correlated = np.clip(base + rng.integers(-20, 21, size=(400, 4)), 1, 254).astype(np.uint8)  # one level, like iris
    assert latency_t_max_for(correlated) > 2.8
    ends = np.array([[0, 255, 7, 9], [255, 0, 9, 7]], np.uint8)  # f = 0.5, m = 0: the larger decides
    assert latency_t_max_for(ends) == 2.5
    both = np.clip(rng.integers(-40, 296, size=(300, 1)) + rng.integers(-60, 61, size=(300, 6)), 0, 255)
    both = both.astype(np.uint8)  # levels clipped at the ends: f and m both well above 0
    f = np.isin(both, (0, 255)).mean()
    m = both.astype(np.float64).mean(axis=1).var() / both.astype(np.float64).var()
    assert min(f, m) > 0.1 and latency_t_max_for(both) == round(2 + max(f, m), 2)
    assert common_level_fraction(np.zeros((4, 1), np.uint8)) == common_level_fraction(codes[:1]) == 0.0


class _Stop(Exception):
    pass


def test_cli_adapts_the_budget_and_keeps_lr_decay_as_asked(monkeypatch, tmp_path):
    seen = []

    def capture(images, labels, config, **kwargs):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(commands, "train_exact", capture)
    rng = np.random.default_rng(0)  # an iris-sized table: 114 training samples, 4 features
    data = tmp_path / "t.npz"
    np.savez(data, x_train=rng.normal(size=(114, 4)), y_train=np.arange(114) % 3,
             x_test=rng.normal(size=(9, 4)), y_test=np.arange(9) % 3)  # fmt: skip
    base = ["--threads", "1", "train", "--data", str(data), "--out", str(tmp_path / "m.h5")]
    for extra in ([], ["--lr-decay", "0.9"], ["--epochs", "3"]):
        with pytest.raises(_Stop):  # stopped in training: nothing is written
            cli.main([*base, *extra])
    assert not (tmp_path / "m.h5").exists()
    plain, decay, epochs = seen
    assert plain.epochs == 375 and plain.lr_decay == pytest.approx(0.93 ** (30 / 375))
    assert decay.epochs == 375 and decay.lr_decay == 0.9  # --lr-decay is kept as given
    assert epochs.epochs == 3 and epochs.lr_decay == 0.93


def test_cost_plot_is_written_and_refuses_ragged_columns(tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.plot_cost_against_silence([0, 1, 64], [60.0, 30.0, 12.0], [0.97, 0.96, 0.9], tmp_path / "c.png",
                                           emulator_accuracy=[0.96, 0.96, 0.89])  # fmt: skip
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError):
        plots.plot_cost_against_silence([0, 1], [60.0], [0.9, 0.8], tmp_path / "d.png")
    assert not (tmp_path / "d.png").exists()
    with pytest.raises(ConfigError):
        plots.plot_cost_against_silence(np.zeros(0), [], [], tmp_path / "e.png")


def test_onchip_training_keeps_a_latency_encoding_and_is_measured_with_it():
    # Before the fix OnchipLearner.image() dropped the encoding: a latency network trained on
    # the latency steps was measured (and saved) as a binary one, 37 % on breast_cancer.
    from popcount_learn.datapath import DatapathConfig
    from popcount_learn.emulator import emulate, summarize
    from popcount_learn.learning import LearningConfig
    from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image, train_onchip

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(48, 6)).astype(np.uint8)
    labels = (codes[:, 0] > 127).astype(np.int64)
    encoding = InputEncoding.latency(4.0, 0)
    config = OnchipTrainConfig(hidden=(12,), epochs=1, augment_shift_px=0)
    image = random_initial_image((6, 12, 2), DatapathConfig(), config, encoding, 7.0)
    trained, history = train_onchip(
        codes, labels, image, LearningConfig(), config, test_images=codes, test_labels=labels
    )
    assert trained.input_encoding == encoding
    assert history[-1]["test"] == summarize(emulate(trained, codes), labels)
    as_binary = dataclasses.replace(trained, encoding=None)
    assert not np.array_equal(emulate(as_binary, codes).first_output_step, emulate(trained, codes).first_output_step)
