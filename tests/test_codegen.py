"""One generator: every header a firmware or RTL build uses comes from popcount_learn.codegen.

The spec objects hold values, codegen names and renders them, and the builds write what it
renders. These tests regenerate every header and compare it with what the builds actually
use, check that no source outside codegen writes header syntax, and that every header the C and
Verilog sources include is either in the tree or generated.
"""

import re
import subprocess
from pathlib import Path

import pytest

from firmware_bridge.boards import build
from firmware_bridge.rtl import sim as rtl_sim
from firmware_bridge.rtl.params import RtlLayout
from firmware_bridge.wire import protocol
from popcount_learn import __version__, codegen
from popcount_learn.codegen import Constant
from popcount_learn.datapath import DatapathConfig
from popcount_learn.learning import LearningConfig

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware_bridge" / "firmware"
RTL = REPO / "firmware_bridge" / "rtl"
SPECS = [
    (DatapathConfig.for_weight_bits(8), LearningConfig()),
    (
        DatapathConfig(
            time_shift=2,
            weight_bits=12,
            current_frac_bits=1,
            current_bits=14,
            membrane_bits=32,
            current_overflow="wrap",
            tie_rule="lowest_index",
            dark_input_step=3,
            max_steps=40,
        ),
        LearningConfig(seed=2**32 - 1, output_rule="all_violators", correct_rule="always"),
    ),
    (DatapathConfig.for_weight_bits(4), None),
]


def expected_firmware_headers(spec, learning):
    """Every firmware header, rendered here from the spec objects and the wire constants."""
    headers = codegen.firmware_spec_headers(spec, learning)
    headers["pcl_protocol.h"] = codegen.c_header(
        "pcl_protocol.h",
        [*protocol.header_constants(), Constant("FIRMWARE_VERSION", f'"{__version__}"')],
        source="firmware_bridge.wire.protocol",
    )
    return headers


@pytest.mark.parametrize("index", range(len(SPECS)))
def test_the_firmware_build_directory_holds_exactly_the_regenerated_headers(index, tmp_path):
    spec, learning = SPECS[index]
    prepared = build.prepare_build(spec, learning=learning, build_root=tmp_path)
    written = {p.name: p.read_text() for p in prepared.gen_dir.iterdir()}
    assert written == expected_firmware_headers(spec, learning)


def test_the_rtl_build_directory_holds_exactly_the_regenerated_headers(tmp_path):
    layout = RtlLayout(SPECS[1][0], (20, 7, 3), lanes=3)
    layout.write_headers(tmp_path)
    expected = {
        **codegen.rtl_spec_headers(layout.spec),
        "pcl_topology.vh": codegen.verilog_header(
            "pcl_topology.vh", layout.constants(), source="firmware_bridge.rtl.params.RtlLayout"
        ),
        "pcl_core_params.vh": codegen.verilog_parameter_bindings(
            "pcl_core_params.vh", layout.core_parameter_bindings(), source="firmware_bridge.rtl.params.RtlLayout"
        ),
    }
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == expected


@pytest.mark.rtl
def test_the_simulation_build_uses_the_regenerated_headers(tmp_path):
    layout = RtlLayout(SPECS[0][0], (12, 5, 3), lanes=2)
    _, build_dir = rtl_sim.build(layout, batch_images=4, build_root=tmp_path)
    headers = {
        **layout.headers(),
        "pcl_tb.vh": codegen.verilog_header(
            "pcl_tb.vh", rtl_sim.tb_constants(layout, 4), source="firmware_bridge.rtl.sim"
        ),
    }
    for name, text in headers.items():
        assert (build_dir / name).read_text() == text, name


def test_only_codegen_writes_header_syntax():
    """No module but codegen spells ``#define`` / ``#ifndef`` / ``localparam`` into a string."""
    pattern = re.compile(r"""["'][^"'\n]*(#define |#ifndef |localparam )""")
    offenders = []
    for path in sorted((REPO / "popcount_learn").rglob("*.py")) + sorted((REPO / "firmware_bridge").rglob("*.py")):
        if path.name == "codegen.py":
            continue
        offenders += [
            f"{path.relative_to(REPO)}:{n}"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)
        ]
    assert not offenders, offenders


def _includes(paths, pattern):
    return {m for p in paths for m in re.findall(pattern, p.read_text())}


def test_every_header_the_firmware_includes_is_in_the_tree_or_generated():
    sources = [*FIRMWARE.rglob("*.c"), *FIRMWARE.rglob("*.h")]
    in_tree = {p.name for p in sources}
    generated = set(expected_firmware_headers(*SPECS[0]))
    included = _includes(sources, r'#include "([^"]+)"')
    assert included - in_tree <= generated, included - in_tree - generated
    assert generated <= included  # and every generated header is used
    assert not in_tree & generated  # no hand-written copy beside the generated one


def test_every_include_of_the_verilog_is_generated():
    sources = [*RTL.rglob("*.v")]
    layout = RtlLayout(SPECS[0][0], (12, 5, 3), lanes=2)
    generated = {*layout.headers(), "pcl_tb.vh"}
    included = _includes(sources, r'`include "([^"]+)"')
    assert included <= generated, included - generated
    assert not any(p.name in generated for p in RTL.rglob("*.vh"))  # none checked in


@pytest.mark.needs("cc")
@pytest.mark.parametrize("index", range(len(SPECS)))
def test_generated_c_headers_compile_together_pedantically(index, tmp_path):
    spec, learning = SPECS[index]
    headers = expected_firmware_headers(spec, learning)
    codegen.write_headers(tmp_path, headers)
    includes = "".join(f'#include "{name}"\n' for name in headers) * 2  # twice: the guards hold
    checks = [
        ("PCL_CURRENT_MIN", spec.current_min),
        ("PCL_MEMBRANE_MAX", spec.membrane_max),
        ("PCL_TIE_BY_LOWEST_INDEX", int(spec.tie_rule == "lowest_index")),
        ("PCL_STREAM_N_SPEC_FIELDS", 11),
    ]
    if learning is not None:
        checks.append(("PCL_LEARN_SEED", learning.seed))
    body = "\n".join(f'_Static_assert((long long){name} == {value}LL, "{name}");' for name, value in checks)
    (tmp_path / "t.c").write_text(
        "#include <stdint.h>\n"
        + includes
        + body
        + "\nstatic const int32_t spec_values[] = PCL_STREAM_SPEC_VALUES;\n"
        + "int main(void) { return (int)(sizeof spec_values / sizeof spec_values[0]) - 11; }\n"
    )
    r = subprocess.run(
        ["cc", "-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-o", "t", "t.c"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "t")]).returncode == 0


def test_constants_refuse_what_a_header_cannot_hold():
    for bad in (
        dict(name="lower", value=1),
        dict(name="X", value=True),
        dict(name="X", value=1 << 31),
        dict(name="X", value=-1, unsigned=True),
        dict(name="X", value=3, hex=True),
        dict(name="X", value=(1, -2)),
    ):
        with pytest.raises(ValueError):
            Constant(**bad)
    text = codegen.verilog_header(
        "x.vh",
        [
            Constant("A", -(2**31)),
            Constant("B", (3, 5)),
            Constant("C", 0x85EBCA6B, unsigned=True, hex=True),
            Constant("D", "{ 1 }"),
        ],
        source="test",
    )
    assert "localparam integer PCL_A = (-2147483647 - 1);" in text
    assert "localparam [32*2-1:0] PCL_B = {32'd5, 32'd3};" in text
    assert "localparam [31:0] PCL_C = 32'h85EBCA6B;" in text
    assert "PCL_D" not in text  # a C expression has no Verilog form


def test_write_if_changed_keeps_the_timestamp_of_an_unchanged_file(tmp_path):
    import os

    path = tmp_path / "h.h"
    assert codegen.write_if_changed(path, "a\n")
    os.utime(path, (1_000_000, 1_000_000))
    assert not codegen.write_if_changed(path, "a\n") and path.stat().st_mtime == 1_000_000
    assert codegen.write_if_changed(path, "b\n") and path.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["h.h"]  # no temporary left behind
