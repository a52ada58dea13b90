"""popcount-learn: temporally coded spiking networks, exact training and bit-exact emulation.

Model (Mostafa 2017): non-leaky integrate-and-fire neurons, threshold 1, synaptic current
``I(t) = sum_i w_i exp(-(t - t_i))``, one spike per neuron. With ``z = exp(t)`` a neuron fires at
``z_out = sum_{i in C} w_i z_i / (sum_{i in C} w_i - 1)`` over its causal set ``C``.
"""

__version__ = "0.1.0"

import os as _os

# Numba's OpenMP threading layer (libgomp) spins idle pool threads between parallel regions by
# default. A minibatch is many short regions, so on a shared 2-core machine the spinning thread
# took the CPU the working one needed: an exact epoch on 2 threads used 2.1x the CPU seconds of
# 1 thread and ran slower; with passive waiting, 1.17x and faster (BENCHMARKS.md, issue #19).
# It must be set before the pool starts; a value the user set is kept. No effect on results.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
