"""RTL hygiene: verilator -Wall lint over several layouts, the file lists, the source conventions
and the parameter checks (a layout that disagrees with itself must stop the tools)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import rtl_lint

from firmware_bridge.rtl import sim as rtl_sim
from firmware_bridge.rtl.params import RtlLayout
from firmware_bridge.rtl.sources import CORE_FILE_LIST, RTL_DIR, UP5K_FILE_LIST, read_file_list
from popcount_learn.datapath import DatapathConfig

LAYOUTS = rtl_lint.lint_layouts()
VERILOG = sorted(RTL_DIR.glob("*.v")) + sorted((RTL_DIR / "tb").glob("*.v"))


# ----------------------------------------------------------------------------------------------
# Conventions of every .v file (no tools needed)


@pytest.mark.parametrize("path", VERILOG, ids=lambda p: p.name)
def test_every_verilog_file_resets_directives_and_holds_one_module_named_after_it(path):
    code = [line for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("//")]
    assert code[:2] == ["`resetall", "`default_nettype none"] or (
        code[0] == "`resetall" and "`default_nettype none" in code[1:3]
    ), code[:3]
    assert code[-1] == "`resetall"
    modules = re.findall(r"^module\s+(\w+)", path.read_text(), flags=re.M)
    assert modules == [path.stem]


def test_file_lists_name_every_rtl_source_once_and_the_tools_read_them():
    import rtl_synth

    core, up5k = read_file_list(CORE_FILE_LIST), read_file_list(UP5K_FILE_LIST)
    assert up5k[: len(core)] == core and len(set(up5k)) == len(up5k)
    assert set(up5k) == set(RTL_DIR.glob("*.v"))  # the synthesisable files, tb/ excluded
    assert list(rtl_sim.CORE_SOURCES) == core
    assert list(rtl_synth.SOURCES) == up5k


def test_rtl_synth_says_why_nextpnr_gave_no_report():
    import rtl_synth

    over = {"ICESTORM_LC": 7092, "ICESTORM_RAM": 40, "ICESTORM_DSP": 8}
    assert rtl_synth.nextpnr_failure(1, "ERROR: Unable to place cell\n", over) == (
        "does not fit: ICESTORM_LC 7092 of 5280, ICESTORM_RAM 40 of 30"
    )
    fits = {"ICESTORM_LC": 4055, "ICESTORM_RAM": 25}
    assert rtl_synth.nextpnr_failure(-15, "Info: routing\n", fits) == "nextpnr interrupted (signal 15)"
    assert rtl_synth.nextpnr_failure(-2, "", {}) == "nextpnr interrupted (signal 2)"
    assert rtl_synth.nextpnr_failure(1, "ERROR: Failed to route\n", fits) == (
        "nextpnr failed (exit status 1): ERROR: Failed to route"
    )


def test_read_file_list_nests_and_refuses_what_it_does_not_understand(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.f").write_text("// a comment\nb.v  // trailing comment\n\n")
    (tmp_path / "outer.f").write_text("a.v\n-F sub/inner.f\nc.v\n")
    assert read_file_list(tmp_path / "outer.f") == [tmp_path / "a.v", tmp_path / "sub" / "b.v", tmp_path / "c.v"]
    (tmp_path / "bad.f").write_text("a.v\n+incdir+include\n")
    with pytest.raises(ValueError, match=r"bad\.f:2"):
        read_file_list(tmp_path / "bad.f")


# ----------------------------------------------------------------------------------------------
# verilator --lint-only -Wall


@pytest.mark.rtl
@pytest.mark.needs("verilator", "yosys")
@pytest.mark.parametrize("top", rtl_lint.TOPS)
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_verilator_lint_is_clean(name, top):
    result = rtl_lint.lint(LAYOUTS[name], top)
    assert result.messages == [], "\n".join(result.messages)


def _rtl_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "rtl"
    shutil.copytree(RTL_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__", "tb"))
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


@pytest.mark.rtl
@pytest.mark.needs("verilator")
def test_lint_reports_an_injected_latch(tmp_path):
    copy = _rtl_copy(tmp_path)
    _edit(copy / "pcl_lane.v", "        cur = {CURRENT_BITS{1'b0}};\n", "")  # cur: assigned on one branch only
    messages = rtl_lint.lint(LAYOUTS["net100-int8 x4"], "pcl_core", rtl_dir=copy).messages
    latches = [m for m in messages if m.startswith("%Warning-LATCH")]
    assert len(latches) == 4 and all("u_lane.cur'" in m for m in latches), messages  # one per lane


@pytest.mark.rtl
@pytest.mark.needs("verilator")
def test_lint_reports_an_injected_width_mismatch(tmp_path):
    copy = _rtl_copy(tmp_path)
    _edit(copy / "pcl_core.v", "(k == LAST_LAYER)", "(k == N_LAYERS - 1)")
    messages = rtl_lint.lint(LAYOUTS["3 layers 9-12-7-3 x3"], "pcl_core", rtl_dir=copy).messages
    assert len(messages) == 1 and messages[0].startswith("%Warning-WIDTH: ") and "pcl_core.v" in messages[0], messages


@pytest.mark.rtl
@pytest.mark.needs("verilator", "yosys")
def test_every_waiver_is_needed(tmp_path):
    """Each lint_off of pcl_lint.vlt hides warnings that would otherwise be reported."""
    waivers = [line for line in (RTL_DIR / "pcl_lint.vlt").read_text().splitlines() if line.startswith("lint_off")]
    assert waivers
    copy = _rtl_copy(tmp_path)
    for waiver in waivers:
        _edit(copy / "pcl_lint.vlt", waiver + "\n", "")
        messages = rtl_lint.lint(LAYOUTS["net100-int8 x4"], "pcl_up5k_top", rtl_dir=copy).messages
        assert messages, f"{waiver} waives nothing"
        shutil.copy(RTL_DIR / "pcl_lint.vlt", copy / "pcl_lint.vlt")


def test_lint_parameters_are_the_header_bindings():
    layout = LAYOUTS["3 layers 9-12-7-3 x3"]
    options = dict(o[2:].split("=", 1) for o in rtl_lint.core_parameters(layout))
    bindings = layout.headers()["pcl_core_params.vh"]
    assert sorted(options) == sorted(re.findall(r"\.(\w+)\(PCL_", bindings))
    assert options["LANES"] == "3" and options["N_LAYERS"] == "3"
    # element 0 in the lowest 32 bits, as codegen renders a vector
    assert options["LAYER_N_POST"] == "96'h" + f"{(3 << 64) | (7 << 32) | 12:x}"


# ----------------------------------------------------------------------------------------------
# Parameter checks: a bad layout stops Icarus and yosys


def _icarus_run(tmp_path: Path, top: str, parameters: dict[str, int]) -> subprocess.CompletedProcess:
    sources = [str(p) for p in read_file_list(CORE_FILE_LIST)]
    opts = [f"-P{top}.{k}={v}" for k, v in parameters.items()]
    subprocess.run(
        ["iverilog", "-g2012", "-s", top, "-o", str(tmp_path / "x.vvp"), *opts, *sources],
        check=True,
        capture_output=True,
        text=True,
    )
    return subprocess.run(["vvp", "-n", str(tmp_path / "x.vvp")], capture_output=True, text=True, timeout=60)


@pytest.mark.rtl
def test_core_defaults_pass_their_checks_and_a_bad_width_fails_them(tmp_path):
    ok = _icarus_run(tmp_path, "pcl_core", {})
    assert ok.returncode == 0 and "FATAL" not in ok.stdout + ok.stderr, ok.stdout + ok.stderr
    layout = RtlLayout(DatapathConfig(), (4, 6, 2), 4)  # the defaults of pcl_core
    assert layout.widths["WIDE_BITS"] == 25 and layout.widths["GROUP_BITS"] == 2
    narrow = {"WEIGHT_BITS": 4, "CURRENT_FRAC_BITS": 2, "CURRENT_BITS": 8, "MEMBRANE_BITS": 8}
    for bad, needle in (
        ({**narrow, "WIDE_BITS": 9}, "WIDE_BITS 9 < 10"),
        ({"GROUP_BITS": 1}, "layer 0"),
        ({"STATE_DEPTH": 4}, "STATE_DEPTH 4"),
        ({"STEP_BITS": 9}, "STEP_BITS"),
        ({"LAYER_ROW_SHIFT": (1 << 32) | 0}, "layer 0"),
    ):
        run = _icarus_run(tmp_path, "pcl_core", bad)
        assert run.returncode != 0 and "FATAL" in run.stdout and needle in run.stdout, (bad, run.stdout)
    assert _icarus_run(tmp_path, "pcl_core", {**narrow, "WIDE_BITS": 10}).returncode == 0
    run = _icarus_run(tmp_path, "pcl_lane", {"WIDE_BITS": 24})
    assert run.returncode != 0 and "pcl_lane: WIDE_BITS = 24 is too narrow" in run.stdout, run.stdout


@pytest.mark.needs("yosys")
def test_yosys_elaborates_good_parameters_and_stops_at_a_failing_check(tmp_path):
    sources = " ".join(str(p) for p in read_file_list(CORE_FILE_LIST))

    def synth(chparam: str) -> subprocess.CompletedProcess:
        script = f"read_verilog {sources}; {chparam} hierarchy -top pcl_core; proc"
        return subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True, cwd=tmp_path)

    good = synth("")
    assert good.returncode == 0, good.stderr
    bad = synth("chparam -set WIDE_BITS 20 pcl_core;")
    assert bad.returncode != 0 and "$fatal" in bad.stderr + bad.stdout, bad.stderr
