"""What a sweep found: its progress, a table and CSV of the points, Pareto fronts and their plots.

A point is on the front of accuracy against a cost (cycles per image, weight memory, energy per
classification, hidden spikes before the decision) when no other finished point is at least as
accurate and at most as costly with one of the two strictly better. ``pareto`` in the table
marks the points on the front of all five objectives at once.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .store import SweepStore

# (column, label, unit) of the costs the fronts are drawn against; accuracy is maximised.
COSTS = (
    ("cycles_per_image", "cycles per image", "cycles"),
    ("weight_memory_bytes", "weight memory", "bytes"),
    ("energy_pj", "energy per classification (estimate, 45 nm)", "pJ"),
    ("hidden_spikes", "hidden spikes before the decision", "spikes"),
)
TABLE_COLUMNS = (
    "accuracy",
    "float_accuracy",
    "hidden_spikes",
    "steps_to_decision",
    "cycles_per_image",
    "images_per_s",
    "weight_memory_bytes",
    "state_memory_bits",
    "energy_pj",
)
CSV_NAME = "sweep.csv"
PLOTS_DIR = "plots"


def pareto_front(points: list[dict], cost_keys: tuple[str, ...], gain_key: str = "accuracy") -> list[int]:
    """Indices of the points that no other point dominates (``gain_key`` up, every cost down)."""

    def vector(p):
        return (-p[gain_key], *(p[k] for k in cost_keys))

    vectors = [vector(p) for p in points]
    front = []
    for i, a in enumerate(vectors):
        dominated = any(
            all(x <= y for x, y in zip(b, a, strict=True)) and any(x < y for x, y in zip(b, a, strict=True))
            for j, b in enumerate(vectors)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _rows(store: SweepStore) -> list[dict]:
    order = {h: i for i, h in enumerate(json.loads(store.get_meta("points", "[]")))}
    synth = store.synthesis()
    rows = []
    for p in store.points():
        metrics = p["metrics"] or {}
        row = {"point": order.get(p["config_hash"], -1), "config_hash": p["config_hash"], "status": p["status"]}
        row.update({f"{k}": v for k, v in p["axes"].items()})
        for col in TABLE_COLUMNS:
            row[col] = p.get(col) if col in p else metrics.get(col)
        row["image_hash"] = p["image_hash"]
        row["image_file"] = p["image_file"]
        row["error"] = p["error"]
        s = synth.get(p["config_hash"])
        if s is not None:
            row["logic_cells"] = s.get("logic_cells")
            row["fmax_mhz"] = s.get("fmax_mhz")
            row["synth_error"] = s.get("error")
        rows.append(row)
    rows.sort(key=lambda r: (r["point"] < 0, r["point"], r["config_hash"]))
    done = [r for r in rows if r["status"] == "done"]
    overall = set(pareto_front(done, tuple(c for c, _, _ in COSTS)))
    for i, r in enumerate(done):
        r["pareto"] = i in overall
    return rows


def status(store: SweepStore) -> dict:
    """Progress of a sweep: points total / done / failed / running (on which workers) / pending."""
    total = int(store.get_meta("points_total", "0"))
    finished = store.finished()
    live = store.live()
    done = sum(1 for s in finished.values() if s == "done")
    failed = sum(1 for s in finished.values() if s == "failed")
    return {
        "state": store.get_meta("state", "not started"),
        "points": total,
        "done": done,
        "failed": failed,
        "running": len(live),
        "pending": max(0, total - done - failed - len(live)),
        "running_on": sorted({r["worker"] for r in live}),
        "dashboard": store.get_meta("dashboard", ""),
        "client_heartbeat_utc": store.get_meta("client_heartbeat_utc", ""),
    }


def _csv_text(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plot_fronts(rows: list[dict], out_dir: Path) -> list[str]:
    """One PNG per cost: every finished point, its front highlighted and labelled by its axes."""
    from ..plots import _figure, _save

    out_dir.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["status"] == "done"]
    axis_keys = [k for k in (done[0] if done else {}) if "." in k]
    written = []
    for key, label, unit in COSTS:
        fig = _figure(figsize=(6.4, 4.6))
        ax = fig.add_subplot(1, 1, 1)
        xs = [r[key] for r in done]
        ys = [100 * r["accuracy"] for r in done]
        ax.scatter(xs, ys, s=18, color="0.6", label="points", zorder=2)
        front = sorted(pareto_front(done, (key,)), key=lambda i: done[i][key])
        ax.plot(
            [xs[i] for i in front],
            [ys[i] for i in front],
            "o-",
            color="tab:red",
            ms=6,
            lw=1.5,
            label="Pareto front",
            zorder=3,
        )
        for n, i in enumerate(front):
            # Few front points: their axis values; many: their point numbers (the table's first column).
            if len(front) <= 6:
                text = ", ".join(f"{k.split('.', 1)[1]}={_short(done[i][k])}" for k in axis_keys)
            else:
                text = f"#{done[i]['point']}"
            offset = (4, -9) if n % 2 else (-4, 5)
            ax.annotate(text, (xs[i], ys[i]), fontsize=6, xytext=offset, textcoords="offset points")
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_ylabel("test accuracy (%), emulated")
        ax.set_title(f"accuracy against {label}; front labelled by point", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        written.append(str(_save(fig, out_dir / f"pareto_{key}.png")))
    return written


def _short(v):
    if isinstance(v, list):
        return "-".join(map(str, v))
    if isinstance(v, float):
        return f"{v:.3g}"
    return v


def sweep_report(directory, *, csv_path=None, plots: bool = True) -> dict:
    """Status, rows, fronts; writes the CSV (default ``DIR/sweep.csv``) and, with ``plots``, the
    PNGs in ``DIR/plots``. Returns a dict with all of it (the CLI prints it)."""
    store = SweepStore(directory, create=False)
    try:
        rows = _rows(store)
        info = status(store)
    finally:
        store.close()
    directory = Path(directory)
    csv_path = Path(csv_path) if csv_path is not None else directory / CSV_NAME
    _write_atomic(csv_path, _csv_text(rows))
    done = [r for r in rows if r["status"] == "done"]
    fronts = {key: [done[i]["config_hash"] for i in pareto_front(done, (key,))] for key, _, _ in COSTS}
    written = plot_fronts(rows, directory / PLOTS_DIR) if plots and done else []
    return {**info, "rows": rows, "fronts": fronts, "csv": str(csv_path), "plots": written}


def _synth_cell(row: dict, key: str, fmt: str) -> str:
    if row.get(key) is not None:
        return format(row[key], fmt)
    return "no fit" if row.get("synth_error") else "-"


def format_table(rows: list[dict]) -> str:
    """A plain-text table: the axes, accuracy, costs, Pareto mark, status."""
    if not rows:
        return "(no finished points yet)"
    axis_keys = list(dict.fromkeys(k for r in rows for k in r if "." in k))
    synth = any("logic_cells" in r for r in rows)
    head = ["#", *[k.split(".", 1)[1] for k in axis_keys], "acc %", "float %", "spikes", "steps", "cycles"]
    head += ["img/s", "weights B", "energy nJ", *(["LCs", "fmax MHz"] if synth else []), "pareto", "status"]
    lines = []
    for r in rows:
        ok = r["status"] == "done"

        def num(key, fmt, scale=1.0, row=r, ok=ok):
            v = row.get(key)
            return format(v * scale, fmt) if ok and v is not None else "-"

        lines.append(
            [
                str(r["point"]),
                *[str(_short(r.get(k, "-"))) for k in axis_keys],
                num("accuracy", ".2f", 100),
                num("float_accuracy", ".2f", 100),
                num("hidden_spikes", ".1f"),
                num("steps_to_decision", ".1f"),
                num("cycles_per_image", ",.0f"),
                num("images_per_s", ",.0f"),
                num("weight_memory_bytes", ",.0f"),
                num("energy_pj", ".2f", 1e-3),
                *([_synth_cell(r, "logic_cells", ",d"), _synth_cell(r, "fmax_mhz", ".1f")] if synth else []),
                "*" if r.get("pareto") else "",
                r["status"] if ok else f"failed: {r['error']}",
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join([fmt.format(*head), *(fmt.format(*line) for line in lines)])
