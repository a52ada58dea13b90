"""The results of a sweep: one SQLite file, ``DIR/sweep.sqlite``, and ``DIR/images/<hash>.h5``.

Written only by the sweep's client (and by tools that run on its Pareto points, through this
API), each change in one transaction, so an interrupted sweep leaves whole rows only.

Tables:

- ``points``: one row per finished point, keyed by ``config_hash`` (SHA-256 of the point's full
  configuration): its configuration and axis values (canonical JSON), ``status`` (``done`` or
  ``failed``), ``error``, ``image_hash`` (SHA-256 of the weight image's upload stream),
  ``image_file``, the headline metrics as columns and every metric as canonical JSON. Nothing
  in it depends on the machine or the time, so two runs of one sweep give byte-identical rows.
- ``runs``: per attempt, where and how it ran (worker, Numba threads, seconds, time, traceback).
- ``live``: the points running now and their workers (the progress of a running sweep).
- ``meta``: the sweep file, the dashboard address, the client's state and heartbeat.
- ``synthesis``: results of the optional synthesis stage (``tools/sweep_synth.py``).
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from pathlib import Path

from ..errors import ConfigError

STORE_NAME = "sweep.sqlite"
IMAGES_DIR = "images"
SCHEMA_VERSION = 1
# Headline metrics stored as columns (name in the store <- key in the metrics dict).
METRIC_COLUMNS = {
    "accuracy": ("accuracy", "REAL"),
    "hidden_spikes": ("hidden_spikes_before_decision_mean", "REAL"),
    "steps_to_decision": ("mean_steps_to_decision", "REAL"),
    "cycles_per_image": ("cycles_per_image_mean", "REAL"),
    "images_per_s": ("images_per_s", "REAL"),
    "weight_memory_bytes": ("weight_memory_bytes", "INTEGER"),
    "state_memory_bits": ("state_memory_bits", "INTEGER"),
    "energy_pj": ("energy_pj", "REAL"),
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    config_hash TEXT PRIMARY KEY,
    axes TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    image_hash TEXT,
    image_file TEXT,
    {", ".join(f"{name} {kind}" for name, (_, kind) in METRIC_COLUMNS.items())},
    metrics TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    config_hash TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    numba_threads INTEGER,
    seconds REAL,
    finished_utc TEXT NOT NULL,
    traceback TEXT,
    PRIMARY KEY (config_hash, attempt)
);
CREATE TABLE IF NOT EXISTS live (config_hash TEXT PRIMARY KEY, worker TEXT NOT NULL, since_utc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS synthesis (config_hash TEXT PRIMARY KEY, result TEXT NOT NULL);
"""


def canonical(value) -> str:
    """Canonical JSON: sorted keys, no spaces (floats as Python's shortest repr)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class SweepStore:
    """``DIR/sweep.sqlite`` and ``DIR/images``; ``create=False`` refuses a directory without one."""

    def __init__(self, directory, *, create: bool = True) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORE_NAME
        if not create and not self.path.exists():
            raise ConfigError(f"{self.directory}: no sweep here (no {STORE_NAME}); run popcount-learn sweep first")
        if create:
            if self.directory.exists() and not self.directory.is_dir():
                raise ConfigError(f"--out {self.directory} is not a directory")
            (self.directory / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.row_factory = sqlite3.Row
        with self._conn:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        version = self.get_meta("schema_version")
        if version != str(SCHEMA_VERSION):
            raise ConfigError(f"{self.path}: store schema {version}, this version reads {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- meta
    def set_meta(self, **values) -> None:
        with self._conn:
            self._conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(k, v if isinstance(v, str) else canonical(v)) for k, v in values.items()],
            )

    def get_meta(self, key: str, default=None):
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # --- points
    def finished(self) -> dict[str, str]:
        """config_hash -> status of every recorded point."""
        return dict(self._conn.execute("SELECT config_hash, status FROM points").fetchall())

    def image_path(self, config_hash: str) -> Path:
        return self.directory / IMAGES_DIR / f"{config_hash}.h5"

    def record(self, config_json: str, axes: dict, outcome: dict) -> None:
        """Store a point's outcome (``run_point``'s dict, image already written) and its run, in
        one transaction; a rerun of a failed point replaces its row."""
        h = outcome["config_hash"]
        metrics = outcome.get("metrics") or {}
        done = outcome["status"] == "done"
        columns = {name: metrics.get(key) for name, (key, _) in METRIC_COLUMNS.items()}
        row = {
            "config_hash": h,
            "axes": canonical(axes),
            "config": config_json,
            "status": outcome["status"],
            "error": outcome.get("error"),
            "image_hash": outcome.get("image_hash"),
            "image_file": f"{IMAGES_DIR}/{h}.h5" if done else None,
            **columns,
            "metrics": canonical(metrics) if done else None,
        }
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:
            attempt = self._conn.execute("SELECT COUNT(*) FROM runs WHERE config_hash = ?", (h,)).fetchone()[0] + 1
            self._conn.execute(f"INSERT OR REPLACE INTO points ({names}) VALUES ({marks})", tuple(row.values()))
            self._conn.execute(
                "INSERT INTO runs (config_hash, attempt, status, worker, numba_threads, seconds, finished_utc, "
                "traceback) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    h,
                    attempt,
                    outcome["status"],
                    outcome.get("worker"),
                    outcome.get("numba_threads"),
                    outcome.get("seconds"),
                    utc_now(),
                    outcome.get("traceback"),
                ),
            )
            self._conn.execute("DELETE FROM live WHERE config_hash = ?", (h,))

    def points(self) -> list[dict]:
        """Every point row as a dict (JSON columns decoded), ordered by config_hash."""
        rows = self._conn.execute("SELECT * FROM points ORDER BY config_hash").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for key in ("axes", "config", "metrics"):
                d[key] = json.loads(d[key]) if d[key] is not None else None
            out.append(d)
        return out

    def raw_rows(self) -> list[tuple]:
        """The ``points`` table exactly as stored, ordered by config_hash (for comparing runs)."""
        return self._conn.execute("SELECT * FROM points ORDER BY config_hash").fetchall()

    def runs(self) -> list[dict]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM runs ORDER BY finished_utc, config_hash")]

    # --- live progress
    def set_live(self, running: dict[str, str]) -> None:
        """Replace the running points: {config_hash: worker}."""
        now = utc_now()
        with self._conn:
            old = dict(self._conn.execute("SELECT config_hash, since_utc FROM live").fetchall())
            self._conn.execute("DELETE FROM live")
            self._conn.executemany(
                "INSERT INTO live (config_hash, worker, since_utc) VALUES (?, ?, ?)",
                [(h, w, old.get(h, now)) for h, w in running.items()],
            )
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES ('client_heartbeat_utc', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (now,),
            )

    def live(self) -> list[dict]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM live ORDER BY worker, config_hash")]

    # --- synthesis stage
    def record_synthesis(self, config_hash: str, result: dict) -> None:
        with self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO synthesis (config_hash, result) VALUES (?, ?)", (config_hash, canonical(result))
            )

    def synthesis(self) -> dict[str, dict]:
        return {h: json.loads(r) for h, r in self._conn.execute("SELECT config_hash, result FROM synthesis")}
