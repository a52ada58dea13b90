import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_exact import layer_reference, membrane, neuron_reference

from popcount_learn import exact
from popcount_learn.encoding import InputEncoding, SpikeEncoding
from popcount_learn.evaluate import evaluate_exact
from popcount_learn.network import ExactNetwork

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def layers(draw, max_in=9, max_out=6, max_batch=4):
    n_in = draw(st.integers(1, max_in))
    n_out = draw(st.integers(1, max_out))
    batch = draw(st.integers(1, max_batch))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Few distinct times so that ties between inputs happen often.
    grid = draw(st.booleans())
    t = rng.integers(0, 4, (batch, n_in)) * 0.5 if grid else rng.uniform(0, 2, (batch, n_in))
    z_in = np.exp(t)
    z_in[rng.random((batch, n_in)) < draw(st.floats(0, 0.5))] = np.inf
    w = rng.normal(draw(st.floats(0.0, 0.6)), draw(st.floats(0.1, 1.5)), (n_in + 1, n_out))
    return z_in, w


@SETTINGS
@given(layers())
def test_numba_forward_equals_reference(layer):
    z_in, w = layer
    z_out, denom = exact.layer_forward(z_in, w)
    ref = np.array(layer_reference(z_in, w))
    assert np.array_equal(np.isinf(z_out), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(z_out[fin], ref[fin], rtol=1e-12)
    assert np.all(denom[fin] > 0)


@SETTINGS
@given(layers())
def test_causal_inputs_precede_output_and_next_input_does_not(layer):
    z_in, w = layer
    for b in range(len(z_in)):
        for j in range(w.shape[1]):
            z_out, causal = neuron_reference(list(z_in[b]), list(w[:, j]))
            if z_out == math.inf:
                # Silent: the sum over every input that ever arrives is <= 1.
                arrived = w[-1, j] + w[:-1, j][np.isfinite(z_in[b])].sum()
                assert arrived <= 1.0 + 1e-12
                continue
            zs = np.append(z_in[b], 1.0)
            causal_z = zs[causal]
            assert causal_z.max() <= z_out
            later = [zs[i] for i in range(len(zs)) if i not in causal and np.isfinite(zs[i])]
            if later:
                assert min(later) >= z_out
            a = w[causal, j].sum()
            assert a > 1
            assert math.isclose(z_out, float((w[causal, j] * causal_z).sum() / (a - 1)), rel_tol=1e-12)


@SETTINGS
@given(layers(), st.integers(0, 2**32 - 1))
def test_output_is_invariant_to_input_order(layer, seed):
    z_in, w = layer
    perm = np.random.default_rng(seed).permutation(z_in.shape[1])
    z1, _ = exact.layer_forward(z_in, w)
    z2, _ = exact.layer_forward(z_in[:, perm], np.vstack([w[:-1][perm], w[-1:]]))
    np.testing.assert_allclose(z1, z2, rtol=1e-12)


@SETTINGS
@given(layers(max_batch=2))
def test_spike_time_is_first_threshold_crossing_of_membrane(layer):
    """From first principles: V(t_out) = 1 and V < 1 on a grid of earlier times."""
    z_in, w = layer
    z_out, _ = exact.layer_forward(z_in, w)
    t_in = np.log(z_in)
    for b in range(len(z_in)):
        for j in range(w.shape[1]):
            if not np.isfinite(z_out[b, j]):
                late = max([0.0] + [t for t in t_in[b] if np.isfinite(t)]) + 40.0
                assert membrane(late, t_in[b], w[:, j]) <= 1.0 + 1e-9
                continue
            t_out = math.log(z_out[b, j])
            assert membrane(t_out, t_in[b], w[:, j]) == pytest.approx(1.0, abs=1e-9)
            for t in np.linspace(0, t_out, 50, endpoint=False)[1:]:
                assert membrane(t, t_in[b], w[:, j]) < 1.0 + 1e-9


def _linear_loss(w, z_in, g):
    z_out, _ = exact.layer_forward(z_in, w)
    return float(np.where(np.isfinite(z_out), g * np.where(np.isfinite(z_out), z_out, 0.0), 0.0).sum())


def _assert_derivative(loss_at, analytic):
    """Central differences of ``loss_at(delta)`` against ``analytic``, skipping kinks.

    A mismatch is rechecked with a 100x smaller step: if the two estimates disagree, the
    perturbation crossed a kink (a causal set or a silence changed) and the point is skipped.
    """
    eps = 1e-7
    num = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    if not np.isfinite(num):
        return
    if abs(num - analytic) > 1e-4 * (1 + abs(num)):
        e2 = 1e-9
        num2 = (loss_at(e2) - loss_at(-e2)) / (2 * e2)
        if abs(num2 - num) > 1e-3 * (1 + abs(num)):
            return
    assert num == pytest.approx(analytic, rel=1e-4, abs=1e-4)


@settings(max_examples=30, deadline=None)
@given(layers(max_in=6, max_out=4, max_batch=3), st.integers(0, 1000))
def test_gradients_match_finite_differences(layer, seed):
    z_in, w = layer
    # Continuous times only: finite differences are meaningless across a tie.
    rng = np.random.default_rng(seed)
    z_in = np.where(np.isfinite(z_in), np.exp(rng.uniform(0, 2, z_in.shape)), np.inf)
    g = rng.normal(size=(len(z_in), w.shape[1]))
    z_out, denom = exact.layer_forward(z_in, w)
    gw, gz = exact.layer_backward(z_in, w, z_out, denom, g, True)

    def shifted(array, index, delta):
        out = array.copy()
        out[index] += delta
        return out

    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            _assert_derivative(lambda d, at=(i, j): _linear_loss(shifted(w, at, d), z_in, g), gw[i, j])
    for b in range(len(z_in)):
        for i in range(z_in.shape[1]):
            if not np.isfinite(z_in[b, i]):
                assert gz[b, i] == 0.0
                continue
            _assert_derivative(lambda d, at=(b, i): _linear_loss(w, shifted(z_in, at, d), g), gz[b, i])


def test_backward_ignores_silent_neurons_and_has_no_nan():
    z_in = np.array([[1.0, np.inf, math.e]])
    w = np.array([[0.2, 2.0], [5.0, 5.0], [0.1, 0.0], [0.1, 0.0]])  # neuron 0 silent
    z_out, denom = exact.layer_forward(z_in, w)
    assert np.isinf(z_out[0, 0]) and np.isfinite(z_out[0, 1])
    gw, gz = exact.layer_backward(z_in, w, z_out, denom, np.ones_like(z_out), True)
    assert np.all(np.isfinite(gw)) and np.all(np.isfinite(gz))
    assert np.all(gw[:, 0] == 0.0)


def test_late_and_missing_spikes_do_not_overflow():
    z_in = np.full((2, 5), np.inf)
    z_in[0, 0] = math.exp(700.0)  # close to the float64 limit
    w = np.full((6, 3), 0.1)
    w[0] = 0.95
    z_out, _denom = exact.layer_forward(z_in, w)
    assert not np.any(np.isnan(z_out))
    assert np.all(np.isinf(z_out[1]))  # bias alone (0.1) cannot fire


def test_first_spike_decision_ties_and_silence():
    z = np.array([[2.0, 1.5, 1.5], [np.inf, np.inf, np.inf], [3.0, np.inf, 2.0]])
    pred, tie = exact.first_spike_decision(z)
    assert pred.tolist() == [1, -1, 2]
    assert tie.tolist() == [True, False, False]


def test_evaluate_counts_hidden_spikes_before_decision():
    rng = np.random.default_rng(3)
    net = ExactNetwork([rng.normal(0.05, 0.1, (17, 12)), rng.normal(0.2, 0.3, (13, 3))], SpikeEncoding())
    images = rng.integers(0, 256, (20, 16)).astype(np.uint8)
    labels = rng.integers(0, 3, 20)
    ev = evaluate_exact(net, images, labels)
    z_in = net.encoding.input_z(images)
    zs, _ = exact.forward(net.weights, z_in)
    for b in range(20):
        zd = zs[2][b].min()
        if np.isfinite(zd):
            assert ev.hidden_spikes_before_decision[b] == int((zs[1][b] < zd).sum())
        else:
            assert ev.predicted[b] == -1
    s = ev.summary()
    assert s["n"] == 20
    assert s["no_decision_count"] == int((ev.predicted == -1).sum())


def test_shape_mismatches_are_config_errors_not_out_of_bounds_reads():
    from popcount_learn.errors import ConfigError

    w = np.ones((5, 3))
    with pytest.raises(ConfigError, match="does not fit"):
        exact.layer_forward(np.ones((2, 7)), w)
    with pytest.raises(ConfigError, match="does not fit"):
        exact.layer_backward(np.ones((2, 7)), w, np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ConfigError, match="float32 or float64"):
        exact.layer_forward(np.ones((2, 4)), w.astype(np.float16))
    net = ExactNetwork([np.ones((17, 4)), np.ones((5, 2))], SpikeEncoding())
    with pytest.raises(ConfigError, match="takes 16 inputs but the images have 25 pixels"):
        evaluate_exact(net, np.zeros((3, 25), np.uint8), np.zeros(3, np.int64))
    with pytest.raises(ConfigError, match="3 images but 2 labels"):
        evaluate_exact(net, np.zeros((3, 16), np.uint8), np.zeros(2, np.int64))
    # A label of -1 would score a sample without a decision (predicted -1) as correct.
    with pytest.raises(ConfigError, match="labels must be integers >= 0"):
        evaluate_exact(net, np.zeros((3, 16), np.uint8), np.array([0, -1, 1]))
    with pytest.raises(ConfigError, match="batch size"):
        evaluate_exact(net, np.zeros((3, 16), np.uint8), np.zeros(3, np.int64), batch_size=0)


def test_evaluate_an_empty_set():
    net = ExactNetwork([np.ones((17, 4)), np.ones((5, 2))], SpikeEncoding())
    s = evaluate_exact(net, np.zeros((0, 16), np.uint8), np.zeros(0, np.int64)).summary()
    assert s["n"] == 0 and s["no_decision_count"] == 0 and s["accuracy"] == 0.0


@pytest.mark.parametrize(
    "weights, needle",
    [
        ([np.ones((1, 3))], "at least one input row"),
        ([np.ones((4, 0))], "at least one input row"),
        ([[[1.0, 2.0]]], "float numpy array"),
        ([np.ones((3, 2), dtype=np.int64)], "float numpy array"),
        ([np.ones((3, 2), dtype=np.float16)], "float32 or float64"),
        ([np.ones((3, 2), dtype=np.longdouble)], "float32 or float64"),
        ([np.ones((3, 2)), np.ones((4, 2))], "previous layer has 2 neurons"),
    ],
)
def test_exact_network_refuses_malformed_layers(weights, needle):
    from popcount_learn.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        ExactNetwork(weights, SpikeEncoding())


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"threshold": True}, "threshold must be an integer"),
        ({"threshold": 255}, "threshold must be an integer"),
        ({"dark_time": "3"}, "dark_time must be a positive finite time"),
        ({"dark_time": 0.0}, "dark_time must be a positive finite time"),
    ],
)
def test_spike_encoding_refuses_bad_fields(kwargs, needle):
    from popcount_learn.errors import ConfigError

    with pytest.raises(ConfigError, match=needle):
        SpikeEncoding(**kwargs)


@pytest.mark.parametrize("dark_time, dtype", [(800.0, np.float64), (100.0, np.float32)])
def test_dark_time_beyond_the_float_range_is_refused_not_turned_into_no_spike(dark_time, dtype):
    from popcount_learn.errors import ConfigError

    images = np.array([[0, 255]], np.uint8)
    with pytest.raises(ConfigError, match="too late"):
        SpikeEncoding(dark_time=dark_time).input_z(images, dtype=dtype)
    z = SpikeEncoding(dark_time=80.0).input_z(images, dtype=np.float32)
    assert z[0, 1] == 1.0 and z[0, 0] == np.float32(math.exp(80.0))


@st.composite
def binary_layers(draw):
    """Inputs at z = 1 or silent (the default encoding of the first layer), random weights."""
    n_in = draw(st.integers(1, 12))
    n_out = draw(st.integers(1, 40))
    batch = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z_in = np.where(rng.random((batch, n_in)) < draw(st.floats(0, 1)), 1.0, np.inf)
    w = rng.normal(draw(st.floats(0.0, 0.6)), draw(st.floats(0.1, 1.5)), (n_in + 1, n_out))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return z_in.astype(dtype), w.astype(dtype)


@SETTINGS
@given(binary_layers(), st.integers(0, 2**32 - 1))
def test_binary_input_path_is_taken_and_bit_identical_to_the_general_kernels(layer, seed):
    z_in, w = layer
    assert exact.binary_input_rows(z_in) is not None  # the closed form is taken
    z_out, denom = exact.layer_forward(z_in, w)
    z_gen, d_gen = exact._layer_forward(z_in, w)
    assert np.array_equal(z_out, z_gen) and np.array_equal(denom, d_gen)
    assert z_out.tobytes() == z_gen.tobytes()
    g = np.random.default_rng(seed).normal(size=z_out.shape)
    grad_w, _ = exact.layer_backward(z_in, w, z_out, denom, g)
    fired = np.isfinite(z_out) & (denom > 0)
    coef = np.where(fired, g / np.where(fired, denom, 1.0), 0.0).astype(w.dtype)
    general = exact._grad_weights(z_in, z_out, coef, max(1, min(2, w.shape[1])))
    assert grad_w.tobytes() == general.tobytes()
    # ... and one differing gradient bit would be seen.
    if grad_w.size and np.any(grad_w != 0):
        k = np.flatnonzero(grad_w)[0]
        bumped = grad_w.copy().reshape(-1)
        bumped[k] = np.nextafter(bumped[k], np.inf)
        assert bumped.tobytes() != general.tobytes()


def test_a_non_binary_input_takes_the_general_path():
    z_in = np.array([[1.0, np.inf, 1.5]])
    assert exact.binary_input_rows(z_in) is None
    assert exact.binary_input_rows(np.array([[1.0, np.nan]])) is None
    assert exact.binary_input_rows(np.array([[1.0, np.inf]])) is not None


def _general_reference(z_in, w, g):
    """The general kernels' arithmetic written out in plain loops, operation for operation:
    inputs (bias last, at z = 1) stably sorted by z and added group by group, and the gradients
    summed over samples in increasing order. Every mixed float32/float64 operation is done in
    float64 and rounded on the store (Numba's typing), hence the explicit ``float``.
    Returns z_out, denom, grad_w, grad_z_in."""
    batch, n_in = z_in.shape
    n_out = w.shape[1]
    z_out = np.full((batch, n_out), np.inf, w.dtype)
    denom = np.zeros((batch, n_out), w.dtype)
    for b in range(batch):
        idx = [i for i in range(n_in) if z_in[b, i] < np.inf] + [n_in]
        keys = np.array([float(z_in[b, i]) if i < n_in else 1.0 for i in idx], z_in.dtype)
        order = [idx[k] for k in np.argsort(keys, kind="stable")]
        times = [float(z_in[b, i]) if i < n_in else 1.0 for i in order]
        a_sum = np.zeros(n_out, w.dtype)
        b_sum = np.zeros(n_out, w.dtype)
        k = 0
        while k < len(order):
            z_k = times[k]
            while k < len(order) and times[k] == z_k:
                for j in range(n_out):
                    a_sum[j] += w[order[k], j]
                    b_sum[j] = float(b_sum[j]) + float(w[order[k], j]) * z_k
                k += 1
            z_next = times[k] if k < len(order) else np.inf
            for j in range(n_out):
                a1 = float(a_sum[j]) - 1.0
                if z_out[b, j] == np.inf and a1 > 0.0 and float(b_sum[j]) / a1 <= z_next:
                    zc = float(b_sum[j]) / a1
                    z_out[b, j] = zc if zc > z_k else z_k
                    denom[b, j] = a1
    fired = np.isfinite(z_out) & (denom > 0)
    coef = np.where(fired, g / np.where(fired, denom, 1.0), 0.0).astype(w.dtype)
    grad_w = np.zeros(w.shape, w.dtype)
    grad_z_in = np.zeros(z_in.shape, w.dtype)
    for b in range(batch):
        for i in range(n_in + 1):
            z_i = 1.0 if i == n_in else float(z_in[b, i])
            if z_i == np.inf:
                continue
            acc = 0.0
            for j in range(n_out):
                if coef[b, j] != 0.0 and z_i < z_out[b, j]:
                    grad_w[i, j] = float(grad_w[i, j]) + float(coef[b, j]) * (z_i - float(z_out[b, j]))
                    if i < n_in:
                        acc += float(coef[b, j] * w[i, j])  # the product in the weights' dtype
            if i < n_in:
                grad_z_in[b, i] = acc
    return z_out, denom, grad_w, grad_z_in


@st.composite
def sparse_hidden_layers(draw):
    """A hidden layer's output as the next layer sees it: real-valued times, mostly silent, few or
    many spikes (either side of the insertion-sort limit), ties; float64 or float32."""
    n_in = draw(st.sampled_from([3, 20, 150]))
    n_out = draw(st.integers(1, 12))
    batch = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = rng.integers(0, 6, (batch, n_in)) * 0.25 if draw(st.booleans()) else rng.uniform(0, 3, (batch, n_in))
    z_in = np.exp(t)
    z_in[rng.random((batch, n_in)) < draw(st.floats(0, 0.95))] = np.inf
    w = rng.normal(draw(st.floats(0.0, 0.3)), draw(st.floats(0.05, 1.0)), (n_in + 1, n_out))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return z_in.astype(dtype), w.astype(dtype)


@SETTINGS
@given(sparse_hidden_layers(), st.integers(0, 2**32 - 1))
def test_serial_general_kernels_are_bit_identical_to_the_parallel_ones_and_the_reference(layer, seed):
    z_in, w = layer
    assert exact._serial(z_in.shape[0], w)  # a layer this small runs on the calling thread
    g = np.random.default_rng(seed).normal(size=(z_in.shape[0], w.shape[1]))
    z_ref, d_ref, gw_ref, gz_ref = _general_reference(z_in, w, g)
    z_out, denom = exact.layer_forward(z_in, w)
    grad_w, grad_z_in = exact.layer_backward(z_in, w, z_out, denom, g)
    coef = exact.backward_coefficients(z_out, denom, g, w.dtype)
    z_par, d_par = exact._layer_forward(z_in, w)
    gw_par = exact._grad_weights(z_in, z_out, coef, max(1, min(2, w.shape[1])))
    gz_par = exact._grad_input_times(z_in, w, z_out, coef)
    for fast, par, ref in (
        (z_out, z_par, z_ref),
        (denom, d_par, d_ref),
        (grad_w, gw_par, gw_ref),
        (grad_z_in, gz_par, gz_ref),
    ):
        assert fast.dtype == ref.dtype
        assert fast.tobytes() == par.tobytes() == ref.tobytes()
    # One ulp anywhere would be seen.
    nz = np.flatnonzero(grad_w)
    if nz.size:
        bumped = grad_w.copy().reshape(-1)
        bumped[nz[0]] = np.nextafter(bumped[nz[0]], np.inf)
        assert bumped.tobytes() != gw_ref.tobytes()


@st.composite
def graded_first_layers(draw):
    """A first layer under the latency code: every input spikes at one of at most 256 times (few
    distinct, many ties, the dark code's group the largest), more inputs than the insertion-sort
    limit or fewer, many neurons firing after the last input; float64 or float32."""
    n_in = draw(st.sampled_from([5, 40, 130]))
    n_out = draw(st.integers(1, 24))
    batch = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    codes = np.where(rng.random((batch, n_in)) < draw(st.floats(0.2, 0.9)), 0, rng.integers(0, 256, (batch, n_in)))
    silence = draw(st.sampled_from([0, 0, 1, 128]))
    enc = InputEncoding.latency(t_max=draw(st.sampled_from([1.0, 2.0, 4.0])), silence=silence)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    z_in = enc.input_z(codes.astype(np.uint8), dtype=dtype)
    w = rng.normal(draw(st.floats(0.0, 3.0)) / n_in, draw(st.floats(0.1, 1.5)) / math.sqrt(n_in), (n_in + 1, n_out))
    return z_in, w.astype(dtype)


@SETTINGS
@given(graded_first_layers(), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_graded_first_layer_gradient_by_tie_group_is_bit_identical_to_the_reference(layer, seed, density):
    # The weight gradient adds one term per (tie group, neuron) to each of the group's rows; the
    # reference tests every (input, neuron) pair. Serial and parallel kernels, both dtypes.
    z_in, w = layer
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(z_in.shape[0], w.shape[1])) * (rng.random((z_in.shape[0], w.shape[1])) < density)
    z_ref, d_ref, gw_ref, _ = _general_reference(z_in, w, g)
    z_out, denom = exact.layer_forward(z_in, w)
    assert z_out.tobytes() == z_ref.tobytes() and denom.tobytes() == d_ref.tobytes()
    grad_w, _ = exact.layer_backward(z_in, w, z_out, denom, g, need_grad_z_in=False)
    coef = exact.backward_coefficients(z_out, denom, g, w.dtype)
    gw_par = exact._grad_weights(z_in, z_out, coef, max(1, min(2, w.shape[1])))
    assert grad_w.dtype == gw_ref.dtype
    assert grad_w.tobytes() == gw_ref.tobytes() == gw_par.tobytes()
    nz = np.flatnonzero(grad_w)
    if nz.size:
        bumped = grad_w.copy().reshape(-1)
        bumped[nz[-1]] = np.nextafter(bumped[nz[-1]], np.inf)
        assert bumped.tobytes() != gw_ref.tobytes()


def test_the_output_layer_of_the_default_recipe_runs_serially_and_a_wide_layer_in_parallel():
    assert exact._serial(32, np.zeros((801, 10))) and exact._serial(128, np.zeros((801, 10)))
    assert not exact._serial(32, np.zeros((801, 800))) or exact.numba.get_num_threads() == 1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_backward_from_the_forward_pass_sort_gives_the_numbers_of_sorting_again(dtype):
    """A small general layer sorts its inputs once: ``layer_forward_sorted`` hands its sort to
    ``layer_backward``, whose gradients are those of sorting afresh (ties included)."""
    rng = np.random.default_rng(9)
    z_in = np.where(rng.random((6, 30)) < 0.7, 1.0 + rng.integers(0, 5, (6, 30)) / 4, np.inf).astype(dtype)
    w = rng.normal(0.15, 0.2, (31, 7)).astype(dtype)
    z_out, denom, kept = exact.layer_forward_sorted(z_in, w)
    assert kept is not None  # sorted on this thread: the path under test is taken
    plain_z, plain_denom = exact.layer_forward(z_in, w)
    assert z_out.tobytes() == plain_z.tobytes() and denom.tobytes() == plain_denom.tobytes()
    g = rng.normal(size=z_out.shape)
    reused = exact.layer_backward(z_in, w, z_out, denom, g, True, kept)
    fresh = exact.layer_backward(z_in, w, z_out, denom, g, True)
    for a, b in zip(reused, fresh, strict=True):
        assert a.tobytes() == b.tobytes()
