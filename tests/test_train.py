import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popcount_learn import exact
from popcount_learn.data import default_data_dir, load_mnist
from popcount_learn.errors import ConfigError
from popcount_learn.evaluate import evaluate_exact
from popcount_learn.train import TrainConfig, batch_loss_and_grads, shift_images, train_exact


@pytest.fixture(scope="module")
def small_mnist():
    images, labels = load_mnist(default_data_dir(), "train")
    return images[:1500], labels[:1500]


def test_training_is_reproducible_for_a_seed(small_mnist):
    images, labels = small_mnist
    cfg = TrainConfig(hidden=(40,), epochs=1, seed=7, sparsity=0.01)
    net1, _h1 = train_exact(images, labels, cfg)
    net2, _h2 = train_exact(images, labels, cfg)
    for a, b in zip(net1.weights, net2.weights, strict=True):
        assert np.array_equal(a, b)
    net3, _ = train_exact(images, labels, TrainConfig(hidden=(40,), epochs=1, seed=8, sparsity=0.01))
    assert not np.array_equal(net1.weights[0], net3.weights[0])


def test_sparsity_term_reduces_hidden_spikes_before_decision(small_mnist):
    images, labels = small_mnist
    dense, _ = train_exact(images, labels, TrainConfig(hidden=(60,), epochs=2, sparsity=0.0, seed=1))
    sparse, _ = train_exact(
        images, labels, TrainConfig(hidden=(60,), epochs=2, sparsity=0.05, sparsity_target=0.0, seed=1)
    )
    d = evaluate_exact(dense, images[:500], labels[:500]).summary()
    s = evaluate_exact(sparse, images[:500], labels[:500]).summary()
    assert s["hidden_spikes_before_decision_mean"] < 0.9 * d["hidden_spikes_before_decision_mean"]
    assert s["accuracy"] > 0.5 and d["accuracy"] > 0.5


def _loss_slope(loss_at, w, index):
    """d loss_at() / d w[index] by central differences; a smaller step if the first one crossed a kink."""
    w0 = w[index]

    def slope(eps):
        w[index] = w0 + eps
        lp = loss_at()
        w[index] = w0 - eps
        lm = loss_at()
        w[index] = w0
        return (lp - lm) / (2 * eps)

    coarse, fine = slope(1e-6), slope(1e-8)
    return coarse if abs(coarse - fine) <= 1e-4 * (1 + abs(coarse)) else fine


def _small_batch(small_mnist, hidden, cfg, output_scale=1.0):
    from popcount_learn.encoding import SpikeEncoding
    from popcount_learn.train import init_network

    images, labels = small_mnist
    net = init_network((784, *hidden, 10), cfg, SpikeEncoding(), 104.0)
    net.weights[-1] *= output_scale
    return net, net.encoding.input_z(images[:16]), labels[:16].astype(np.int64)


def _probe_indices(net, z, count, seed=0):
    """Random weight indices, skipping first-layer rows of pixels that are dark in the whole batch."""
    rng = np.random.default_rng(seed)
    while count:
        layer = int(rng.integers(0, len(net.weights)))
        i = int(rng.integers(0, net.weights[layer].shape[0]))
        j = int(rng.integers(0, net.weights[layer].shape[1]))
        if layer == 0 and i < z.shape[1] and not np.isfinite(z[:, i]).any():
            continue
        count -= 1
        yield layer, (i, j)


@pytest.mark.parametrize("hidden", [(12,), (12, 9)])
def test_loss_gradient_matches_finite_differences(small_mnist, hidden):
    cfg = TrainConfig(
        hidden=hidden, sparsity=0.02, sparsity_target=0.0, weight_sum_penalty=0.0, silent_penalty=0.0, grad_clip=0.0
    )
    net, z, y = _small_batch(small_mnist, hidden, cfg)
    _, grads, _ = batch_loss_and_grads(net, z, y, cfg)
    for layer, index in _probe_indices(net, z, 40):
        num = _loss_slope(lambda: batch_loss_and_grads(net, z, y, cfg)[0], net.weights[layer], index)
        assert num == pytest.approx(grads[layer][index], rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("hidden", [(12,), (12, 9)])
def test_silent_output_and_weight_sum_gradients_match_finite_differences(small_mnist, hidden):
    """The two penalties alone: (loss, grads) with them minus (loss, grads) without them.

    The forward pass is the same in both, so the difference is exactly the penalty terms.
    """
    # A wide init (not the default) so that, with the output weights scaled down, some correct
    # outputs are silent and some column sums are below 1.
    wide = {"init_mean": 2.0, "init_std_gain": 1.0, "first_layer_init_mean": 2.0, "first_layer_init_std_gain": 1.0}
    cfg = TrainConfig(hidden=hidden, sparsity=0.0, grad_clip=0.0, silent_penalty=0.7, weight_sum_penalty=0.3, **wide)
    off = TrainConfig(hidden=hidden, sparsity=0.0, grad_clip=0.0, silent_penalty=0.0, weight_sum_penalty=0.0, **wide)
    net, z, y = _small_batch(small_mnist, hidden, cfg, output_scale=0.3)
    zs, _ = exact.forward(net.weights, z)
    assert (~np.isfinite(zs[-1][np.arange(len(y)), y])).sum() >= 3  # some correct outputs are silent
    assert (net.weights[-1].sum(axis=0) < 1).any() and (net.weights[-1].sum(axis=0) > 1).any()

    def penalty():
        return batch_loss_and_grads(net, z, y, cfg)[0] - batch_loss_and_grads(net, z, y, off)[0]

    expected = 0.0
    for b, c in enumerate(y):
        if not np.isfinite(zs[-1][b, c]):
            arrived = net.weights[-1][-1, c] + net.weights[-1][:-1, c][np.isfinite(zs[-2][b])].sum()
            expected += 0.7 * max(0.0, 1.0 - arrived) / len(y)
    for w in net.weights:
        expected += 0.3 * np.maximum(0.0, 1.0 - w.sum(axis=0)).sum()
    assert penalty() == pytest.approx(expected, rel=1e-9)

    g_on, g_off = batch_loss_and_grads(net, z, y, cfg)[1], batch_loss_and_grads(net, z, y, off)[1]
    # The silent-output term only reaches the output layer: probe every output weight.
    out = len(net.weights) - 1
    probes = [(layer, index) for layer, index in _probe_indices(net, z, 30) if layer != out]
    probes += [(out, index) for index in np.ndindex(net.weights[out].shape)]
    for layer, index in probes:
        analytic = g_on[layer][index] - g_off[layer][index]
        assert _loss_slope(penalty, net.weights[layer], index) == pytest.approx(analytic, rel=1e-6, abs=1e-9)


def test_shift_images_moves_pixels():
    rng = np.random.default_rng(0)
    img = np.zeros((1, 784), np.uint8)
    img[0, 14 * 28 + 14] = 255
    out = shift_images(np.repeat(img, 50, 0), rng, 1)
    ys, xs = np.nonzero(out.reshape(50, 28, 28))[1:]
    assert set(np.abs(ys - 14)) <= {0, 1} and set(np.abs(xs - 14)) <= {0, 1}
    assert len(set(zip(ys, xs, strict=True))) > 1
    assert (out.reshape(50, -1).sum(axis=1) == 255).all()


@pytest.mark.parametrize(
    "option, needle",
    [
        ({"batch_size": 0}, "batch size"),
        ({"batch_size": 2.5}, "batch size"),
        ({"epochs": 1.5}, "epochs"),
        ({"lr": -1.0}, "learning rate"),
        ({"sparsity": -0.1}, "sparsity must be >= 0"),
        ({"sparsity_width": 0.0}, "sparsity width must be positive"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"hidden": 8}, "hidden sizes"),
        ({"hidden": (8.5,)}, "hidden sizes"),
        ({"hidden": (0,)}, "hidden sizes"),
        ({"temperature": float("inf")}, "temperature"),
        ({"init_mean": float("nan")}, "init mean"),
        ({"init_std_gain": -1.0}, "init std gain"),
        ({"first_layer_init_std_gain": float("inf")}, "first layer init std gain"),
        ({"first_layer_init_mean": float("nan")}, "first layer init mean"),
        ({"augment_shift_px": 0.5}, "augment shift"),
    ],
)
def test_bad_config_is_a_config_error(option, needle):
    with pytest.raises(ConfigError, match=needle):
        TrainConfig(**option)


def test_two_hidden_layers_train_with_the_default_loss(small_mnist):
    images, labels = small_mnist
    net, hist = train_exact(images, labels, TrainConfig(hidden=(60, 40), epochs=2, seed=2))
    assert net.topology == (784, 60, 40, 10)
    ev = evaluate_exact(net, images[:500], labels[:500]).summary()
    assert ev["accuracy"] > 0.3  # chance is 0.1; depth learns slower on 1500 images
    assert hist.epochs[-1]["loss"] < hist.epochs[0]["loss"]


def test_fused_adam_and_weight_average_equal_the_textbook_update():
    from popcount_learn.train import Adam

    rng = np.random.default_rng(5)
    params = [rng.normal(size=(7, 5)), rng.normal(size=(6, 3))]
    ref_p = [p.copy() for p in params]
    averages = [p.copy() for p in params]
    ref_avg = [p.copy() for p in params]
    ref_m = [np.zeros_like(p) for p in params]
    ref_v = [np.zeros_like(p) for p in params]
    opt = Adam(params, lr=0.01)
    for t in range(1, 6):
        grads = [rng.normal(size=p.shape) for p in params]
        opt.step(params, grads, averages, 0.9)
        for k, g in enumerate(grads):
            ref_m[k] = 0.9 * ref_m[k] + 0.1 * g
            ref_v[k] = 0.999 * ref_v[k] + 0.001 * g * g
            m_hat = ref_m[k] / (1 - 0.9**t)
            v_hat = ref_v[k] / (1 - 0.999**t)
            ref_p[k] = ref_p[k] - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
            ref_avg[k] = 0.9 * ref_avg[k] + 0.1 * ref_p[k]
    for k in range(2):
        np.testing.assert_allclose(params[k], ref_p[k], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(averages[k], ref_avg[k], rtol=1e-12, atol=1e-12)


def test_training_gives_identical_weights_on_one_and_two_threads(small_mnist):
    import numba

    images, labels = small_mnist
    cfg = TrainConfig(hidden=(30,), epochs=1, seed=3)
    before = numba.get_num_threads()
    nets = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            nets.append(train_exact(images, labels, cfg)[0])
    finally:
        numba.set_num_threads(before)
    for a, b in zip(nets[0].weights, nets[1].weights, strict=True):
        assert np.array_equal(a, b)


def test_shift_augmentation_handles_non_square_images_and_refuses_unknown_shapes():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 6 * 4)).astype(np.uint8)
    labels = rng.integers(0, 3, 40)
    cfg = TrainConfig(hidden=(8,), epochs=1, augment_shift_px=1)
    with pytest.raises(ConfigError, match="not square"):
        train_exact(images, labels, cfg)
    net, _ = train_exact(images, labels, cfg, image_shape=(6, 4))
    assert net.topology == (24, 8, 3)
    out = shift_images(images[:1].repeat(30, 0), rng, 1, (6, 4))
    assert out.shape == (30, 24)


@pytest.mark.parametrize(
    "n_images, labels, needle",
    [
        (0, [], "no training images"),
        (30, [0, 1] * 20, "30 images but 40 labels"),
        (40, [0, 1] * 10, "40 images but 20 labels"),
        (4, [0, -1, 1, 2], "labels must be integers >= 0"),
        (4, [0.0, 1.5, 1.0, 2.0], "labels must be integers >= 0"),
    ],
)
def test_training_data_mistakes_are_config_errors(n_images, labels, needle):
    images = np.random.default_rng(0).integers(0, 256, (n_images, 16)).astype(np.uint8)
    with pytest.raises(ConfigError, match=needle):
        train_exact(images, np.array(labels), TrainConfig(hidden=(4,), epochs=1))


def test_continued_training_keeps_the_encoding_it_trained_with():
    from popcount_learn.encoding import SpikeEncoding
    from popcount_learn.network import ExactNetwork

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (40, 16)).astype(np.uint8)
    labels = rng.integers(0, 3, 40)
    start = ExactNetwork([rng.normal(0.2, 0.3, (17, 6)), rng.normal(0.3, 0.3, (7, 3))], SpikeEncoding(threshold=128))
    wanted = SpikeEncoding(threshold=40)
    net, _ = train_exact(images, labels, TrainConfig(hidden=(6,), epochs=1), network=start, encoding=wanted)
    assert net.encoding == wanted


def test_output_layer_covers_classes_missing_from_a_short_training_set(small_mnist):
    images, labels = small_mnist
    few = labels[:40] < 5
    net, _ = train_exact(images[:40][few], labels[:40][few], TrainConfig(hidden=(10,), epochs=1), n_classes=10)
    assert net.topology[-1] == 10
    net, _ = train_exact(
        images[:40][few],
        labels[:40][few],
        TrainConfig(hidden=(10,), epochs=1),
        test_images=images[:20],
        test_labels=labels[:20],
    )
    assert net.topology[-1] == int(labels[:20].max()) + 1
    with pytest.raises(ConfigError, match="n_classes=3"):
        train_exact(images[:40], labels[:40], TrainConfig(hidden=(10,), epochs=1), n_classes=3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_first_layer_gradient_gives_the_written_out_weights_bit_for_bit(small_mnist, dtype):
    images, labels = small_mnist
    cfg = TrainConfig(
        hidden=(30,), epochs=2, seed=5, dtype=dtype, augment_shift_px=1, augment_from_epoch=2, weight_sum_penalty=0.5
    )
    fused, _ = train_exact(images[:600], labels[:600], cfg)
    plain, _ = train_exact(images[:600], labels[:600], cfg, fused=False)
    for a, b in zip(fused.weights, plain.weights, strict=True):
        assert a.dtype == np.dtype(dtype)
        assert a.tobytes() == b.tobytes()


def _binary_batch(rng, batch, n_in, density):
    return np.where(rng.random((batch, n_in)) < density, 1.0, np.inf)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 70),
    batch=st.integers(1, 9),
    next_batch=st.integers(1, 9),
    density=st.floats(0.0, 1.0),
    dtype=st.sampled_from(["float64", "float32"]),
)
def test_adam_step_runs_the_next_batch_through_the_updated_first_layer_bit_for_bit(
    seed, n_in, n_out, batch, next_batch, density, dtype
):
    """The next batch's first layer that rides along in the Adam pass equals exact.layer_forward
    on the updated weights (the slow way: a separate pass), and the update itself is unchanged."""
    import numba

    from popcount_learn.train import Adam, _FirstLayerGradient

    rng = np.random.default_rng(seed)
    w = rng.normal(1.5 / (n_in * density + 1), 0.5, (n_in + 1, n_out)).astype(dtype)
    z = _binary_batch(rng, batch, n_in, density).astype(dtype)
    z_next = _binary_batch(rng, next_batch, n_in, density).astype(dtype)
    z_out, denom = exact.layer_forward(z, w)
    coef = exact.backward_coefficients(z_out, denom, rng.normal(size=z_out.shape), w.dtype)
    t = w.dtype.type
    grad = _FirstLayerGradient(*exact.binary_input_rows(z), z_out, coef, scale=t(1 / batch), penalty=t(0.0))
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            runs = []
            for ahead in (z_next, None):
                p, avg = w.copy(), w.copy()
                opt = Adam([p], lr=0.01)
                opt.step([p], [grad], [avg], 0.9, next_input=ahead)
                runs.append((p, avg, opt.next_first_layer))
            (p, avg, first), (p_plain, avg_plain, none) = runs
            assert none is None
            assert p.tobytes() == p_plain.tobytes() and avg.tobytes() == avg_plain.tobytes()
            ref_z, ref_denom = exact.layer_forward(z_next, p)
            assert first.z_out.tobytes() == ref_z.tobytes()
            assert first.denom.tobytes() == ref_denom.tobytes()
            ptr, rows = exact.binary_input_rows(z_next)
            assert np.array_equal(first.ptr, ptr) and np.array_equal(first.rows, rows)
    finally:
        numba.set_num_threads(before)


def test_adam_step_leaves_a_next_batch_that_is_not_binary_to_the_forward_pass():
    from popcount_learn.train import Adam, _FirstLayerGradient

    rng = np.random.default_rng(2)
    w = rng.normal(0.2, 0.3, (9, 20))
    z = _binary_batch(rng, 4, 8, 0.5)
    z_out, denom = exact.layer_forward(z, w)
    coef = exact.backward_coefficients(z_out, denom, rng.normal(size=z_out.shape), w.dtype)
    grad = _FirstLayerGradient(*exact.binary_input_rows(z), z_out, coef)
    graded = _binary_batch(rng, 3, 8, 0.5)
    graded[0, 0] = 1.5
    opt = Adam([w], lr=0.01)
    opt.step([w], [grad], None, next_input=graded)
    assert opt.next_first_layer is None


def test_a_one_ulp_change_in_the_run_ahead_first_layer_is_seen():
    """The comparison above catches the smallest error: one ulp in one spike time."""
    rng = np.random.default_rng(3)
    w = rng.normal(0.4, 0.3, (9, 20))
    z_out, _ = exact.layer_forward(_binary_batch(rng, 4, 8, 0.5), w)
    fired = np.argwhere(np.isfinite(z_out))[0]
    bent = z_out.copy()
    bent[tuple(fired)] = np.nextafter(bent[tuple(fired)], np.inf)
    assert bent.tobytes() != z_out.tobytes()


def test_training_runs_each_batch_first_layer_ahead_in_the_adam_pass(small_mnist, monkeypatch):
    """The default (fused) loop takes the run-ahead first layer for every batch but each epoch's
    first (and none under QAT), and gives the weights of the loop without it."""
    from popcount_learn import train

    images, labels = small_mnist
    taken = []
    real = train._loss_and_grads

    def spy(*args, **kwargs):
        taken.append(args[6] is not None if len(args) > 6 else kwargs.get("first_layer") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "_loss_and_grads", spy)
    cfg = TrainConfig(hidden=(30,), epochs=2, seed=5, batch_size=64)
    fused, _ = train_exact(images[:300], labels[:300], cfg)
    assert taken == [False, True, True, True, True] * 2
    taken.clear()
    train_exact(images[:300], labels[:300], TrainConfig(hidden=(30,), epochs=1, seed=5, qat_bits=8))
    assert taken and not any(taken)
    monkeypatch.setattr(train, "_loss_and_grads", real)
    plain, _ = train_exact(images[:300], labels[:300], cfg, fused=False)
    for a, b in zip(fused.weights, plain.weights, strict=True):
        assert a.tobytes() == b.tobytes()


def test_text_options_take_each_fields_type_and_refuse_the_rest():
    typed = TrainConfig.typed_options(
        {"hidden": "400,300", "epochs": "5", "lr": "3e-4", "dtype": "float32", "qat_scale": "max"}
    )
    assert typed == {"hidden": (400, 300), "epochs": 5, "lr": 3e-4, "dtype": "float32", "qat_scale": "max"}
    assert TrainConfig(**typed).hidden == (400, 300)
    assert TrainConfig.typed_options({"epochs": "1e1"}) == {"epochs": 10}
    for options, words in [
        ({"epoch": "5"}, "unknown training field 'epoch'"),
        ({"epochs": "2.5"}, "epochs takes int"),
        ({"lr": "fast"}, "lr takes float"),
        ({"hidden": "400;300"}, "hidden takes comma-separated integers"),
    ]:
        with pytest.raises(ConfigError, match=words):
            TrainConfig.typed_options(options)


def test_the_tools_set_option_is_one_line_for_a_field_given_twice(monkeypatch):
    # The tools set BLAS thread variables when imported; monkeypatch puts them back afterwards.
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    import bench_recipe
    import quick_run

    for parse in (bench_recipe.parse_fields, quick_run._parse_set):
        assert parse(["epochs=3", "hidden=50"]) == {"epochs": 3, "hidden": (50,)}
        for items, words in [
            (["epochs=3", "epochs=4"], "given twice"),
            (["epochs"], "FIELD=VALUE"),
            (["x=1"], "unknown"),
        ]:
            with pytest.raises(SystemExit, match=words):
                parse(items)
