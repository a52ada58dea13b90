"""Plain functions behind ``popcount-learn board ...``: take arguments, return dicts.

They talk to a board only through ``BoardClient`` (no bytes, no frames here) and to the model
only through the emulator and the weight image.
"""

from __future__ import annotations

import numpy as np

from popcount_learn.errors import ConfigError
from popcount_learn.progress import as_progress
from popcount_learn.learning import LearningConfig
from popcount_learn.weight_image import UPLOAD_SPEC_FIELDS, WeightImage, image_crc32, stream_spec_codes, upload_bytes

from .wire.client import BoardClient
from .check import compare_on_board
from .wire.protocol import BoardInfo


def describe_info(info: BoardInfo) -> dict:
    return {
        "board": info.board,
        "firmware_version": info.firmware_version,
        "protocol_version": info.protocol_version,
        "max_payload_bytes": info.max_payload_bytes,
        "weight_capacity_bytes": info.weight_capacity_bytes,
        "max_neurons": info.max_neurons,
        "max_layers": info.max_layers,
        "datapath": dict(zip(UPLOAD_SPEC_FIELDS, info.spec_codes)),
        "learning": LearningConfig.from_codes(info.learning_codes).to_dict() if info.learning_codes else None,
        "image_loaded": info.image_loaded,
        "image_crc32": f"0x{info.image_crc32:08x}",
        "image_bytes": info.image_bytes,
    }


def board_info(port: str, *, trace: bool = False) -> dict:
    with BoardClient(port, trace=trace) as client:
        return describe_info(client.info())


def check_spec(info: BoardInfo, image: WeightImage, image_name: str = "the image") -> None:
    """ConfigError naming the first field in which the board's compiled spec differs."""
    codes = stream_spec_codes(image.spec)
    for name, board_v, image_v in zip(UPLOAD_SPEC_FIELDS, info.spec_codes, codes, strict=True):
        if board_v != image_v:
            raise ConfigError(
                f"the board is built for {name} = {board_v} but {image_name} has {name} = {image_v}; "
                "start a board built for the image's spec (popcount-learn board virtual --image ...)"
            )


def upload_image(client: BoardClient, image: WeightImage, *, image_name: str = "the image", progress=None) -> dict:
    """Check the spec, upload, commit; the board must report the image's CRC-32."""
    info = client.info()
    check_spec(info, image, image_name)
    stream = upload_bytes(image)
    if len(stream) > info.weight_capacity_bytes:
        raise ConfigError(
            f"{image_name} needs {len(stream)} bytes of weight memory, the board has {info.weight_capacity_bytes}"
        )
    crc = image_crc32(image)
    board_crc = client.load_image(stream, crc, progress=progress)
    if board_crc != crc:
        raise ConfigError(f"board reports image CRC-32 0x{board_crc:08x} after upload, expected 0x{crc:08x}")
    return {"image_bytes": len(stream), "image_crc32": f"0x{crc:08x}"}


def board_compare(port: str, image_path, *, limit: int | None = None, data_dir=None, progress=None,
                  batch_size: int | None = None, trace: bool = False) -> dict:
    """Upload ``image_path`` and run test images on board and emulator; compare every field.

    Returns {n, mismatches, first_mismatch (full text or None), mismatched_images (first 20),
    board_accuracy, emulator_accuracy, image_crc32}.
    """
    from popcount_learn.commands import _load_split
    from popcount_learn.h5io import load_weight_image

    image = load_weight_image(image_path)
    images, labels, _ = _load_split(data_dir, "test", limit)
    progress = as_progress(progress)
    with BoardClient(port, trace=trace) as client:
        upload = upload_image(client, image, image_name=str(image_path))
        summary = compare_on_board(client, image, images, labels=labels, batch_size=batch_size, progress=progress)
    summary.update(upload)
    return summary


def stream_position(image: WeightImage, offset: int) -> str:
    """Where byte ``offset`` of the upload stream lies: header, layer header or W_k[row, col]."""
    from popcount_learn.weight_image import UPLOAD_HEADER_BYTES, UPLOAD_LAYER_HEADER_BYTES, weight_dtype

    if offset < UPLOAD_HEADER_BYTES:
        return f"stream header byte {offset}"
    pos = UPLOAD_HEADER_BYTES
    wbytes = weight_dtype(image.spec).itemsize
    for k, layer in enumerate(image.layers):
        rows, cols = layer.weights_lsb.shape
        if offset < pos + UPLOAD_LAYER_HEADER_BYTES:
            return f"layer {k} header byte {offset - pos}"
        pos += UPLOAD_LAYER_HEADER_BYTES
        size = rows * cols * wbytes
        if offset < pos + size:
            index = (offset - pos) // wbytes
            return f"layer {k} weight [row {index // cols}, column {index % cols}]"
        pos += size
    return f"byte {offset}, past the end of the image"


def first_stream_difference(board: bytes, model: bytes, image: WeightImage) -> str | None:
    """None if identical, else the first differing byte with its place in the image."""
    if board == model:
        return None
    n = min(len(board), len(model))
    diff = np.flatnonzero(np.frombuffer(board[:n], np.uint8) != np.frombuffer(model[:n], np.uint8))
    if not len(diff):
        return f"lengths differ: board {len(board)} bytes, emulator {len(model)}"
    at = int(diff[0])
    return (f"{len(diff)} byte(s) differ; first at offset {at} ({stream_position(image, at)}): "
            f"board 0x{board[at]:02x}, emulator 0x{model[at]:02x}")


def check_learning(info: BoardInfo, learning) -> None:
    if not info.learning_codes:
        raise ConfigError("the board's firmware has no learning rule; start one with popcount-learn board virtual")
    board = LearningConfig.from_codes(info.learning_codes)
    if board != learning:
        differ = [f"{k} = {v!r} on the board, {getattr(learning, k)!r} in the image"
                  for k, v in board.to_dict().items() if v != getattr(learning, k)]
        raise ConfigError(
            f"the board's learning rule differs from the image's: {'; '.join(differ)}; "
            "start the board with --image of this file"
        )


def training_order(n_images: int, steps: int, seed: int) -> np.ndarray:
    """Image indices of ``steps`` samples: seeded random permutations of the set, back to back."""
    rng = np.random.default_rng(seed)
    reps = -(-steps // n_images)
    return np.concatenate([rng.permutation(n_images) for _ in range(reps)])[:steps]


def train_side_by_side(client: BoardClient, image: WeightImage, learning, images_uint8, labels, *,
                       check_every: int = 100, first_sample_index: int = 0, board_image: WeightImage | None = None,
                       image_name: str = "the image", progress=None) -> dict:
    """Train board and emulator from the same image, one sample at a time, and compare.

    Sample ``i`` (image ``images_uint8[i]``, label ``labels[i]``) gets sample index
    ``first_sample_index + i``. Each step's summary (predicted, decision step, weights changed,
    neurons with a delta, hidden spikes delivered) is compared at once; the board's weight image
    is read back and compared byte for byte with the emulator's ``upload_bytes`` every
    ``check_every`` steps and after the last. Stops at the first difference. ``board_image``
    (tests only) uploads a different image to the board than the emulator starts from.
    """
    import time

    from popcount_learn.emulator import encode_input_steps
    from popcount_learn.onchip import OnchipLearner

    from .wire.protocol import input_bits

    if check_every < 1:
        raise ConfigError("--check-every must be positive")
    progress = as_progress(progress)
    learner = OnchipLearner(image, learning)
    board_s = emulator_s = readback_s = 0.0
    checks, first, changed, correct, done = 0, None, 0, 0, 0
    upload = upload_image(client, board_image or image, image_name=image_name)
    check_learning(client.info(), learning)
    n_bytes = upload["image_bytes"]
    encoded = encode_input_steps(image.spec, images_uint8)
    steps = len(encoded)
    progress.start(total=steps, desc="train")
    for i in range(steps):
        t = first_sample_index + i
        enc, label = encoded[i], int(labels[i])
        t0 = time.perf_counter()
        b = client.train_step(t, label, input_bits(enc == 0))
        t1 = time.perf_counter()
        e = learner.step(enc, label, t)
        emulator_s += time.perf_counter() - t1
        board_s += t1 - t0
        done += 1
        changed += b.weights_changed
        correct += b.predicted == label
        got = (b.predicted, b.first_output_step, b.weights_changed, b.neurons_with_delta, b.hidden_spikes_delivered)
        want = (e.predicted, e.first_output_step, e.weights_changed, e.neurons_with_delta, e.hidden_spikes_delivered)
        if got != want:
            first = (f"step {i} (sample index {t}, label {label}): board (predicted, D, weights changed, "
                     f"neurons with delta, hidden spikes delivered) = {got}, emulator {want}")
            break
        if (i + 1) % check_every == 0 or i + 1 == steps:
            t0 = time.perf_counter()
            board_bytes = client.read_image(n_bytes)
            readback_s += time.perf_counter() - t0
            checks += 1
            diff = first_stream_difference(board_bytes, upload_bytes(learner.image()), image)
            if diff is not None:
                first = f"after step {i} (sample index {t}): {diff}"
                break
        progress.update(1, changed=changed)
    progress.close()
    return {
        "steps": done,
        "weight_checks": checks,
        "mismatches": int(first is not None),
        "first_mismatch": first,
        "weights_changed": changed,
        "train_accuracy_running": correct / done if done else 0.0,
        "board_steps_per_s": done / board_s if board_s else 0.0,
        "emulator_steps_per_s": done / emulator_s if emulator_s else 0.0,
        "readback_s": readback_s,
        "final_crc32": f"0x{image_crc32(learner.image()):08x}",
        "learning": learning.to_dict(),
        "image_bytes": n_bytes,
    }


def board_train(port: str, image_path, *, steps: int, seed: int = 0, check_every: int = 100,
                first_sample_index: int = 0, data_dir=None, progress=None, trace: bool = False) -> dict:
    """``train_side_by_side`` on ``steps`` training images in a seeded random order, with the
    image's learning rule (the default ``LearningConfig`` for an inference-only image)."""
    from popcount_learn.commands import _load_split
    from popcount_learn.h5io import load_weight_image
    from popcount_learn.learning import LearningConfig

    if steps < 1:
        raise ConfigError(f"--steps must be positive, got {steps}")
    image = load_weight_image(image_path)
    learning = image.learning or LearningConfig()
    images, labels, _ = _load_split(data_dir, "train")
    order = training_order(len(images), steps, seed)
    with BoardClient(port, trace=trace) as client:
        return train_side_by_side(client, image, learning, images[order], labels[order], check_every=check_every,
                                  first_sample_index=first_sample_index, image_name=str(image_path),
                                  progress=progress)
