import json
import subprocess
import sys
from pathlib import Path

import pytest

from popcount_learn import cli

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "popcount_learn.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "small.h5"
    r = run_cli(
        "--threads",
        "2",
        "train",
        "--hidden",
        "100",
        "--epochs",
        "2",
        "--limit",
        "3000",
        "--out",
        str(out),
        "--no-progress",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_train_small_subset_learns_and_evaluate_reports_json(small_model):
    out, summary = small_model
    assert summary["accuracy"] > 0.6  # chance is 0.1
    assert out.exists()
    r = run_cli("evaluate", str(out), "--limit", "500", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    for key in (
        "accuracy",
        "n",
        "hidden_spikes_before_decision_mean",
        "input_spikes_before_decision_fraction",
        "no_decision_count",
    ):
        assert key in ev
    assert ev["n"] == 500
    assert ev["accuracy"] > 0.6
    assert 0.05 < ev["input_weight_rows_read_fraction"] < 0.25
    assert ev["input_spikes_before_decision_fraction"] == 1.0  # dark pixels never spike


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--data", "/nonexistent-dir"], "does not exist"),
        (["evaluate", "/nonexistent-model.h5"], "no such file"),
        (["train", "--epochs", "-3"], "non-negative"),
        (["train", "--limit", "0"], "positive"),
        (["train", "--sparsity", "-1"], "non-negative"),
        (["train", "--seed", "-1"], "non-negative"),
        (["train", "--lr-decay", "1.5"], "lr decay must be in (0, 1]"),
        (["evaluate", "x.h5", "--bits", "40"], "2..16"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(args, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        code = cli.main(args)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_not_a_model_file_is_a_clear_error(tmp_path, capsys):
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"this is not hdf5")
    assert cli.main(["evaluate", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert "bogus.h5" in err and "Traceback" not in err


def test_export_inspect_and_emulate_a_weight_image(small_model, tmp_path):
    model, _ = small_model
    image = tmp_path / "small-int8.h5"
    r = run_cli("export", str(model), "-o", str(image), "--json")
    assert r.returncode == 0, r.stderr
    exported = json.loads(r.stdout)
    assert exported["weight_bits"] == 8 and exported["topology"] == [784, 100, 10]
    assert 0.6 < exported["provenance"]["emulated_test_accuracy"] <= 1.0
    shipped = dict(reversed(line.split()) for line in (REPO / "datasets/mnist/SHA256SUMS").read_text().splitlines())
    assert exported["provenance"]["dataset_sha256"] == {
        name: shipped[name] for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    }

    r = run_cli("inspect", str(image), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "weight_image" and info["checksums_verified"] is True
    assert info["crc32"].startswith("0x")

    plots = tmp_path / "plots"
    r = run_cli("evaluate", str(image), "--emulate", "--json", "--limit", "300", "--plots", str(plots))
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    for key in (
        "mean_steps_to_decision",
        "hidden_spikes_before_decision_mean",
        "input_weight_rows_read_fraction",
        "hidden_weight_rows_read_fraction",
    ):
        assert key in ev
    assert ev["accuracy"] > 0.6 and ev["n"] == 300
    assert sorted(p.name for p in plots.iterdir()) == [
        "hidden_spikes_before_decision.png",
        "raster.png",
        "steps_to_decision.png",
    ]

    # Mistakes around a weight image: one clear line each.
    r = run_cli("export", str(image), "-o", str(tmp_path / "again.h5"), "--bits", "6")
    assert r.returncode == 2 and "cannot re-quantise" in r.stderr
    r = run_cli("export", str(image), "-o", str(tmp_path / "again.h5"), "--spec", "time_shift=8")
    assert r.returncode == 2 and "datapath is fixed" in r.stderr
    assert not (tmp_path / "again.h5").exists()
    # A weight image (e.g. trained on chip) exports as it is, its accuracy measured again.
    r = run_cli("export", str(image), "-o", str(tmp_path / "again.h5"), "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["provenance"]["emulated_test_accuracy"] == exported["provenance"]["emulated_test_accuracy"]
    assert again["provenance"]["source_model"] == str(image)
    not_a_dir = tmp_path / "plainfile"
    not_a_dir.write_text("x")
    r = run_cli("evaluate", str(image), "--emulate", "--limit", "5", "--plots", str(not_a_dir))
    assert r.returncode == 2 and "cannot create the directory" in r.stderr and "Traceback" not in r.stderr

    # A weight image cannot be re-quantised to another width: a clear error, not a silent copy.
    r = run_cli("evaluate", str(image), "--emulate", "--bits", "4")
    assert r.returncode == 2 and "8-bit weight image" in r.stderr

    # Training accepts a weight image as its starting point.
    out = tmp_path / "from-image.h5"
    r = run_cli(
        "train", "--init", str(image), "--epochs", "1", "--limit", "500", "--out", str(out), "--no-progress", "--json"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["accuracy"] > 0.6
    r = run_cli("train", "--init", str(image), "--hidden", "50", "--epochs", "1", "--out", str(out))
    assert r.returncode == 2 and "hidden layers [100]" in r.stderr


def test_an_unwritable_out_path_is_refused_before_training(tmp_path):
    from popcount_learn import commands
    from popcount_learn.errors import ConfigError
    from popcount_learn.train import TrainConfig

    a_file = tmp_path / "plainfile"
    a_file.write_text("x")
    epochs = []
    with pytest.raises(ConfigError, match="not a directory"):
        commands.train(
            config=TrainConfig(hidden=(4,), epochs=1),
            limit=20,
            out=a_file / "model.h5",
            evaluate_every_epoch=False,
            on_epoch=epochs.append,
        )
    assert epochs == []
    with pytest.raises(ConfigError, match="not a directory"):
        commands.export(REPO / "datasets/pretrained/net800.h5", a_file / "image.h5")


def test_spec_overrides_reach_the_emulated_datapath(small_model, tmp_path):
    model, _ = small_model
    image = tmp_path / "fine.h5"
    r = run_cli(
        "export",
        str(model),
        "-o",
        str(image),
        "--spec",
        "time_shift=8",
        "--spec",
        "current_frac_bits=8",
        "--spec",
        "membrane_bits=28",
        "--spec",
        "max_steps=2048",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    r = run_cli("inspect", str(image), "--json")
    spec = json.loads(r.stdout)["datapath"]
    assert (spec["time_shift"], spec["current_frac_bits"], spec["membrane_bits"], spec["max_steps"]) == (8, 8, 28, 2048)
    coarse = json.loads(run_cli("evaluate", str(model), "--emulate", "--limit", "200", "--json").stdout)
    fine = json.loads(
        run_cli(
            "evaluate",
            str(model),
            "--emulate",
            "--limit",
            "200",
            "--json",
            "--spec",
            "time_shift=8",
            "--spec",
            "current_frac_bits=8",
            "--spec",
            "membrane_bits=28",
            "--spec",
            "max_steps=2048",
        ).stdout
    )
    # Four times finer steps: about four times as many of them to the same decisions.
    assert 3.0 < fine["mean_steps_to_decision"] / coarse["mean_steps_to_decision"] < 5.0
    for args, needle in [
        (["--spec", "bogus=1"], "unknown datapath field 'bogus'"),
        (["--spec", "time_shift=x"], "takes an integer"),
        (["--spec", "weight_bits=4"], "--bits"),
        (["--spec", "time_shift"], "FIELD=VALUE"),
    ]:
        r = run_cli("evaluate", str(model), "--emulate", "--limit", "5", *args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_progress_into_a_log_file_is_one_line_per_epoch(tmp_path):
    """stderr that is no terminal gets plain lines, not a redrawn bar (which once wrote 0.6 MB of
    carriage-return frames into the log of one default training)."""
    r = run_cli("train", "--hidden", "8", "--epochs", "3", "--limit", "600", "--out", str(tmp_path / "m.h5"))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"epoch {k + 1}/3: ") for k, line in enumerate(lines)), lines
    assert [line.split()[0] for line in r.stdout.splitlines() if line.startswith("epoch")] == ["epoch"] * 3
    quiet = run_cli(
        "train", "--hidden", "8", "--epochs", "1", "--limit", "300", "--out", str(tmp_path / "q.h5"), "--no-progress"
    )
    assert quiet.returncode == 0 and quiet.stderr == ""
