"""Run ``pcl_byte_bridge`` alone under Icarus + cocotb (``tb/bridge_bench.py``) and check its trace.

``run_bridge`` returns the per-cycle trace of every stream signal; ``check_bridge`` is the
checker: it decodes what went in on either side with ``packets.PacketLayout`` (the model of the
byte layout) and compares it with what came out, and checks the stream rules; ``coverage``
counts the situations the run must have produced (every RX kind, back-pressure on each port,
a spike and a result offered at once).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import sim
from .packets import PacketLayout, RxKind, TxKind
from .params import RtlLayout
from .sources import RTL_DIR

BRIDGE = RTL_DIR / "pcl_byte_bridge.v"
TOPLEVEL = "pcl_byte_bridge"


def bridge_parameters(layout: RtlLayout) -> dict[str, int]:
    """pcl_byte_bridge's parameters for ``layout``, as pcl_up5k_top binds them."""
    w = layout.widths
    return {
        "WADDR_BITS": w["WADDR_BITS"],
        "WL_BITS": w["WL_BITS"],
        "STEP_BITS": w["STEP_BITS"],
        "IN_INDEX_BITS": w["IN_INDEX_BITS"],
        "LAYER_BITS": w["LAYER_BITS"],
        "NEURON_BITS": w["NEURON_BITS"],
        "RESULT_BITS": PacketLayout(layout).result_bits,
    }


@dataclass(frozen=True)
class BridgeTrace:
    """One row per clock cycle: the value of every stream signal, settled before the edge."""

    layout: RtlLayout
    rows: list[dict[str, int]]
    rx_planned: bytes

    def replace_rows(self, rows: list[dict[str, int]]) -> BridgeTrace:
        return BridgeTrace(self.layout, rows, self.rx_planned)


def run_bridge(
    layout: RtlLayout,
    *,
    seed: int = 0,
    packets: int = 120,
    spikes: int = 60,
    results: int = 20,
    source: Path = BRIDGE,
    build_root=None,
    keep_dir=None,
) -> BridgeTrace:
    """Simulate the bridge on a random stream of ``packets`` RX packets (every kind) while the
    core side offers ``spikes`` spike and ``results`` result payloads. ``source``: the Verilog of
    the bridge (another copy, e.g. one with a planted bug, for testing the checker)."""
    runner, build_dir = sim.compile_bench(
        [source], TOPLEVEL, {}, build_root=build_root, parameters=bridge_parameters(layout)
    )
    with tempfile.TemporaryDirectory(prefix="pcl-bridge-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        job = {
            "spec": layout.spec.to_dict(),
            "topology": list(layout.topology),
            "lanes": layout.lanes,
            "seed": seed,
            "packets": packets,
            "spikes": spikes,
            "results": results,
            "out_json": str(work / "trace.json"),
        }
        (work / "job.json").write_text(json.dumps(job))
        (work / "trace.json").unlink(missing_ok=True)
        sim.run_bench(
            runner,
            build_dir,
            work,
            test_module="firmware_bridge.rtl.tb.bridge_bench",
            toplevel=TOPLEVEL,
            what="the byte-bridge bench",
            complete=(work / "trace.json").exists,
        )
        out = json.loads((work / "trace.json").read_text())
    rows = [dict(zip(out["columns"], values, strict=True)) for values in out["trace"]]
    return BridgeTrace(layout, rows, bytes.fromhex(out["rx_planned"]))


# ----------------------------------------------------------------------------------------------
# Checker

# (valid, ready, data signals) of every stream; data must hold while valid waits for ready.
STREAMS = {
    "wl": ("wl_valid", "wl_ready", ("wl_threshold", "wl_addr", "wl_data")),
    "in": ("in_valid", "in_ready", ("in_index", "in_step", "in_last")),
    "tx": ("tx_valid", "tx_ready", ("tx_data",)),
}


def _taken(rows, valid: str, ready: str) -> list[int]:
    return [i for i, r in enumerate(rows) if r[valid] and r[ready]]


def check_bridge(trace: BridgeTrace) -> list[str]:
    """Every way the bridge's behaviour differs from the packet layout and the stream rules (empty:
    none). RX bytes taken must come out on the core side as the packets they frame, in order
    (weight / threshold to wl, spikes to in, kind 3 nowhere); the spike and result payloads taken
    must leave as TX packets, in the order taken; a result is never taken while a spike is
    offered; an output's valid and data hold until it is taken."""
    p = PacketLayout(trace.layout)
    w = trace.layout.widths
    rows = trace.rows
    problems: list[str] = []
    for i, r in enumerate(rows):
        unknown = [n for n in ("rx_ready", "sp_ready", "res_ready", "wl_valid", "in_valid", "tx_valid") if r[n] == -1]
        unknown += [f for valid, _, fields in STREAMS.values() if r[valid] == 1 for f in fields if r[f] == -1]
        if unknown:  # nothing below can be decoded
            return [f"cycle {i}: {', '.join(unknown)} unknown (X)"]

    rx = bytes(rows[i]["rx_data"] for i in _taken(rows, "rx_valid", "rx_ready"))
    if rx != trace.rx_planned:
        problems.append(f"RX: {len(rx)} of {len(trace.rx_planned)} planned bytes were taken")
    whole = len(rx) - len(rx) % p.rx_bytes
    expected = []
    for kind, payload in p.split_rx(rx[:whole]):
        if kind in (RxKind.WEIGHT, RxKind.THRESHOLD):
            expected.append(
                ("wl", (int(kind == RxKind.THRESHOLD), payload >> w["WL_BITS"], payload & ((1 << w["WL_BITS"]) - 1)))
            )
        elif kind == RxKind.SPIKE:
            index_bits, step_bits = w["IN_INDEX_BITS"], w["STEP_BITS"]
            expected.append(
                (
                    "in",
                    (
                        payload & ((1 << index_bits) - 1),
                        (payload >> index_bits) & ((1 << step_bits) - 1),
                        payload >> (index_bits + step_bits),
                    ),
                )
            )
    observed = []
    for i, r in enumerate(rows):
        for name in ("wl", "in"):
            valid, ready, fields = STREAMS[name]
            if r[valid] and r[ready]:
                observed.append((name, tuple(r[f] for f in fields), i))
    for n, (exp, obs) in enumerate(zip(expected, observed, strict=True)):
        if exp != obs[:2]:
            problems.append(f"core side beat {n} (cycle {obs[2]}): expected {exp}, the bridge gave {obs[:2]}")
            break
    if len(observed) != len(expected):
        problems.append(f"core side: {len(observed)} beats for {len(expected)} framed packets of kinds 0-2")

    taken = []  # (kind, payload) in the order the core side handed them over
    for i, r in enumerate(rows):
        if r["sp_valid"] and r["sp_ready"]:
            taken.append((TxKind.SPIKE, r["sp_payload"]))
        if r["res_valid"] and r["res_ready"]:
            taken.append((TxKind.RESULT, r["res_payload"]))
            if r["sp_valid"]:
                problems.append(f"cycle {i}: a result was taken while a spike was offered")
    tx = bytes(rows[i]["tx_data"] for i in _taken(rows, "tx_valid", "tx_ready"))
    try:
        sent = [
            (kind, int.from_bytes(tx[j : j + p.tx_bytes], "little") & ((1 << p.tx_payload_bits) - 1))
            for j, (kind, _) in zip(range(0, len(tx), p.tx_bytes), p.split_tx(tx), strict=True)
        ]
    except ValueError as exc:
        problems.append(f"TX: {exc}")
        sent = []
    if sent != taken:
        pairs = enumerate(zip(sent, taken, strict=True))
        first = next((n for n, (a, b) in pairs if a != b), min(len(sent), len(taken)))
        problems.append(f"TX: {len(sent)} packets for {len(taken)} payloads taken; first difference at packet {first}")

    for name, (valid, ready, fields) in STREAMS.items():
        for i in range(len(rows) - 1):
            r, nxt = rows[i], rows[i + 1]
            if r[valid] and not r[ready] and (not nxt[valid] or any(nxt[f] != r[f] for f in fields)):
                problems.append(f"{name}: cycle {i}: valid dropped or data changed before the beat was taken")
                break
    return problems


def coverage(trace: BridgeTrace) -> dict[str, int]:
    """How often the run produced each situation the bridge must handle."""
    p = PacketLayout(trace.layout)
    rows = trace.rows
    kinds = [k for k, _ in p.split_rx(trace.rx_planned)]
    return {
        **{f"rx {k.name.lower()} packets": kinds.count(k) for k in RxKind},
        "rx stalled (packet waiting for the core)": sum(r["rx_valid"] and not r["rx_ready"] for r in rows),
        "wl back-pressure": sum(r["wl_valid"] and not r["wl_ready"] for r in rows),
        "in back-pressure": sum(r["in_valid"] and not r["in_ready"] for r in rows),
        "tx back-pressure": sum(r["tx_valid"] and not r["tx_ready"] for r in rows),
        "spike and result offered to an empty bridge": sum(
            r["sp_valid"] and r["res_valid"] and r["sp_ready"] for r in rows
        ),
        "spikes taken": sum(r["sp_valid"] and r["sp_ready"] for r in rows),
        "results taken": sum(r["res_valid"] and r["res_ready"] for r in rows),
    }
