"""Byte-flip, random-bytes and truncation fuzz of every model kind the repository ships, as it
ships, sealed and as an unlisted file from before the seal (tools/fuzz_model_files.py): a
seeded sample of cases, each load in a worker process with a deadline. The recorded run over
all offsets is in BENCHMARKS.md ("Damaged model files")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from popcount_learn import h5io

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "datasets" / "pretrained"
KINDS = {"exact-network": "net100.h5", "weight-image": "net100-int8.h5", "weight-image+learning": "net600-onchip.h5"}
FORMS = ("shipped", "sealed", "unsealed")
CASES = {"shipped": 40, "sealed": 40, "unsealed": 25}
DEADLINE_S = 40.0  # above the reader's own 10 s bound for an unverified parse
# What a file from before the seal, not listed in a SHA256SUMS, does not cover (docs/weight-image.md).
NOT_COVERED_UNSEALED = {"provenance", "metadata", "learning", "layer0.scale", "layer1.scale"}
# Offsets of net100-int8.h5 whose flip makes HDF5 spin (2704: in /datapath's string attributes).
HANGING_FLIPS = [2057, 2704]


@pytest.fixture(scope="module")
def fuzz():
    import fuzz_model_files

    return fuzz_model_files


@pytest.fixture(scope="module")
def pool(fuzz):
    with fuzz.LoadPool(workers=2, deadline_s=DEADLINE_S) as p:
        yield p


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """form -> kind -> path: as shipped (listed in SHA256SUMS), saved again (sealed), and a copy
    alone in a directory (unsealed and unlisted: HDF5 parses it, in a child with a deadline)."""
    out = {form: {} for form in FORMS}
    sealed, alone = tmp_path_factory.mktemp("sealed"), tmp_path_factory.mktemp("unsealed")
    for kind, name in KINDS.items():
        out["shipped"][kind] = PRETRAINED / name
        model, metadata = h5io.load_model_and_metadata(PRETRAINED / name)
        if kind == "exact-network":
            h5io.save_network(sealed / name, model, metadata)
        else:
            h5io.save_weight_image(sealed / name, model)
        out["sealed"][kind] = sealed / name
        shutil.copyfile(PRETRAINED / name, alone / name)
        out["unsealed"][kind] = alone / name
    return out


def cases_for(fuzz, path: Path, form: str, kind: str):
    data = path.read_bytes()
    seed = 18 + FORMS.index(form) * 10 + list(KINDS).index(kind)
    n = CASES[form]
    # Unsealed, HDF5 reads the file: aim the flips at its structure, where HDF5 can fail.
    flips = fuzz.metadata_offsets(path) if form == "unsealed" else None
    cases = fuzz.make_cases(data, ("flip",), n_cases=n, seed=seed, flip_offsets=flips)
    return cases + fuzz.make_cases(data, ("random", "truncate"), n_cases=n, seed=seed)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("form", FORMS)
def test_damaged_model_files_are_refused_in_one_line_in_bounded_time(fuzz, pool, targets, form, kind):
    path = targets[form][kind]
    tallies = pool.run(path, cases_for(fuzz, path, form, kind))
    for mode, tally in tallies.items():
        counts = tally.counts
        bad = {o: counts[o] for o in ("wrong_error", "multiline", "exception", "crash", "hang") if counts[o]}
        assert not bad, (mode, bad, tally.examples)
        if form == "unsealed":
            # Loaded: identical, or changed only where such a file has no checksum.
            assert set(tally.changed_parts) <= NOT_COVERED_UNSEALED, (mode, tally.changed_parts)
        else:
            # Every byte is covered before parsing: whatever changed, the load is refused.
            assert counts["refused"] == sum(counts.values()), (mode, counts, tally.examples)


def test_the_known_hangs_of_hdf5_end_in_a_refusal_within_the_reader_deadline(fuzz, pool, targets):
    path = targets["unsealed"]["weight-image"]
    tally = pool.run(path, fuzz.flip_cases(path.read_bytes(), HANGING_FLIPS))["flip"]
    assert tally.counts["refused"] == 2, tally.summary()
    assert all("within 10 s" in message for _, message in tally.examples["refused"])
    assert tally.slowest_s < DEADLINE_S


def test_the_harness_reports_every_kind_of_failure(fuzz, targets):
    # Planted misbehaviour in the worker: the tally must name each, so a clean run means something.
    path = targets["sealed"]["weight-image"]
    data = path.read_bytes()
    planted = [
        fuzz.Case("flip", "intact-hang", plant="hang"),
        fuzz.Case("flip", "intact-crash", plant="crash"),
        fuzz.Case("flip", "intact-exception", plant="exception"),
        fuzz.Case("flip", "intact-changed", plant="changed"),
        fuzz.Case("flip", "intact"),
        *fuzz.flip_cases(data, [600]),
    ]
    with fuzz.LoadPool(workers=2, deadline_s=3.0) as small:
        counts = small.run(path, planted)["flip"].counts
    assert counts == {
        **dict.fromkeys(fuzz.OUTCOMES, 0),
        "hang": 1,
        "crash": 1,
        "exception": 1,
        "changed": 1,
        "identical": 1,
        "refused": 1,
    }
