"""Design-space sweeps: many trainings of one base configuration, run on Dask, kept in SQLite.

``spec`` reads and checks the sweep file (TOML), ``point`` runs one point (train, quantise,
emulate, price with ``popcount_learn.cost``), ``runner`` runs the points on a
``dask.distributed`` cluster, ``store`` keeps the results (``DIR/sweep.sqlite`` and the weight
images), ``report`` makes the table, the CSV and the Pareto plots. ``docs/sweeps.md`` is the guide.
"""

from .spec import PointConfig, SweepConfigError, SweepSpec, load_sweep, parse_sweep
from .store import SweepStore

__all__ = ["PointConfig", "SweepConfigError", "SweepSpec", "SweepStore", "load_sweep", "parse_sweep"]
