"""The one body-vs-emulator checker (firmware_bridge/check.py), without any body attached.

The emulator is compared with a copy of itself corrupted in one place: every field and every
spike step must be caught, the first difference described in full, and a clean copy must pass
with a verdict that counts what it compared.
"""

import dataclasses

import numpy as np
import pytest
from factories import random_weight_image

from firmware_bridge import check
from firmware_bridge.commands import board_observations
from firmware_bridge.wire.protocol import BoardResult, TrainStepReply
from popcount_learn.datapath import DatapathConfig
from popcount_learn.emulator import EmulationResult, emulate
from popcount_learn.onchip import StepResult

SPEC = DatapathConfig.for_weight_bits(8)


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(7)
    image = random_weight_image(rng, spec=SPEC, topology=(40, 25, 6))
    unit = SPEC.weight_max << SPEC.current_frac_bits
    image = dataclasses.replace(
        image, layers=tuple(dataclasses.replace(layer, threshold_lsb=int(2 * unit)) for layer in image.layers)
    )
    steps = np.where(rng.random((30, 40)) < 0.5, 0, -1).astype(np.int32)
    return image, emulate(image, input_spike_steps=steps)


def as_body(result: EmulationResult) -> check.BodyResult:
    return check.BodyResult(**{name: getattr(result, name) for name in check.COMPARED_FIELDS})


def test_the_compared_fields_are_every_output_of_the_emulator():
    assert set(check.COMPARED_FIELDS) == set(EmulationResult.FIELDS) - {"input_spike_steps"}
    assert {f.name for f in dataclasses.fields(check.BodyResult)} == {*check.COMPARED_FIELDS, "faults"}
    assert set(check.FIELD_LABELS) == set(check.COMPARED_FIELDS) - {"spike_steps"}


def test_an_identical_body_passes_with_a_verdict_that_counts_the_spikes(run):
    _, emu = run
    comparison = check.compare(emu, as_body(emu), body="board")
    spikes = sum(int((s >= 0).sum()) for s in emu.spike_steps)
    assert comparison.ok and comparison.first_mismatch is None and spikes > 50
    assert comparison.verdict() == (
        f"30 images: board == emulator on class, decision step, tie, {spikes:,} spike steps and the counters"
    )
    assert comparison.summary()["mismatches"] == 0


@pytest.mark.parametrize("field", check.COMPARED_FIELDS)
@pytest.mark.parametrize("image_index", [0, 17])
def test_one_corrupted_value_of_any_field_is_caught_and_described(run, field, image_index):
    _, emu = run
    body = as_body(emu)
    if field == "spike_steps":
        layer = body.spike_steps[-1].copy()
        layer[image_index, 2] += 1
        body = dataclasses.replace(body, spike_steps=(*body.spike_steps[:-1], layer))
        label = "layer 1 spike steps"
    else:
        value = np.array(getattr(body, field), copy=True)
        row = value[image_index]
        if value.ndim == 2:
            row[0] += 1
        else:
            value[image_index] = (not row) if value.dtype == bool else row + 1
        body = dataclasses.replace(body, **{field: value})
        label = check.FIELD_LABELS[field]
    comparison = check.compare(emu, body, body="RTL")
    assert comparison.mismatched == (image_index,)
    lines = comparison.first_mismatch.splitlines()
    assert lines[0] == f"image {image_index}:"
    assert next(line for line in lines if "!=" in line).strip().startswith(label)
    assert sum("!=" in line for line in lines) == 1  # nothing else is reported different
    assert comparison.verdict().startswith(f"1 of 30 images: RTL != emulator; first: image {image_index}: {label}")


def test_a_fault_the_body_reports_fails_its_image_even_when_the_fields_agree(run):
    _, emu = run
    body = dataclasses.replace(as_body(emu), faults={4: ("layer 0 neuron 3 reported twice",)})
    comparison = check.compare(emu, body, body="RTL")
    assert comparison.mismatched == (4,)
    assert "  fault: layer 0 neuron 3 reported twice" in comparison.first_mismatch.splitlines()


def test_shapes_that_do_not_match_are_a_clear_error(run):
    _, emu = run
    with pytest.raises(Exception, match="30 images, the board 29"):
        check.compare(emu, as_body(emu.take(slice(0, 29))), body="board")
    body = as_body(emu)
    with pytest.raises(Exception, match="layer 0: the emulator has 25 neurons"):
        check.compare(
            emu, dataclasses.replace(body, spike_steps=(body.spike_steps[0][:, :24], body.spike_steps[1])), body="board"
        )


def test_board_replies_are_densified_with_faults_for_impossible_neurons(run):
    image, emu = run
    replies = []
    for i in range(3):
        idx = [np.flatnonzero(s[i] >= 0) for s in emu.spike_steps]
        replies.append(
            BoardResult(
                int(emu.predicted[i]),
                int(emu.first_output_step[i]),
                bool(emu.tie[i]),
                int(emu.synaptic_additions[i]),
                tuple(int(x) for x in emu.rows_read[i]),
                tuple(idx),
                tuple(s[i][j].astype(np.int32) for s, j in zip(emu.spike_steps, idx, strict=True)),
            )
        )
    body = board_observations(replies, image.topology, SPEC.max_steps)
    assert check.compare(emu.take([0, 1, 2]), body, body="board").ok
    bad = dataclasses.replace(
        replies[1],
        spike_index=(np.array([99]), replies[1].spike_index[1]),
        spike_step=(np.array([0], np.int32), replies[1].spike_step[1]),
    )
    body = board_observations([replies[0], bad], image.topology, SPEC.max_steps)
    comparison = check.compare(emu.take([0, 1]), body, body="board")
    assert comparison.mismatched == (1,) and "reported neuron 99 of 25" in comparison.first_mismatch


def test_training_step_difference_covers_every_reported_field():
    step = StepResult(3, 40, 12, 5, 9)
    names = [f.name for f in dataclasses.fields(TrainStepReply)]
    assert check.training_step_difference(TrainStepReply(3, 40, 12, 5, 9), step) is None
    for k, name in enumerate(names):
        values = [3, 40, 12, 5, 9]
        values[k] += 1
        diff = check.training_step_difference(TrainStepReply(*values), step)
        assert diff == f"{name}: board {values[k]}, emulator {values[k] - 1}"
