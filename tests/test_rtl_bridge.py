"""pcl_byte_bridge alone under Icarus + cocotb: packet framing of every kind, back-pressure on
both sides, spikes before results. Driver and monitor: firmware_bridge/rtl/tb/bridge_bench.py;
model: the packet layout (rtl/packets.py); checker: firmware_bridge.rtl.bridge_sim.check_bridge.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.rtl.bridge_sim import BRIDGE, check_bridge, coverage, run_bridge
from firmware_bridge.rtl.packets import PacketLayout
from firmware_bridge.rtl.params import RtlLayout
from popcount_learn import h5io
from popcount_learn.datapath import DatapathConfig

NET100 = Path(__file__).resolve().parent.parent / "datasets" / "pretrained" / "net100-int8.h5"


def _layouts() -> dict[str, RtlLayout]:
    image = h5io.load_weight_image(NET100)
    # 2**20 steps and a narrow membrane: the input-spike payload is the longest RX payload
    long_steps = DatapathConfig(weight_bits=2, current_frac_bits=0, current_bits=4, membrane_bits=4, max_steps=1 << 20)
    return {"net100-int8 x4": RtlLayout.for_image(image, 4), "long steps": RtlLayout(long_steps, (1000, 3), 1)}


LAYOUTS = _layouts()
_TRACES: dict = {}


def _trace(name):
    if name not in _TRACES:
        _TRACES[name] = run_bridge(LAYOUTS[name], seed=7)
    return _TRACES[name]


def test_the_two_layouts_cover_both_longest_rx_payloads():
    a, b = (PacketLayout(LAYOUTS[n]) for n in LAYOUTS)
    assert a.load_bits > a.spike_in_bits and b.spike_in_bits > b.load_bits
    assert (a.rx_bytes, a.tx_bytes) != (b.rx_bytes, b.tx_bytes)


@pytest.mark.rtl
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_bridge_frames_every_packet_kind_under_back_pressure(name):
    trace = _trace(name)
    assert check_bridge(trace) == []
    cov = coverage(trace)
    assert all(count > 0 for count in cov.values()), cov
    assert cov["spikes taken"] == 60 and cov["results taken"] == 20


def _mutated(trace, edit):
    rows = [dict(r) for r in trace.rows]
    edit(rows)
    return trace.replace_rows(rows)


def _first(rows, cond):
    return next(i for i, r in enumerate(rows) if cond(r))


@pytest.mark.rtl
def test_checker_reports_each_kind_of_fault():
    trace = _trace("net100-int8 x4")

    def tx_byte(rows):
        rows[_first(rows, lambda r: r["tx_valid"] and r["tx_ready"])]["tx_data"] ^= 1

    def wl_data(rows):
        rows[_first(rows, lambda r: r["wl_valid"] and r["wl_ready"])]["wl_data"] ^= 1 << 3

    def lost_spike(rows):  # a spike taken that never leaves as a packet
        i = _first(rows, lambda r: r["sp_valid"] and not r["sp_ready"])
        rows[i]["sp_ready"] = 1

    def priority(rows):  # a result taken while a spike is offered
        i = _first(rows, lambda r: r["res_valid"] and r["res_ready"])
        rows[i]["sp_valid"] = 1

    def unstable(rows):  # data changing while valid waits
        i = _first(rows, lambda r: r["in_valid"] and not r["in_ready"])
        rows[i + 1]["in_step"] ^= 1

    def unknown(rows):
        rows[_first(rows, lambda r: r["tx_valid"])]["tx_data"] = -1

    for edit, needle in (
        (tx_byte, "TX"),
        (wl_data, "core side beat"),
        (lost_spike, "TX: "),
        (priority, "a result was taken while a spike was offered"),
        (unstable, "in: cycle"),
        (unknown, "tx_data unknown"),
    ):
        problems = check_bridge(_mutated(trace, edit))
        assert any(needle in p for p in problems), (edit.__name__, problems)


@pytest.mark.rtl
def test_a_bridge_that_ignores_the_spike_priority_fails(tmp_path):
    bad = tmp_path / "pcl_byte_bridge.v"
    text = BRIDGE.read_text()
    line = "assign res_ready = tx_empty && !sp_valid && !word_valid;"
    assert text.count(line) == 1
    bad.write_text(text.replace(line, "assign res_ready = tx_empty && !word_valid;"))
    problems = check_bridge(run_bridge(LAYOUTS["net100-int8 x4"], seed=7, source=bad))
    assert any("a result was taken while a spike was offered" in p for p in problems), problems
    assert any(p.startswith("TX: ") for p in problems), problems  # and that result never left
