"""Plain functions behind ``popcount-learn board ...`` and ``popcount-learn rtl ...``.

Each takes arguments and returns a dict the CLI prints. They talk to a board only through
``BoardClient`` (no bytes, no frames here), to the RTL only through ``rtl.sim``, and to the model
only through the emulator, the learner and the weight image; ``check`` compares the two sides.
"""

from __future__ import annotations

import time

import numpy as np

from popcount_learn.data import load_split
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import emulate, encode_input_steps, steps_to_decision
from popcount_learn.errors import ConfigError
from popcount_learn.h5io import load_model
from popcount_learn.learning import LearningConfig
from popcount_learn.onchip import OnchipLearner, training_forward_pass
from popcount_learn.progress import as_progress
from popcount_learn.weight_image import UPLOAD_SPEC_FIELDS, WeightImage, image_crc32, stream_spec_codes, upload_bytes

from . import check
from .errors import BoardError, BoardRefused, RtlToolsMissing
from .rtl import sim as rtl_sim
from .rtl import train_sim as rtl_train_sim
from .rtl import up5k_sim as rtl_up5k_sim
from .rtl.params import RtlLayout
from .wire.client import BoardClient
from .wire.protocol import BoardInfo, BoardResult, ErrorCode, Inputs, inputs_for

# ----------------------------------------------------------------------------------------------
# Board information and upload


def load_weight_image(path) -> WeightImage:
    """The weight image in ``path``; a float model is refused with what to do instead."""
    model = load_model(path)
    if not isinstance(model, WeightImage):
        raise ConfigError(
            f"{path} is a float model; boards and the RTL run weight images "
            f"(make one with: popcount-learn export {path} -o IMAGE.h5)"
        )
    return model


def _data_for(image: WeightImage, data_dir, split: str, limit=None):
    """``split`` of ``--data`` as the image's codes: its feature scaling, its number of outputs."""
    scaling = image.input_encoding.scaling
    return load_split(data_dir, split, limit, scaling=scaling, n_classes=image.topology[-1])


def describe_info(info: BoardInfo) -> dict:
    """INFO as a person reads it: the datapath and the learning rule by field name."""
    try:
        datapath = DatapathConfig.from_codes(info.spec_codes, UPLOAD_SPEC_FIELDS).to_dict()
    except ConfigError:  # a board built for a spec this version cannot express: its codes as they are
        datapath = dict(zip(UPLOAD_SPEC_FIELDS, info.spec_codes, strict=False))
    return {
        "board": info.board,
        "firmware_version": info.firmware_version,
        "protocol_version": info.protocol_version,
        "max_payload_bytes": info.max_payload_bytes,
        "weight_capacity_bytes": info.weight_capacity_bytes,
        "max_neurons": info.max_neurons,
        "max_layers": info.max_layers,
        "datapath": datapath,
        "learning": LearningConfig.from_codes(info.learning_codes).to_dict() if info.learning_codes else None,
        "image_loaded": info.image_loaded,
        "image_crc32": f"0x{info.image_crc32:08x}",
        "image_bytes": info.image_bytes,
    }


def check_data_fits(image: WeightImage, data, image_name: str, *, training: bool = False) -> None:
    """ConfigError before anything is uploaded when the images do not have the image's input
    count (input i = pixel i, row-major), or, for training, a label is no output neuron."""
    n_inputs, n_outputs = image.topology[0], image.topology[-1]
    n_pixels = int(data.images.shape[1])
    if n_pixels != n_inputs:
        rows, cols = data.image_shape
        raise ConfigError(
            f"{image_name} takes {n_inputs} inputs, but the images of {data.files[0]} have {n_pixels} pixels "
            f"({rows} x {cols}); use data of the image's input size"
        )
    if training and len(data.labels) and int(data.labels.max()) >= n_outputs:
        raise ConfigError(
            f"{image_name} has {n_outputs} output neurons, but {data.files[1]} has label {int(data.labels.max())}"
        )


def board_info(port: str, *, trace: bool = False) -> dict:
    with BoardClient(port, trace=trace) as client:
        return describe_info(client.info())


def check_spec(info: BoardInfo, image: WeightImage, image_name: str = "the image") -> None:
    """ConfigError naming the first field in which the board's compiled spec differs."""
    for name, board_v, image_v in zip(UPLOAD_SPEC_FIELDS, info.spec_codes, stream_spec_codes(image.spec), strict=True):
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


# ----------------------------------------------------------------------------------------------
# Inference on a board


def image_input_steps(image: WeightImage, images_uint8: np.ndarray) -> np.ndarray:
    """Input spike steps of uint8 images under the image's own input encoding (as ``emulate``)."""
    return encode_input_steps(image.spec, images_uint8, image.input_encoding)


def wire_inputs(image: WeightImage, input_spike_steps: np.ndarray) -> list[Inputs]:
    """The requests' inputs for spike steps ``(n, n_in)``: the compact bit vectors when every
    input is at step 0 or the spec's dark step (binary images), else per-input steps."""
    spec = image.spec
    try:
        return inputs_for(input_spike_steps, spec.dark_input_step, spec.max_steps)
    except ValueError as exc:
        raise ConfigError(f"the inputs cannot be sent to a board: {exc}") from None


def image_input_bits(image: WeightImage, images_uint8: np.ndarray) -> list[Inputs]:
    """The INFER inputs per image (``wire_inputs`` of the image's encoding of them)."""
    return wire_inputs(image, image_input_steps(image, images_uint8))


def board_observations(results: list[BoardResult], topology: tuple[int, ...], max_steps: int) -> check.BodyResult:
    """The board's sparse replies (per layer: neuron indices and steps) in the emulator's shapes.

    A neuron the board reports that does not exist, or reports twice, is a fault of that image."""
    n, n_post = len(results), topology[1:]
    spike_steps = tuple(np.full((n, m), -1, np.int32) for m in n_post)
    faults: dict[int, tuple[str, ...]] = {}
    for i, r in enumerate(results):
        problems = []
        if len(r.spike_index) != len(n_post):
            problems.append(f"reported {len(r.spike_index)} layers of spikes, the network has {len(n_post)}")
        for k, (idx, steps) in enumerate(zip(r.spike_index, r.spike_step, strict=True)):
            if k >= len(n_post):
                break
            known = idx < n_post[k]
            if not known.all():
                problems.append(f"layer {k}: reported neuron {int(idx[~known].max())} of {n_post[k]}")
            if len(np.unique(idx)) != len(idx):
                problems.append(f"layer {k}: a neuron reported twice")
            spike_steps[k][i, idx[known]] = steps[known]
        if problems:
            faults[i] = tuple(problems)
    rows = np.zeros((n, len(n_post)), np.int64)
    for i, r in enumerate(results):
        m = min(len(r.rows_read), len(n_post))
        rows[i, :m] = r.rows_read[:m]
        if len(r.rows_read) != len(n_post):
            faults[i] = (*faults.get(i, ()), f"reported {len(r.rows_read)} row counters, the network has {len(n_post)}")
    first = np.array([r.first_output_step for r in results], np.int32)
    return check.BodyResult(
        predicted=np.array([r.predicted for r in results], np.int32),
        first_output_step=first,
        steps_to_decision=steps_to_decision(first, max_steps),
        tie=np.array([r.tie for r in results], bool),
        spike_steps=spike_steps,
        rows_read=rows,
        synaptic_additions=np.array([r.synaptic_additions for r in results], np.int64),
        faults=faults,
    )


def smaller_batch(batch: int, refusal: BoardRefused) -> int:
    """The batch to try after a refused one: REPLY_TOO_LARGE says what the whole reply needs
    (``a``) and the limit (``b``), so the batch shrinks in that ratio (with 10% room); for
    anything else, half."""
    if refusal.code == ErrorCode.REPLY_TOO_LARGE and refusal.a > refusal.b > 0:
        return max(1, min(batch - 1, int(batch * refusal.b / refusal.a * 0.9)))
    return max(1, batch // 2)


def run_on_board(
    client: BoardClient, image: WeightImage, images_uint8: np.ndarray, *, batch_size: int | None = None, progress=None
) -> check.BodyResult:
    """Infer every image on the board (in INFER_BATCH round trips); the results as a BodyResult."""
    progress = as_progress(progress)
    bits = image_input_bits(image, images_uint8)
    batch = batch_size or client.batch_size_hint(1 + len(bits[0].body) if bits else 1)
    results: list[BoardResult] = []
    progress.start(total=len(bits), desc="board")
    while len(results) < len(bits):
        part = bits[len(results) : len(results) + batch]
        try:
            results += client.infer_batch(part)
        except BoardRefused as exc:
            if exc.code not in (ErrorCode.REPLY_TOO_LARGE, ErrorCode.OVERSIZE) or len(part) == 1:
                raise
            batch = smaller_batch(len(part), exc)
            continue
        progress.update(len(part))
    progress.close()
    return board_observations(results, image.topology, image.spec.max_steps)


def compare_on_board(
    client: BoardClient,
    image: WeightImage,
    images_uint8: np.ndarray,
    *,
    labels=None,
    batch_size: int | None = None,
    progress=None,
) -> dict:
    """Run board and emulator on the same images; ``check.Comparison.summary()`` plus accuracies."""
    board = run_on_board(client, image, images_uint8, batch_size=batch_size, progress=progress)
    emu = emulate(image, images_uint8)
    summary = check.compare(emu, board, body="board").summary()
    if labels is not None:
        labels = np.asarray(labels)
        summary["board_accuracy"] = float(np.mean(board.predicted == labels))
        summary["emulator_accuracy"] = float(np.mean(emu.predicted == labels))
    return summary


def board_compare(
    port: str,
    image_path,
    *,
    limit: int | None = None,
    data_dir=None,
    progress=None,
    batch_size: int | None = None,
    trace: bool = False,
) -> dict:
    """Upload ``image_path`` and run test images on board and emulator; compare every field.

    Returns {verdict, n, mismatches, first_mismatch (full text or None), mismatched_images
    (first 20), board_accuracy, emulator_accuracy, image_bytes, image_crc32}.
    """
    image = load_weight_image(image_path)
    test = _data_for(image, data_dir, "test", limit)
    check_data_fits(image, test, str(image_path))
    with BoardClient(port, trace=trace) as client:
        upload = upload_image(client, image, image_name=str(image_path))
        summary = compare_on_board(
            client, image, test.images, labels=test.labels, batch_size=batch_size, progress=progress
        )
    summary.update(upload)
    return summary


# ----------------------------------------------------------------------------------------------
# Training on a board


def check_learning(info: BoardInfo, learning: LearningConfig) -> None:
    """ConfigError naming each field in which the board's compiled rule differs from ``learning``."""
    if not info.learning_codes:
        raise ConfigError("the board's firmware has no learning rule; start one with popcount-learn board virtual")
    board = LearningConfig.from_codes(info.learning_codes)
    if board != learning:
        differ = [
            f"{k} = {v!r} on the board, {getattr(learning, k)!r} in the image"
            for k, v in board.to_dict().items()
            if v != getattr(learning, k)
        ]
        raise ConfigError(
            f"the board's learning rule differs from the image's: {'; '.join(differ)}; "
            "start the board with --image of this file"
        )


def training_order(n_images: int, steps: int, seed: int) -> np.ndarray:
    """Image indices of ``steps`` samples: seeded random permutations of the set, back to back."""
    rng = np.random.default_rng(seed)
    reps = -(-steps // n_images)
    return np.concatenate([rng.permutation(n_images) for _ in range(reps)])[:steps]


def train_side_by_side(
    client: BoardClient,
    image: WeightImage,
    learning: LearningConfig,
    images_uint8,
    labels,
    *,
    check_every: int = 100,
    first_sample_index: int = 0,
    board_image: WeightImage | None = None,
    image_name: str = "the image",
    progress=None,
) -> dict:
    """Train board and emulator from the same image, one sample at a time, and compare.

    Sample ``i`` (image ``images_uint8[i]``, label ``labels[i]``) gets sample index
    ``first_sample_index + i``. Every field the board reports for a step is compared with the
    emulator's at once (``check.training_step_difference``); the board's weight image is read
    back and compared byte for byte with the emulator's every ``check_every`` steps and after
    the last. Stops at the first difference. ``board_image`` (tests only) uploads a different
    image to the board than the emulator starts from.
    """
    if check_every < 1:
        raise ConfigError("--check-every must be positive")
    progress = as_progress(progress)
    learner = OnchipLearner(image, learning)
    board_s = emulator_s = readback_s = 0.0
    checks, first, changed, correct, done = 0, None, 0, 0, 0
    upload = upload_image(client, board_image or image, image_name=image_name)
    check_learning(client.info(), learning)
    n_bytes = upload["image_bytes"]
    encoded = image_input_steps(image, images_uint8)
    sent = wire_inputs(image, encoded)
    steps = len(encoded)
    in_flight = None  # (encoded input, label, sample index) of a TRAIN_STEP sent and not answered
    progress.start(total=steps, desc="train")
    try:
        for i in range(steps):
            t = first_sample_index + i
            enc, label = encoded[i], int(labels[i])
            t0 = time.perf_counter()
            in_flight = (enc, label, t)
            reply = client.train_step(t, label, sent[i])
            in_flight = None
            done += 1  # the board applied this step
            t1 = time.perf_counter()
            expected = learner.step(enc, label, t)
            emulator_s += time.perf_counter() - t1
            board_s += t1 - t0
            changed += reply.weights_changed
            correct += reply.predicted == label
            diff = check.training_step_difference(reply, expected)
            if diff is not None:
                first = f"step {i} (sample index {t}, label {label}): {diff}"
                break
            if (i + 1) % check_every == 0 or i + 1 == steps:
                t0 = time.perf_counter()
                board_bytes = client.read_image(n_bytes)
                readback_s += time.perf_counter() - t0
                checks += 1
                diff = check.first_stream_difference(board_bytes, upload_bytes(learner.image()), image)
                if diff is not None:
                    first = f"after step {i} (sample index {t}): {diff}"
                    break
            progress.update(1, changed=changed)
    except KeyboardInterrupt:
        progress.close()
        raise KeyboardInterrupt(interrupted_training(client, learner, done, steps, in_flight, image_name)) from None
    progress.close()
    if first is None:
        verdict = (
            f"{done:,} training steps: board == emulator on every step's result and on all "
            f"{n_bytes:,} bytes of the weight image at {checks} read-backs"
        )
    else:
        verdict = f"board != emulator at {first}"
    return {
        "verdict": verdict,
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


def interrupted_training(client, learner, applied: int, steps: int, in_flight, image_name: str) -> str:
    """What an interrupted ``train_side_by_side`` left on the board: how many steps it applied
    and that its weights now differ from the file's. A step that was sent but not answered is
    settled by the board's image CRC-32 (one short INFO), which it reports after finishing it."""
    settled = in_flight is None
    if not settled:
        kept = client.timeout_s, client.retries
        client.timeout_s, client.retries = 1.0, 1
        try:
            board_crc = client.info().image_crc32
            if board_crc == image_crc32(learner.image()):
                settled = True
            else:
                enc, label, t = in_flight
                learner.step(enc, label, t)
                if board_crc == image_crc32(learner.image()):
                    applied, settled = applied + 1, True
        except (BoardError, KeyboardInterrupt):
            pass
        finally:
            client.timeout_s, client.retries = kept
    count = f"{applied:,}" if settled else f"{applied:,} or {applied + 1:,} (the last one was in flight)"
    text = f"after {count} of {steps:,} training steps applied on the board"
    if applied == 0 and settled:
        return text + f"; its weights are still those of {image_name}"
    return text + (
        f"; its weights now differ from {image_name} (upload the image again, as board compare and board train do, "
        "before comparing it with the file)"
    )


def board_train(
    port: str,
    image_path,
    *,
    steps: int,
    seed: int = 0,
    check_every: int = 100,
    first_sample_index: int = 0,
    data_dir=None,
    progress=None,
    trace: bool = False,
) -> dict:
    """``train_side_by_side`` on ``steps`` training images in a seeded random order, with the
    image's learning rule (the default ``LearningConfig`` for an inference-only image)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps must be a positive integer, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
    image = load_weight_image(image_path)
    learning = image.learning or LearningConfig()
    train = _data_for(image, data_dir, "train")
    check_data_fits(image, train, str(image_path), training=True)
    order = training_order(len(train.images), steps, seed)
    with BoardClient(port, trace=trace) as client:
        return train_side_by_side(
            client,
            image,
            learning,
            train.images[order],
            train.labels[order],
            check_every=check_every,
            first_sample_index=first_sample_index,
            image_name=str(image_path),
            progress=progress,
        )


# ----------------------------------------------------------------------------------------------
# The RTL core


def rtl_compare(image_path, *, limit=None, lanes=4, data_dir=None, progress=None, batch_images=None) -> dict:
    """Simulate the RTL core (Icarus + cocotb) on test images and compare it with the emulator
    image by image: class, decision step, tie, every spike step, counters.

    Returns the verdict, the counts, the first mismatching image described in full
    (``first_mismatch``, None when bit-exact), cycles per image (mean / median / max) and
    simulated images per second.
    """
    reason = rtl_sim.missing_tools()
    if reason:
        raise RtlToolsMissing(reason)
    image = load_weight_image(image_path)
    test = _data_for(image, data_dir, "test", limit)
    expected = emulate(image, test.images)
    kwargs = {} if batch_images is None else {"batch_images": batch_images}
    observed = rtl_sim.simulate(image, test.images, lanes=lanes, progress=progress, **kwargs)
    comparison = check.compare(expected, observed, body="RTL")
    cycles = observed.cycles
    return {
        **comparison.summary(),
        "lanes": int(lanes),
        "accuracy": float(np.mean(observed.predicted == test.labels)),
        "mean_steps_to_decision": float(np.mean(observed.steps_to_decision)),
        "cycles_mean": float(np.mean(cycles)),
        "cycles_median": float(np.median(cycles)),
        "cycles_max": int(np.max(cycles)),
        "sim_seconds": float(observed.sim_seconds),
        "sim_images_per_s": float(len(test.images) / observed.sim_seconds) if observed.sim_seconds > 0 else 0.0,
    }


def _as_body_result(result) -> check.BodyResult:
    """An RTL result (``rtl.sim.RtlResult``) as the checker's ``BodyResult``."""
    return check.BodyResult(
        predicted=result.predicted,
        first_output_step=result.first_output_step,
        steps_to_decision=result.steps_to_decision,
        tie=result.tie,
        spike_steps=result.spike_steps,
        rows_read=result.rows_read,
        synaptic_additions=result.synaptic_additions,
        faults=result.faults,
    )


def rtl_train_side_by_side(
    image: WeightImage,
    learning: LearningConfig,
    input_spike_steps,
    labels,
    *,
    first_sample_index: int = 0,
    lanes: int = 4,
    readback_every: int | None = 10,
    load_image: WeightImage | None = None,
    throttle: bool = False,
    shuffle_seed: int | None = None,
    batch_steps: int | None = None,
    top: str = "core",
    progress=None,
) -> dict:
    """Train the RTL core (Icarus + cocotb) and the learner (``onchip.OnchipLearner``) from the same
    image, one sample at a time, and compare them step by step. ``top``: ``"core"`` (the core's
    streams, ``rtl.train_sim``) or ``"up5k"`` (the UP5K top as placed, byte packets only).

    Step ``i`` (input ``input_spike_steps[i]``, label ``labels[i]``, sample index
    ``first_sample_index + i``): its forward pass against the emulator's with the margin window
    (``check.compare``: class, decision step, tie, counters, every spike step up to the window's
    end), its result against the learner's ``StepResult`` (``check.training_step_difference``),
    and, after every ``readback_every`` steps and the last, the weight RAM read back against the
    learner's image byte for byte (``check.first_stream_difference``, the first differing weight
    in full). Stops at the first difference. ``load_image`` (tests) starts the core from another
    image than the learner. Returns the verdict, the counts, the first mismatch and the cycles.
    """
    steps = np.asarray(input_spike_steps)
    labels = np.asarray(labels)
    n_out = image.topology[-1]
    if labels.size and (labels.min() < 0 or labels.max() >= n_out):
        raise ConfigError(f"labels must be in 0..{n_out - 1} (the output neurons)")
    if top == "core":
        kwargs = {} if batch_steps is None else {"batch_steps": batch_steps}
        observed = rtl_train_sim.simulate_training(
            image,
            learning,
            steps,
            labels,
            first_sample_index,
            lanes=lanes,
            readback_every=readback_every,
            load_image=load_image,
            throttle=throttle,
            shuffle_seed=shuffle_seed,
            progress=progress,
            **kwargs,
        )
    elif top == "up5k":
        observed = rtl_up5k_sim.simulate_up5k_training(
            image,
            learning,
            steps,
            labels,
            first_sample_index,
            lanes=lanes,
            readback_every=readback_every,
            load_image=load_image,
            throttle=throttle,
        )
    else:
        raise ConfigError(f"top must be 'core' or 'up5k', got {top!r}")
    layout = RtlLayout.for_image(image, lanes, learning)
    forward = _as_body_result(observed.forward)
    readbacks = dict(observed.readbacks)
    learner = OnchipLearner(image, learning)
    first, checks, changed, correct, done = None, 0, 0, 0, 0
    t0 = time.perf_counter()
    for i in range(len(steps)):
        t, label = first_sample_index + i, int(labels[i])
        where = f"step {i} (sample index {t}, label {label})"
        window = training_forward_pass(learner.image(), learning, steps[i], label)
        comparison = check.compare(window, forward.row(i), body="RTL")
        if not comparison.ok:
            first = f"{where}, forward pass: " + comparison.first_mismatch.replace("image 0:", "").strip()
            break
        expected = learner.step(steps[i], label, t)
        done += 1
        changed += int(observed.weights_changed[i])
        correct += int(observed.forward.predicted[i]) == label
        diff = check.training_step_difference(observed.step(i), expected, body="RTL")
        if diff is not None:
            first = f"{where}: {diff}"
            break
        if i + 1 in readbacks:
            checks += 1
            rtl_image, faults = layout.image_of_words(list(readbacks[i + 1]), image)
            diff = "; ".join(faults) or check.first_stream_difference(
                upload_bytes(rtl_image), upload_bytes(learner.image()), image, body="RTL"
            )
            if diff:
                first = f"after {where}: {diff}"
                break
    emulator_s = time.perf_counter() - t0
    n_bytes = len(upload_bytes(image))
    if first is None:
        verdict = (
            f"{done:,} training steps: RTL == emulator on every step's forward pass and result and on all "
            f"{n_bytes:,} bytes of the weight image at {checks} read-backs"
        )
    else:
        verdict = f"RTL != emulator at {first}"
    cycles = observed.phase_cycles["cycles"]
    return {
        "verdict": verdict,
        "steps": done,
        "weight_checks": checks,
        "mismatches": int(first is not None),
        "first_mismatch": first,
        "weights_changed": changed,
        "train_accuracy_running": correct / done if done else 0.0,
        "lanes": int(lanes),
        "cycles_mean": float(np.mean(cycles)),
        "cycles_median": float(np.median(cycles)),
        "cycles_max": int(np.max(cycles)),
        "cycles_per_step": [int(c) for c in cycles],
        "phase_cycles_mean": {name: float(np.mean(v)) for name, v in observed.phase_cycles.items()},
        "sim_seconds": float(observed.sim_seconds),
        "sim_steps_per_s": len(steps) / observed.sim_seconds if observed.sim_seconds > 0 else 0.0,
        "emulator_seconds": emulator_s,
        "final_crc32": f"0x{image_crc32(learner.image()):08x}",
        "learning": learning.to_dict(),
        "image_bytes": n_bytes,
    }


def rtl_train(
    image_path,
    *,
    steps: int,
    seed: int = 0,
    lanes: int = 4,
    check_every: int = 10,
    first_sample_index: int = 0,
    from_step: int = 0,
    data_dir=None,
    progress=None,
) -> dict:
    """``rtl_train_side_by_side`` on ``steps`` MNIST training images in a seeded random order (the
    order ``board train`` uses), with the image's learning rule (the default ``LearningConfig``
    for an inference-only image), reading the weights back every ``check_every`` steps.

    ``from_step`` S: the learner alone trains the first S samples of the order (indices
    ``first_sample_index + 0 .. S-1``), and the RTL starts from its image at sample S, so a long
    check runs as pieces side by side (the steps share nothing but the weights)."""
    if steps < 1:
        raise ConfigError(f"--steps must be positive, got {steps}")
    if from_step < 0:
        raise ConfigError(f"--from-step must be >= 0, got {from_step}")
    if check_every < 1:
        raise ConfigError("--check-every must be positive")
    reason = rtl_sim.missing_tools()
    if reason:
        raise RtlToolsMissing(reason)
    image = load_weight_image(image_path)
    learning = image.learning or LearningConfig()
    train = _data_for(image, data_dir, "train")
    order = training_order(len(train.images), from_step + steps, seed)
    if from_step:
        learner = OnchipLearner(image, learning)
        learner.train(
            image_input_steps(image, train.images[order[:from_step]]),
            train.labels[order[:from_step]],
            first_sample_index,
        )
        image = learner.image()
        order = order[from_step:]
    encoded = image_input_steps(image, train.images[order])
    return rtl_train_side_by_side(
        image,
        learning,
        encoded,
        train.labels[order],
        first_sample_index=first_sample_index + from_step,
        lanes=lanes,
        readback_every=check_every,
        progress=progress,
    )
