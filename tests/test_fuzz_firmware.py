"""Short version of the firmware fuzz run (tools/fuzz_firmware.py): the real main loop and
protocol handler under gcc's AddressSanitizer + UndefinedBehaviorSanitizer, fed a seeded
barrage, every reply checked. The recorded 1,000,000-input run is in BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.firmware

REPO = Path(__file__).resolve().parent.parent
SHORT_INPUTS = 15_000


@pytest.fixture(scope="module")
def fuzz():
    import fuzz_firmware

    return fuzz_firmware


@pytest.fixture(scope="module")
def fuzzer(fuzz, firmware_build_root, tmp_path_factory):
    executable = fuzz.build_fuzzer(firmware_build_root)
    corpus = tmp_path_factory.mktemp("fuzz") / "corpus.bin"
    corpus.write_bytes(fuzz.corpus_bytes(fuzz.seed_image()))
    return executable, corpus


def test_barrage_finds_no_crash_no_sanitizer_report_and_no_bad_reply(fuzz, fuzzer):
    executable, corpus = fuzzer
    run = fuzz.run_fuzzer(executable, corpus, inputs=SHORT_INPUTS, seed=2024, timeout_s=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "runtime error" not in run.stderr and "Sanitizer" not in run.stderr
    summary = fuzz.parse_summary(run.stderr)
    assert summary["inputs"] == SHORT_INPUTS
    # Not vacuous: the barrage reached the deep paths, not just the frame checks.
    for reply in (
        "INFO_REPLY",
        "LOAD_COMMIT_REPLY",
        "READ_IMAGE_REPLY",
        "INFER_REPLY",
        "INFER_BATCH_REPLY",
        "TRAIN_STEP_REPLY",
    ):
        assert summary["replies"].get(reply, 0) > 0, (reply, summary["replies"])
    for error in (
        "BAD_FRAME",
        "BAD_CRC",
        "OVERSIZE",
        "TRUNCATED",
        "UNKNOWN_TYPE",
        "BAD_LENGTH",
        "IMAGE_CRC",
        "IMAGE_FORMAT",
        "SPEC_MISMATCH",
        "BAD_OFFSET",
    ):
        assert summary["errors"].get(error, 0) > 0, (error, summary["errors"])


def test_the_reply_oracle_catches_a_damaged_reply(fuzz, fuzzer):
    executable, corpus = fuzzer
    run = fuzz.run_fuzzer(executable, corpus, inputs=SHORT_INPUTS, seed=2024, plant=True, timeout_s=300)
    assert run.returncode != 0
    assert "FUZZ FAIL" in run.stderr


def test_the_sanitizers_are_really_on(fuzzer):
    executable, _ = fuzzer
    symbols = Path(executable).read_bytes()
    assert b"__asan_report" in symbols and b"__ubsan_handle" in symbols
