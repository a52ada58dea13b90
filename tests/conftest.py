"""Shared fixtures."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The MNIST copy shipped in the repository (``datasets/mnist``)."""
    return REPO_ROOT / "datasets" / "mnist"


@pytest.fixture(scope="session")
def firmware_build_root(tmp_path_factory) -> Path:
    """One firmware build directory per test session (builds are keyed by spec inside it)."""
    return tmp_path_factory.mktemp("firmware")


def pytest_addoption(parser):
    parser.addoption(
        "--board-port", default=None, metavar="URL",
        help="run tests/test_board.py against this board (int8 spec, any learning rule) instead of "
             "a host virtual board it starts itself",
    )
