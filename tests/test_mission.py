"""Mission-level checks on the real MNIST test set.

The default run checks the shipped 784-600-10 8-bit weight image in the emulator against the
figures the hardware prototype reached (97%, <= 30 hidden spikes, <= 5% of hidden rows read).
The full trainings behind BENCHMARKS.md are marked slow (``python -m pytest -m slow``).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from popcount_learn import h5io
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.emulator import emulate, summarize

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "datasets" / "pretrained"


@pytest.fixture(scope="module")
def mnist_test():
    return load_mnist(default_data_dir(), "test")


@pytest.fixture(scope="module")
def image600():
    return h5io.load_weight_image(PRETRAINED / "net600-int8.h5")


@pytest.fixture(scope="module")
def dense():
    """tools/dense_numpy_emulator.py, the straightforward batched datapath."""
    import dense_numpy_emulator

    return dense_numpy_emulator


def test_shipped_600_hidden_int8_image_meets_the_hardware_figures(mnist_test, image600):
    image = image600
    assert image.topology == (784, 600, 10) and image.spec.weight_bits == 8
    images, labels = mnist_test
    s = summarize(emulate(image, images), labels)
    assert s["n"] == 10000
    assert s["accuracy"] >= 0.970
    assert s["hidden_spikes_before_decision_mean"] <= 30
    assert s["hidden_weight_rows_read_fraction"] <= 0.05
    assert s["input_weight_rows_read_fraction"] <= 0.1326  # the bright-pixel share of MNIST test
    assert s["mean_steps_to_decision"] <= 167
    # The accuracy recorded in the image at export is what the emulator gives today.
    assert image.provenance["emulated_test_accuracy"] == pytest.approx(s["accuracy"], abs=0)


@pytest.mark.parametrize("name, floor", [("net800.h5", 0.975), ("net600.h5", 0.970)])
def test_shipped_float_models_meet_the_exact_model_figures(mnist_test, name, floor):
    from popcount_learn.evaluate import evaluate_exact

    network, metadata = h5io.load_network(PRETRAINED / name)
    images, labels = mnist_test
    s = evaluate_exact(network, images, labels).summary()
    assert s["accuracy"] >= floor
    assert s["hidden_spikes_before_decision_mean"] <= 30
    # The figures stored at training time are what the model gives today.
    assert metadata["test"]["accuracy"] == pytest.approx(s["accuracy"], abs=0)


def test_shipped_image_is_bit_exact_with_the_dense_numpy_datapath(mnist_test, image600, dense):
    image = image600
    images = mnist_test.images[:300]
    fast = emulate(image, images)
    slow = dense.dense_emulate(image, fast.input_spike_steps)
    assert np.array_equal(fast.predicted, slow["predicted"])
    assert np.array_equal(fast.first_output_step, slow["first_output_step"])
    assert np.array_equal(fast.tie, slow["tie"])
    for k in range(len(image.layers)):
        assert np.array_equal(fast.spike_steps[k], slow["spike_steps"][k])


@pytest.mark.slow
@pytest.mark.parametrize("hidden, floor", [(800, 0.975), (600, 0.970)])
def test_full_training_reaches_the_documented_accuracy(tmp_path, hidden, floor):
    out = tmp_path / f"net{hidden}.h5"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "popcount_learn.cli",
            "train",
            "--hidden",
            str(hidden),
            "--out",
            str(out),
            "--no-progress",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["accuracy"] >= floor
    assert summary["hidden_spikes_before_decision_mean"] <= 30


def test_register_high_water_marks_fit_the_declared_widths(mnist_test, image600, dense):
    assert [dense.signed_bits_needed(lo, hi) for lo, hi in [(-128, 127), (-129, 0), (0, 128), (0, 0)]] == [8, 9, 9, 1]
    image = image600
    from popcount_learn.emulator import encode_input_steps

    extremes = []
    dense.dense_emulate(image, encode_input_steps(image.spec, mnist_test.images[:200]), extremes=extremes)
    assert len(extremes) == 2
    for e, layer in zip(extremes, image.layers, strict=True):
        assert e["membrane_max"] >= layer.threshold_lsb  # neurons fired: the peak was reached
        assert dense.signed_bits_needed(e["current_min"], e["current_max"]) <= image.spec.current_bits
        assert dense.signed_bits_needed(e["membrane_min"], e["membrane_max"]) <= image.spec.membrane_bits
        assert e["current_min"] < 0 < e["current_max"]  # inhibition and excitation both happen


# ----------------------------------------------------------------------------------------------
# On-chip learning (docs/learning-rule.md)


def _emulated_summary(image, mnist_test) -> dict:
    """The image's emulated summary on the 10k test images, checked against the accuracy it
    recorded at export."""
    s = summarize(emulate(image, mnist_test.images), mnist_test.labels)
    assert image.provenance["emulated_test_accuracy"] == pytest.approx(s["accuracy"], abs=0)
    return s


def test_shipped_onchip_image_meets_the_floor(mnist_test):
    image = h5io.load_weight_image(PRETRAINED / "net600-onchip.h5")
    assert image.topology == (784, 600, 10) and image.spec.weight_bits == 8
    assert image.learning is not None and image.provenance["mode"] == "onchip"
    s = _emulated_summary(image, mnist_test)
    assert s["accuracy"] >= 0.970


def test_shipped_sparse_onchip_image_decides_on_fewer_hidden_spikes(mnist_test):
    # Trained from scratch with the spike target (hidden_spike_target = 90, BENCHMARKS.md #17):
    # under 28 hidden spikes before the decision where net600-onchip.h5 needs 39.5.
    image = h5io.load_weight_image(PRETRAINED / "net600-onchip-sparse.h5")
    assert image.topology == (784, 600, 10) and image.spec.weight_bits == 8
    assert image.learning.hidden_spike_target == 90 and image.provenance["mode"] == "onchip"
    s = _emulated_summary(image, mnist_test)
    assert s["accuracy"] >= 0.964 and s["hidden_spikes_before_decision_mean"] <= 28.0


def test_shipped_phased_onchip_image_is_the_most_accurate_under_28_spikes(mnist_test):
    # Trained on chip from scratch in two phases (BENCHMARKS.md #17, third part): 3 epochs with the
    # target off (margin 16), then 12 with hidden_spike_target = 48 and the probabilities halving
    # every 360,000 samples: 97.48 % with 27.1 hidden spikes, against 96.49 % / 27.3 of the
    # sparse image (the floor, 97.5 % at <= 28, is missed by 0.02 points).
    image = h5io.load_weight_image(PRETRAINED / "net600-onchip-phased.h5")
    assert image.topology == (784, 600, 10) and image.spec.weight_bits == 8
    assert image.learning.hidden_spike_target == 48 and image.learning.margin_steps == 16
    first = image.provenance["init_provenance"]
    assert first["mode"] == "onchip" and first["init"] is None and first["epochs"] == 3
    s = _emulated_summary(image, mnist_test)
    assert s["accuracy"] >= 0.974 and s["hidden_spikes_before_decision_mean"] <= 28.0


def test_shipped_validated_onchip_image_meets_the_floor(mnist_test):
    # The phased recipe chosen on a validation split (BENCHMARKS.md #17, fourth part: the last
    # 10,000 training images held out, tools/onchip_validation_sweep.py), then trained on all 60k:
    # 3 epochs margin 16 with the target off, then 12 with hidden_spike_target = 48, margin 24,
    # halving every 540,000 samples. 97.51 % with 26.7 hidden spikes (floor 97.5 % at <= 28).
    image = h5io.load_weight_image(PRETRAINED / "net600-onchip-validated.h5")
    assert image.topology == (784, 600, 10) and image.spec.weight_bits == 8
    rule = image.learning
    assert (rule.hidden_spike_target, rule.margin_steps, rule.prob_halving_samples) == (48, 24, 540000)
    first = image.provenance["init_provenance"]
    assert first["mode"] == "onchip" and first["init"] is None and first["epochs"] == 3
    assert image.provenance["train_images"] == 60000 and first["train_images"] == 60000
    s = _emulated_summary(image, mnist_test)
    assert s["accuracy"] >= 0.975 and s["hidden_spikes_before_decision_mean"] <= 28.0


def test_shipped_mse_clipped_4_bit_image_beats_the_first_4_bit_image(mnist_test):
    # QAT with the MSE-optimal clipped scale (BENCHMARKS.md #17, fifth part; scale rule and
    # schedule chosen on a validation split), 10 epochs from net600.h5 on 60k: 98.03 % against
    # 97.79 % for net600-int4.h5 (max scale), with no more hidden spikes before the decision.
    image = h5io.load_weight_image(PRETRAINED / "net600-int4-mse.h5")
    assert image.topology == (784, 600, 10) and image.spec.weight_bits == 4 and image.learning is None
    config = image.provenance["train_config"]
    assert (config["qat_bits"], config["qat_scale"], config["epochs"]) == (4, "mse", 10)
    s = _emulated_summary(image, mnist_test)
    first = _emulated_summary(h5io.load_weight_image(PRETRAINED / "net600-int4.h5"), mnist_test)
    assert s["accuracy"] >= 0.980 > first["accuracy"]
    assert s["hidden_spikes_before_decision_mean"] <= first["hidden_spikes_before_decision_mean"] + 0.1
    assert all(abs(int(np.max(np.abs(layer.weights_lsb)))) == 7 for layer in image.layers)


def test_quick_onchip_run_from_scratch_learns(tmp_path):
    # The quick run: 784-100-10, one epoch on the first 10k training images.
    out = tmp_path / "quick.h5"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "popcount_learn.cli",
            "train",
            "--mode",
            "onchip",
            "--hidden",
            "100",
            "--epochs",
            "1",
            "--limit",
            "10000",
            "--seed",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["accuracy"] >= 0.80


def test_finetuning_the_shipped_image_with_the_rule_keeps_its_accuracy(mnist_test, image600):
    from popcount_learn.learning import LearningConfig
    from popcount_learn.onchip_train import OnchipTrainConfig, train_onchip

    train = load_mnist(default_data_dir(), "train")
    base = summarize(emulate(image600, mnist_test.images), mnist_test.labels)
    # The README's fine-tuning recipe: the output layer learns at 1/64, the hidden layer at 1/1024.
    learning = LearningConfig(hidden_update_prob_q16=64, output_update_prob_q16=1024, prob_halving_samples=0)
    tuned, history = train_onchip(
        train.images,
        train.labels,
        image600,
        learning,
        OnchipTrainConfig(epochs=1),
        test_images=mnist_test.images,
        test_labels=mnist_test.labels,
    )
    after = history[-1]["test"]
    assert after["accuracy"] >= base["accuracy"] - 0.003
    assert after["hidden_spikes_before_decision_mean"] <= base["hidden_spikes_before_decision_mean"]
    assert any(not np.array_equal(a, b) for a, b in zip(tuned.weights_lsb, image600.weights_lsb, strict=True))


@pytest.mark.slow
def test_full_onchip_training_from_scratch_reaches_the_floor(tmp_path):
    out = tmp_path / "onchip600.h5"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "popcount_learn.cli",
            "train",
            "--mode",
            "onchip",
            "--out",
            str(out),
            "--no-progress",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["accuracy"] >= 0.95
