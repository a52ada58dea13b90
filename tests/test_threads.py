"""The package asks libgomp (Numba's OpenMP layer) for passive waiting unless the user chose."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _policy_seen(env_value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    env["PYTHONPATH"] = str(ROOT)
    code = "import popcount_learn, os; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_passive_wait_policy_by_default_and_a_user_choice_is_kept():
    assert _policy_seen(None) == "PASSIVE"
    assert _policy_seen("ACTIVE") == "ACTIVE"
