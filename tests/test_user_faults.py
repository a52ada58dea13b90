"""What a careless user or a hostile environment hands the commands (issue 18): output paths
that are not files or are the command's own input, damaged or edited models, empty data
splits, arguments that would be ignored. Each must end in one line and exit status 2, before
any work is spent and without touching what sits at the paths."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_data import idx_bytes

from popcount_learn import cli, h5io
from popcount_learn.data import MNIST_FILES

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "datasets" / "pretrained"
MNIST = REPO / "datasets" / "mnist"


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


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- output paths ------------------------------------------------------------------------------


@pytest.fixture
def node(tmp_path, request):
    """A FIFO or a character device node (a /dev/null of our own) where an output would go."""
    path = tmp_path / "node"
    if request.param == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("making a device node needs root")
    return path, stat.S_ISFIFO if request.param == "fifo" else stat.S_ISCHR


@pytest.mark.parametrize("node", ["fifo", "device"], indirect=True)
@pytest.mark.parametrize(
    "command",
    [
        ["train", "--limit", "10", "--epochs", "1", "--hidden", "5", "--out"],
        ["train", "--mode", "onchip", "--limit", "10", "--epochs", "1", "--hidden", "5", "--out"],
        ["export", PRETRAINED / "net100.h5", "-o"],
    ],
    ids=["train", "train-onchip", "export"],
)
def test_an_output_that_is_no_regular_file_is_refused_and_left_alone(node, command, capsys):
    path, is_kind = node
    refused([*command, path], capsys, "not a regular file; refusing to replace it")
    assert is_kind(os.lstat(path).st_mode)
    assert os.listdir(path.parent) == ["node"]


def test_export_onto_its_own_float_input_is_refused(tmp_path, capsys):
    model = tmp_path / "fcopy.h5"
    shutil.copyfile(PRETRAINED / "net100.h5", model)
    before = digest(model)
    refused(["export", model, "-o", model], capsys, "would replace the float model it is made from")
    link = tmp_path / "alias.h5"
    link.symlink_to(model)
    refused(["export", model, "-o", link], capsys, "is the input")
    refused(["train", "--mode", "onchip", "--init", model, "--limit", "10", "--out", model], capsys, "is the input")
    assert digest(model) == before


def test_the_same_kind_in_and_out_is_allowed(tmp_path, capsys):
    image = tmp_path / "image.h5"
    shutil.copyfile(PRETRAINED / "net100-int8.h5", image)
    code, _, err = run(["export", image, "-o", image, "--json"], capsys)
    assert code == 0, err
    assert h5io.read_model_file(image).integrity == h5io.SEALED  # re-measured and sealed in place
    # ... and the image says that its source was a file nothing vouched for as a whole
    assert h5io.load_weight_image(image).provenance["source_integrity"] == h5io.UNSEALED
    assert h5io.load_weight_image(image).layers[0].weights_lsb.tobytes() == (
        h5io.load_weight_image(PRETRAINED / "net100-int8.h5").layers[0].weights_lsb.tobytes()
    )


# --- damaged or edited models ------------------------------------------------------------------


def test_a_flipped_encoding_is_refused_by_every_command_and_never_laundered(tmp_path, capsys):
    # net100.h5 with byte 22152 flipped (/encoding threshold 128 -> 127), once as shipped (listed
    # in SHA256SUMS) and once alone (checked against its training metadata).
    for with_sums in (True, False):
        d = tmp_path / f"sums-{with_sums}"
        d.mkdir()
        data = bytearray((PRETRAINED / "net100.h5").read_bytes())
        data[22152] ^= 0xFF
        (d / "net100.h5").write_bytes(data)
        if with_sums:
            shutil.copyfile(PRETRAINED / "SHA256SUMS", d / "SHA256SUMS")
        model = d / "net100.h5"
        refused(["inspect", model], capsys, str(model))
        refused(["evaluate", model, "--limit", "20"], capsys, str(model))
        refused(["export", model, "-o", d / "image.h5"], capsys, str(model))
        assert not (d / "image.h5").exists()


def test_an_h5py_edit_of_the_learning_rule_is_refused_by_inspect_and_evaluate(tmp_path, capsys):
    image = tmp_path / "onchip.h5"
    h5io.save_weight_image(image, h5io.load_weight_image(PRETRAINED / "net600-onchip.h5"))
    code, out, _ = run(["inspect", image, "--json"], capsys)
    assert code == 0 and '"checksums_verified": true' in out
    with h5py.File(image, "r+") as f:
        f["learning"].attrs["margin_steps"] = np.int64(f["learning"].attrs["margin_steps"] + 1)
    refused(["inspect", image], capsys, "after it was written")
    refused(["evaluate", image, "--emulate", "--limit", "20"], capsys, "after it was written")


def test_inspect_says_how_far_a_file_was_verified(tmp_path, capsys):
    code, out, _ = run(["inspect", PRETRAINED / "net100-int8.h5", "--json"], capsys)
    assert code == 0 and '"checksums_verified": true' in out and "matches its SHA256SUMS entry" in out
    alone = tmp_path / "net100-int8.h5"
    shutil.copyfile(PRETRAINED / "net100-int8.h5", alone)  # no SHA256SUMS beside it
    code, out, _ = run(["inspect", alone, "--json"], capsys)
    assert code == 0 and '"checksums_verified": false' in out and "learning rule, scales and provenance" in out


# --- empty and mismatched data -----------------------------------------------------------------


def write_split(directory: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    image_name, label_name = MNIST_FILES[split]
    (directory / image_name).write_bytes(idx_bytes(images))
    (directory / label_name).write_bytes(idx_bytes(labels))


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    """``no-train``: 0 training images; ``no-test``: 0 test images; ``small-images``: 5 x 5 pixels."""
    rng = np.random.default_rng(0)
    some = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20, dtype=np.uint8)
    none = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
    small = rng.integers(0, 256, (20, 5, 5), dtype=np.uint8), rng.integers(0, 10, 20, dtype=np.uint8)
    dirs = {}
    for name, train, test in (("no-train", none, some), ("no-test", some, none), ("small-images", small, small)):
        d = tmp_path_factory.mktemp(name)
        write_split(d, "train", *train)
        write_split(d, "test", *test)
        dirs[name] = d
    return dirs


IMAGE = PRETRAINED / "net100-int8.h5"
FLOAT = PRETRAINED / "net100.h5"
EMPTY_SPLIT_COMMANDS = {
    "train": ("no-train", ["train", "--epochs", "1", "--hidden", "5", "--out", "{tmp}/m.h5"]),
    "train-test-split": ("no-test", ["train", "--epochs", "1", "--hidden", "5", "--out", "{tmp}/m.h5"]),
    "train-onchip": (
        "no-train",
        ["train", "--mode", "onchip", "--epochs", "1", "--hidden", "5", "--out", "{tmp}/m.h5"],
    ),
    "evaluate": ("no-test", ["evaluate", FLOAT]),
    "evaluate-emulate": ("no-test", ["evaluate", IMAGE, "--emulate"]),
    "export": ("no-test", ["export", FLOAT, "-o", "{tmp}/x.h5"]),
    "board-compare": ("no-test", ["board", "compare", "--port", "loop://", "--image", IMAGE]),
    "board-train": ("no-train", ["board", "train", "--port", "loop://", "--image", IMAGE, "--steps", "5"]),
    "rtl-compare": ("no-test", ["rtl", "compare", "--image", IMAGE]),
}


@pytest.mark.parametrize("name", sorted(EMPTY_SPLIT_COMMANDS))
def test_a_split_without_images_is_refused_by_every_command(name, data_dirs, tmp_path, capsys):
    which, args = EMPTY_SPLIT_COMMANDS[name]
    if name == "rtl-compare" and shutil.which("iverilog") is None:
        pytest.skip("rtl compare checks its tools first")
    args = [str(a).replace("{tmp}", str(tmp_path)) for a in args] + ["--data", data_dirs[which]]
    refused(args, capsys, "holds 0 images")
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("command", ["compare", "train"])
def test_board_commands_check_the_input_size_before_they_upload(command, data_dirs, capsys):
    # loop:// is no board: a check after opening the port would end in a timeout, not this line.
    steps = ["--steps", "3"] if command == "train" else []
    args = ["board", command, "--port", "loop://", "--image", IMAGE, "--data", data_dirs["small-images"], *steps]
    refused(args, capsys, "takes 784 inputs, but the images of")


def test_board_train_refuses_a_negative_seed_from_python_too():
    from firmware_bridge import commands
    from popcount_learn.errors import ConfigError

    with pytest.raises(ConfigError, match="--seed must be a non-negative integer"):
        commands.board_train("loop://", IMAGE, steps=1, seed=-1)


# --- arguments that used to be ignored ---------------------------------------------------------


def test_onchip_init_with_other_hidden_layers_is_refused(tmp_path, capsys):
    args = ["train", "--mode", "onchip", "--init", IMAGE, "--hidden", "50", "--limit", "10"]
    refused([*args, "--out", tmp_path / "t.h5"], capsys, "has hidden layers [100], but --hidden [50]")
    assert not (tmp_path / "t.h5").exists()


@pytest.mark.parametrize("flag", ["--spec", "--learn"])
def test_a_field_given_twice_with_two_values_is_refused(flag, tmp_path, capsys):
    field = "time_shift" if flag == "--spec" else "margin_steps"
    args = ["train", "--mode", "onchip", "--hidden", "5", "--limit", "10", "--out", tmp_path / "t.h5"]
    refused([*args, flag, f"{field}=6", flag, f"{field}=7"], capsys, f"{flag} {field} is given twice (6 and 7)")
    refused(["evaluate", IMAGE, "--emulate", "--spec", "time_shift=6", "--spec", "time_shift=7"], capsys, "twice")


def test_a_new_onchip_network_takes_its_input_encoding_from_the_spec(tmp_path, capsys):
    out = tmp_path / "t.h5"
    args = ["train", "--mode", "onchip", "--hidden", "6", "--epochs", "1", "--limit", "30", "--no-progress", "--json"]
    code, _, err = run([*args, "--spec", "input_threshold=100", "--spec", "dark_input_step=40", "--out", out], capsys)
    assert code == 0, err
    spec = h5io.load_weight_image(out).spec
    assert (spec.input_threshold, spec.dark_input_step) == (100, 40)
