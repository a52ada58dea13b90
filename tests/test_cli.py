import json
import subprocess
import sys

import numpy as np
import pytest

from popcount_learn import cli


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "popcount_learn.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_train_small_subset_learns_and_evaluate_reports_json(tmp_path):
    out = tmp_path / "small.h5"
    r = run_cli("--threads", "2", "train", "--hidden", "100", "--epochs", "2", "--limit", "3000",
                "--out", str(out), "--no-progress", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["accuracy"] > 0.6  # chance is 0.1
    assert out.exists()
    r = run_cli("evaluate", str(out), "--limit", "500", "--json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    for key in ("accuracy", "n", "hidden_spikes_before_decision_mean", "input_spikes_before_decision_fraction",
                "no_decision_count"):
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
