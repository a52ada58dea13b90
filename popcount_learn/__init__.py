"""popcount-learn: temporally coded spiking networks, exact training and bit-exact emulation.

Model (Mostafa 2017): non-leaky integrate-and-fire neurons, threshold 1, synaptic current
``I(t) = sum_i w_i exp(-(t - t_i))``, one spike per neuron. With ``z = exp(t)`` a neuron fires at
``z_out = sum_{i in C} w_i z_i / (sum_{i in C} w_i - 1)`` over its causal set ``C``.
"""

__version__ = "0.1.0"
