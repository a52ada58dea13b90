"""The firmware's own C unit tests, its build, and the portability rules of its sources."""

import re
import subprocess

import pytest

from firmware_bridge.boards import build
from firmware_bridge.errors import FirmwareBuildError
from popcount_learn.datapath import DatapathConfig
from popcount_learn.learning import LearningConfig

pytestmark = pytest.mark.firmware

FW = build.FIRMWARE_DIR
GOLDEN = FW.parent / "wire" / "golden_frames.txt"
PORTABLE = sorted(p for p in FW.glob("*.c")) + sorted(FW.glob("*.h"))

SPECS = {
    "int8-default": (DatapathConfig.for_weight_bits(8), LearningConfig()),
    "int12-wrap-dark": (
        DatapathConfig.for_weight_bits(
            12,
            current_overflow="wrap",
            membrane_overflow="wrap",
            tie_rule="lowest_index",
            dark_input_step=5,
            time_shift=2,
            current_frac_bits=2,
            max_steps=64,
        ),
        LearningConfig(output_rule="all_violators", correct_rule="always", prob_halving_samples=100, seed=2**32 - 1),
    ),
    "int5-no-rule": (DatapathConfig.for_weight_bits(5, time_shift=0, current_frac_bits=0, current_bits=10), None),
}


@pytest.mark.parametrize("name", SPECS)
def test_c_unit_tests_pass(name, firmware_build_root):
    spec, learning = SPECS[name]
    runner = build.build_c_tests(spec, learning=learning, build_root=firmware_build_root)
    r = subprocess.run([str(runner), str(GOLDEN)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    checks = int(re.search(r"(\d+) checks, 0 failed", r.stdout).group(1))
    assert checks > 1000


def test_c_runner_fails_on_a_damaged_golden_vector(firmware_build_root, tmp_path):
    runner = build.build_c_tests(build_root=firmware_build_root)
    lines = GOLDEN.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("mixed_600"))
    name, t, seq, payload, frame = lines[i].split()
    lines[i] = " ".join([name, t, seq, payload, frame[:100] + ("0" if frame[100] != "0" else "1") + frame[101:]])
    bad = tmp_path / "golden.txt"
    bad.write_text("\n".join(lines) + "\n")
    r = subprocess.run([str(runner), str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "mixed_600" in r.stdout


def test_build_is_keyed_by_spec_and_reused(firmware_build_root):
    a = build.build_firmware(build_root=firmware_build_root)
    b = build.build_firmware(build_root=firmware_build_root)
    c = build.build_firmware(DatapathConfig.for_weight_bits(8, max_steps=100), build_root=firmware_build_root)
    assert a == b and a.parent != c.parent
    mtime = a.stat().st_mtime_ns
    build.build_firmware(build_root=firmware_build_root)
    assert a.stat().st_mtime_ns == mtime  # nothing rebuilt
    assert "#define PCL_MAX_STEPS 100" in (c.parent / "gen" / "pcl_datapath.h").read_text()


def test_unknown_board_is_a_build_error(firmware_build_root):
    with pytest.raises(FirmwareBuildError, match="unknown board"):
        build.build_firmware(board="no-such-board", build_root=firmware_build_root)


def test_portable_sources_use_no_stdio_heap_or_float():
    banned = re.compile(r"#include\s*<(stdio|stdlib|string|math)\.h>|\b(malloc|free|printf|float|double)\b")
    for path in PORTABLE:
        code = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        assert not banned.search(code), f"{path.name}: {banned.search(code).group(0)}"


@pytest.mark.needs("arm-none-eabi-gcc")
@pytest.mark.parametrize("name", ["int8-default", "int12-wrap-dark"])
def test_portable_sources_compile_for_cortex_m3_without_64bit_division_or_float(name, firmware_build_root, tmp_path):
    spec, learning = SPECS[name]
    prepared = build.prepare_build(spec, learning=learning, build_root=firmware_build_root)
    sources = [
        "pcl_crc32.c",
        "pcl_cobs.c",
        "pcl_image.c",
        "pcl_infer.c",
        "pcl_proto.c",
        "main.c",
        "pcl_learn.c" if learning else "pcl_learn_none.c",
    ]
    undefined, defined = set(), set()
    for src in sources:
        obj = tmp_path / (src + ".o")
        r = subprocess.run(
            [
                "arm-none-eabi-gcc",
                "-mcpu=cortex-m3",
                "-mthumb",
                "-std=c99",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-O2",
                "-ffreestanding",
                f"-I{FW}",
                f"-I{prepared.gen_dir}",
                "-c",
                str(FW / src),
                "-o",
                str(obj),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        nm = subprocess.run(["arm-none-eabi-nm", str(obj)], capture_output=True, text=True, check=True)
        for line in nm.stdout.splitlines():
            kind, name = line.split()[-2:]
            (undefined if kind == "U" else defined).add(name)
    undefined -= defined
    helpers = {s for s in undefined if s.startswith("__aeabi_")}
    # 64-bit division (__aeabi_ldivmod / uldivmod) and soft float (__aeabi_f*, __aeabi_d*) are out.
    assert not {s for s in helpers if "ldiv" in s or s.startswith(("__aeabi_f", "__aeabi_d", "__aeabi_i2"))}, helpers
    assert undefined <= {"hal_init", "hal_read_byte", "hal_write", "hal_millis", "memset", "memcpy"} | helpers, (
        undefined
    )
