"""On-chip training end to end: the trainer, the CLI and the weight image it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from popcount_learn import cli, h5io
from popcount_learn.data import load_mnist
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import encode_input_steps, evaluate_emulated
from popcount_learn.encoding import SpikeEncoding
from popcount_learn.learning import LearningConfig
from popcount_learn.onchip import OnchipLearner
from popcount_learn.onchip_train import OnchipTrainConfig, random_initial_image, train_onchip

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "datasets" / "pretrained"


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "popcount_learn.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def mnist_small(mnist_dir):
    train = load_mnist(mnist_dir, "train")
    test = load_mnist(mnist_dir, "test")
    return train.images[:6000], train.labels[:6000], test.images[:2000], test.labels[:2000]


def _fresh_image(hidden=100, seed=0):
    spec = DatapathConfig.for_weight_bits(8)
    config = OnchipTrainConfig(hidden=(hidden,), seed=seed)
    return random_initial_image((784, hidden, 10), spec, config, SpikeEncoding(), 105.0)


def test_from_scratch_learns_and_is_reproducible(mnist_small):
    x, y, xt, yt = mnist_small
    image = _fresh_image()
    before = evaluate_emulated(image, xt, yt)["accuracy"]
    learning = LearningConfig(hidden_update_prob_q16=65536, output_update_prob_q16=65536)
    events = []
    trained, history = train_onchip(
        x,
        y,
        image,
        learning,
        OnchipTrainConfig(hidden=(100,), epochs=1),
        test_images=xt,
        test_labels=yt,
        progress=events.append,
    )
    after = history[-1]["test"]["accuracy"]
    assert before < 0.3 and after > 0.75, (before, after)
    assert after == evaluate_emulated(trained, xt, yt)["accuracy"]
    assert trained.learning == learning and trained.spec == image.spec
    assert events and events[-1].done == len(y)
    again, _ = train_onchip(x, y, image, learning, OnchipTrainConfig(hidden=(100,), epochs=1))
    assert all(np.array_equal(a, b) for a, b in zip(again.weights_lsb, trained.weights_lsb, strict=True))
    other, _ = train_onchip(x, y, image, learning, OnchipTrainConfig(hidden=(100,), epochs=1, seed=1))
    assert not all(np.array_equal(a, b) for a, b in zip(other.weights_lsb, trained.weights_lsb, strict=True))


def test_chunking_does_not_change_the_result(mnist_small):
    x, y, _, _ = mnist_small
    image = _fresh_image(hidden=40)
    learning = LearningConfig(hidden_update_prob_q16=20000, output_update_prob_q16=30000, seed=3)
    a, _ = train_onchip(
        x[:1500],
        y[:1500],
        image,
        learning,
        OnchipTrainConfig(hidden=(40,), epochs=1, chunk_samples=1500, augment_shift_px=0),
    )
    b, _ = train_onchip(
        x[:1500],
        y[:1500],
        image,
        learning,
        OnchipTrainConfig(hidden=(40,), epochs=1, chunk_samples=7, augment_shift_px=0),
    )
    assert all(np.array_equal(p, q) for p, q in zip(a.weights_lsb, b.weights_lsb, strict=True))
    # ... and it equals stepping one sample at a time through the one-step API.
    learner = OnchipLearner(image, learning)
    order = np.random.default_rng(1).permutation(1500)
    steps = encode_input_steps(image.spec, x[:1500])
    for i, s in enumerate(order):
        learner.step(steps[s], int(y[s]), i)
    assert all(np.array_equal(p, q) for p, q in zip(a.weights_lsb, learner.image().weights_lsb, strict=True))


def test_finetuning_the_shipped_image_keeps_it(mnist_small):
    x, y, xt, yt = mnist_small
    image = h5io.load_weight_image(PRETRAINED / "net600-int8.h5")
    base = evaluate_emulated(image, xt, yt)
    learning = LearningConfig(hidden_update_prob_q16=1024, output_update_prob_q16=1024)
    tuned, history = train_onchip(x, y, image, learning, OnchipTrainConfig(epochs=1), test_images=xt, test_labels=yt)
    assert history[-1]["test"]["accuracy"] >= base["accuracy"] - 0.005
    # A trained network changes few weights: most samples are already right by the margin.
    assert history[-1]["samples_with_update_fraction"] < 0.2
    assert any(not np.array_equal(a, b) for a, b in zip(tuned.weights_lsb, image.weights_lsb, strict=True))


def test_cli_onchip_writes_an_image_that_evaluate_inspect_and_training_take(tmp_path):
    out = tmp_path / "oc.h5"
    r = run_cli(
        "--threads",
        "2",
        "train",
        "--mode",
        "onchip",
        "--hidden",
        "50",
        "--epochs",
        "1",
        "--limit",
        "2000",
        "--learn",
        "hidden_update_prob_q16=65536",
        "--learn",
        "output_update_prob_q16=65536",
        "--out",
        str(out),
        "--no-progress",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["accuracy"] > 0.5
    r = run_cli("evaluate", str(out), "--emulate", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["accuracy"] == summary["accuracy"]
    assert set(summary) - {"out"} <= set(ev)
    r = run_cli("inspect", str(out), "--json")
    info = json.loads(r.stdout)
    assert info["learning"]["hidden_update_prob_q16"] == 65536
    assert info["provenance"]["mode"] == "onchip" and info["provenance"]["samples_trained"] == 2000
    # Continuing from the image keeps its rule unless told otherwise.
    out2 = tmp_path / "oc2.h5"
    r = run_cli(
        "train",
        "--mode",
        "onchip",
        "--init",
        str(out),
        "--epochs",
        "1",
        "--limit",
        "500",
        "--learn",
        "margin_steps=3",
        "--out",
        str(out2),
        "--no-progress",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    again = h5io.load_weight_image(out2)
    assert again.learning.margin_steps == 3 and again.learning.hidden_update_prob_q16 == 65536


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--mode", "onchip", "--lr", "0.1"], "--lr applies to --mode exact only"),
        (["train", "--bits", "4"], "--bits applies to --mode onchip only"),
        (["train", "--mode", "onchip", "--learn", "margin=3"], "unknown learning field 'margin'"),
        (["train", "--mode", "onchip", "--learn", "margin_steps=0", "--limit", "10"], "margin_steps must be in"),
        (["train", "--mode", "onchip", "--learn", "seed=x", "--limit", "10"], "takes an integer"),
        (
            ["train", "--mode", "onchip", "--init", str(PRETRAINED / "net600-int8.h5"), "--bits", "6", "--limit", "10"],
            "cannot re-quantise it",
        ),
    ],
)
def test_onchip_user_mistakes_are_one_line(args, needle, capsys, tmp_path):
    code = cli.main([*args, "--out", str(tmp_path / "x.h5"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


def test_a_trained_image_without_a_rule_is_fine_tuned_by_default_and_inspect_says_so(tmp_path):
    """net600-int8.h5 (an exported exact model, no /learning group) trained with no --learn:
    the fine-tune rates, not the from-scratch ones, and inspect reports them beforehand."""
    from popcount_learn import commands
    from popcount_learn.learning import FINE_TUNE_RATES

    source = PRETRAINED / "net600-int8.h5"
    info = commands.inspect(source)
    assert info["learning"] is None
    assert info["onchip_training_rule_origin"] == "fine-tune"
    for name, value in FINE_TUNE_RATES.items():
        assert info["onchip_training_rule"][name] == value
    assert FINE_TUNE_RATES["hidden_update_prob_q16"] < LearningConfig().hidden_update_prob_q16
    out = tmp_path / "tuned.h5"
    result = commands.train_onchip(
        config=OnchipTrainConfig(epochs=1, augment_shift_px=0), init=source, limit=300, out=out
    )
    assert result["learning_rule_origin"] == "fine-tune"
    tuned = h5io.load_weight_image(out)
    assert tuned.learning.to_dict() == info["onchip_training_rule"]
    assert tuned.provenance["learning_rule_origin"] == "fine-tune"
    # The image now carries its rule: inspect says it will be kept, with the schedule continued.
    again = commands.inspect(out)
    assert again["onchip_training_rule_origin"] == "carried"
    assert again["onchip_training_first_sample_index"] == 300
    # --learn still overrides the default.
    forced = commands.train_onchip(
        config=OnchipTrainConfig(epochs=1, augment_shift_px=0),
        init=source,
        limit=50,
        learning_options={"hidden_update_prob_q16": "65536"},
    )
    assert forced["learning"]["hidden_update_prob_q16"] == 65536
    assert forced["learning"]["output_update_prob_q16"] == FINE_TUNE_RATES["output_update_prob_q16"]


def test_continuing_an_onchip_image_continues_its_schedule():
    """net600-onchip.h5 halves its probabilities every 180,000 samples over 900,000: training it
    further starts where it stopped (p = 2048), not at p = 1 again."""
    from popcount_learn.commands import continued_sample_index, inspect

    image = h5io.load_weight_image(PRETRAINED / "net600-onchip.h5")
    assert continued_sample_index(image) == 900000
    info = inspect(PRETRAINED / "net600-onchip.h5")
    assert info["onchip_training_rule_origin"] == "carried"
    assert info["onchip_training_update_prob_q16"] == {"hidden": 2048, "output": 2048}
    # A hand-made provenance that is not an on-chip run's continues nothing.
    import dataclasses

    plain = dataclasses.replace(image, provenance={"samples_trained": 5})
    assert continued_sample_index(plain) == 0
