"""The commands behind the CLI, as plain functions that take arguments and return dicts.

Usable from Python and notebooks; the CLI only parses arguments and prints what these return.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path

from . import __version__
from .data import default_data_dir, file_sha256, load_mnist
from .datapath import DatapathConfig
from .errors import ConfigError, ModelFileError
from .progress import as_progress
from .weight_image import provenance_record


def _load_split(data_dir, split, limit=None):
    data = load_mnist(data_dir if data_dir is not None else default_data_dir(), split)
    images, labels = data.images, data.labels
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be a positive number of images, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return images, labels, data


def _as_network(model):
    """An ExactNetwork from a checkpoint's network or a weight image (dequantised)."""
    from .network import ExactNetwork
    from .weight_image import WeightImage

    if isinstance(model, ExactNetwork):
        return model
    if isinstance(model, WeightImage):
        from .quantize import dequantize

        return dequantize(model)
    raise ModelFileError(f"unsupported model object {type(model).__name__}")


def _writable_out_path(out) -> Path:
    """``out`` as a Path, refused (ConfigError) if it is a directory or its directory is unusable."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as {out / 'model.h5'}")
    if not out.parent.exists():
        raise ConfigError(f"--out {out}: directory {out.parent} does not exist")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: {out.parent} is not a directory")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: directory {out.parent} is not writable")
    return out


def train(
    *,
    config,
    data_dir=None,
    limit=None,
    out=None,
    init=None,
    progress=None,
    evaluate_every_epoch=True,
    on_epoch=None,
) -> dict:
    """Train the exact network on MNIST-style data; save it (atomically) to ``out`` if given.

    Returns a dict with the test summary, the per-epoch history and the output path.
    """
    from . import h5io
    from .evaluate import evaluate_exact
    from .train import train_exact

    if out is not None:
        out = _writable_out_path(out)  # before the data is loaded: a bad path must not cost a run
    train_images, train_labels, train_data = _load_split(data_dir, "train", limit)
    test_images, test_labels, _ = _load_split(data_dir, "test")
    network = _as_network(h5io.load_model(init)) if init is not None else None
    if network is not None and tuple(config.hidden) != tuple(network.topology[1:-1]):
        raise ConfigError(
            f"--init {init} has hidden layers {list(network.topology[1:-1])}, but --hidden "
            f"{list(config.hidden)} was asked for; drop --hidden or make it match"
        )
    network, history = train_exact(
        train_images,
        train_labels,
        config,
        network=network,
        test_images=test_images if evaluate_every_epoch else None,
        test_labels=test_labels if evaluate_every_epoch else None,
        progress=as_progress(progress),
        on_epoch=on_epoch,
        image_shape=train_data.image_shape,
        # A short --limit may miss classes: size the output layer for the test set too.
        n_classes=max(int(train_labels.max()), int(test_labels.max())) + 1,
    )
    if history.epochs and "test" in history.epochs[-1]:
        test = history.epochs[-1]["test"]  # already measured on exactly these (final) weights
    else:
        test = evaluate_exact(network, test_images, test_labels).summary()
    metadata = {
        "kind": "exact",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(Path(train_data.files[0]).parent),
        "dataset_sha256": {Path(f).name: file_sha256(f) for f in train_data.files},
        "train_images": int(len(train_labels)),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
        "encoding": dataclasses.asdict(network.encoding),
        "init": str(init) if init is not None else None,
        "history": history.epochs,
        "test": test,
    }
    if out is not None:
        h5io.save_network(out, network, metadata)
    return {"test": test, "history": history.epochs, "out": str(out) if out is not None else None}


def train_onchip(
    *,
    config,
    learning_options=None,
    bits=None,
    spec_options=None,
    data_dir=None,
    limit=None,
    out=None,
    init=None,
    progress=None,
    evaluate_every_epoch=True,
    on_epoch=None,
) -> dict:
    """Train with the sign-only popcount rule on the integer datapath; save the weight image.

    Starts from ``init`` (a float model, quantised to ``bits`` / ``spec_options``, or a weight
    image, used as it is) or from a seeded random integer network. ``learning_options``
    ({field: text}) override ``LearningConfig`` fields (default seed: ``config.seed``; a weight
    image that carries a learning spec starts from it). Returns the test summary (the keys of
    ``evaluate --emulate``), the history and the output path.
    """
    from . import h5io
    from .emulator import emulate as run_emulator
    from .emulator import summarize
    from .encoding import SpikeEncoding
    from .learning import LearningConfig
    from .network import ExactNetwork
    from .onchip import random_initial_image, train_onchip as run_training
    from .quantize import quantize
    from .train import expected_active_inputs
    from .weight_image import WeightImage

    if out is not None:
        out = _writable_out_path(out)
    train_images, train_labels, train_data = _load_split(data_dir, "train", limit)
    test_images, test_labels, _ = _load_split(data_dir, "test")
    n_classes = max(int(train_labels.max()), int(test_labels.max())) + 1
    start = h5io.load_model(init) if init is not None else None
    if isinstance(start, WeightImage):
        if bits is not None and bits != start.spec.weight_bits:
            raise ConfigError(f"--init {init} is a {start.spec.weight_bits}-bit weight image; --bits {bits} cannot change it")
        if spec_options:
            raise ConfigError(f"--init {init} is a weight image: its datapath is fixed; --spec applies to float models")
        image = start
    else:
        spec = DatapathConfig.from_options(bits if bits is not None else 8, spec_options)
        if isinstance(start, ExactNetwork):
            image = quantize(start, spec)
        else:
            topology = (int(train_images[0].size),) + tuple(config.hidden) + (n_classes,)
            encoding = SpikeEncoding()
            image = random_initial_image(topology, spec, config, encoding, expected_active_inputs(train_images, encoding))
    if image.topology[-1] < n_classes or image.topology[0] != train_images[0].size:
        raise ConfigError(
            f"the network is {'-'.join(map(str, image.topology))} but the data has {train_images[0].size} "
            f"pixels and {n_classes} classes"
        )
    base = image.learning.to_dict() if image.learning is not None else {"seed": config.seed}
    learning = LearningConfig.from_options(learning_options, **base)
    trained, history = run_training(
        train_images, train_labels, image, learning, config,
        test_images=test_images if evaluate_every_epoch else None,
        test_labels=test_labels if evaluate_every_epoch else None,
        progress=as_progress(progress), on_epoch=on_epoch, image_shape=train_data.image_shape,
    )
    if history and "test" in history[-1]:
        test = history[-1]["test"]
    else:
        test = summarize(run_emulator(trained, test_images), test_labels)
    provenance = provenance_record(
        "onchip",
        init=str(init) if init is not None else None,
        init_provenance=start.provenance if isinstance(start, WeightImage) else None,
        epochs=config.epochs,
        seed=config.seed,
        train_config={k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()},
        samples_trained=int(config.epochs * len(train_labels)),
        dataset=str(Path(train_data.files[0]).parent),
        dataset_sha256={Path(f).name: file_sha256(f) for f in train_data.files},
        train_images=int(len(train_labels)),
        history=history,
        emulated_test_accuracy=test["accuracy"],
    )
    trained = dataclasses.replace(trained, provenance=provenance)
    if out is not None:
        h5io.save_weight_image(out, trained)
    return {"test": test, "history": history, "out": str(out) if out is not None else None}


def model_topology(path) -> tuple[int, ...]:
    """Layer sizes of a model or weight image file, e.g. (784, 800, 10)."""
    from . import h5io

    return tuple(h5io.load_model(path).topology)


def evaluate(
    model_path,
    *,
    data_dir=None,
    limit=None,
    emulate=False,
    bits=None,
    plots_dir=None,
    split="test",
    spec_options=None,
) -> dict:
    """Evaluate a model or weight image on a split: exact model, or the fixed-point emulator.

    ``spec_options`` ({field: text}) overrides datapath fields when a float model is quantised.
    """
    from . import h5io
    from .weight_image import WeightImage

    model = h5io.load_model(model_path)
    images, labels, _ = _load_split(data_dir, split, limit)
    if not emulate:
        if bits is not None:
            raise ConfigError("--bits only applies with --emulate")
        if plots_dir is not None:
            raise ConfigError("--plots only applies with --emulate")
        if spec_options:
            raise ConfigError("--spec only applies with --emulate")
        from .evaluate import evaluate_exact

        summary = evaluate_exact(_as_network(model), images, labels).summary()
        summary["mode"] = "exact"
        return summary
    from .emulator import emulate as run_emulator
    from .emulator import summarize
    from .quantize import quantize

    if isinstance(model, WeightImage):
        if bits is not None and bits != model.spec.weight_bits:
            raise ConfigError(
                f"{model_path} is a {model.spec.weight_bits}-bit weight image; --bits {bits} cannot re-quantise it "
                "(export the float model again instead)"
            )
        if spec_options:
            raise ConfigError(
                f"{model_path} is a weight image: its datapath is fixed (thresholds depend on it); "
                "--spec applies when quantising a float model"
            )
        image = model
    else:
        image = quantize(model, DatapathConfig.from_options(bits if bits is not None else 8, spec_options))
    result = run_emulator(image, images, full_raster=False)
    summary = summarize(result, labels)
    summary["mode"] = "emulate"
    summary["weight_bits"] = image.spec.weight_bits
    if plots_dir is not None:
        from .plots import plot_decision_histograms, plot_raster

        plots_dir = Path(plots_dir)
        try:
            plots_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--plots {plots_dir}: cannot create the directory ({exc.strerror})") from None
        written = list(plot_decision_histograms(result, plots_dir) or [])
        raster = run_emulator(image, images[:1], full_raster=True)
        raster_path = plots_dir / "raster.png"
        plot_raster(raster, 0, raster_path)
        written.append(str(raster_path))
        summary["plots"] = [str(p) for p in written]
    return summary


def export(model_path, out, *, bits=None, data_dir=None, measure=True, spec_options=None) -> dict:
    """Write a deployable weight image atomically to ``out``.

    A float model is quantised (``bits``, default 8; ``spec_options`` ({field: text}) override
    fields of the default datapath for ``bits``). A weight image (e.g. from ``train --mode
    onchip``) is written as it is: its integers, spec and learning rule are kept, ``bits`` must
    match and ``spec_options`` are refused. Either way the emulator's test accuracy is measured
    and recorded in the provenance (unless ``measure`` is false).
    """
    from . import h5io
    from .network import ExactNetwork
    from .quantize import quantize

    out = _writable_out_path(out)
    model, metadata = h5io.load_model_and_metadata(model_path)
    if isinstance(model, ExactNetwork):
        config = metadata.get("config") or {}
        provenance = provenance_record(
            metadata.get("kind", "exact"),
            source_model=str(model_path),
            epochs=config.get("epochs"),
            seed=config.get("seed"),
            dataset=metadata.get("dataset"),
            dataset_sha256=metadata.get("dataset_sha256"),
            float_test_accuracy=(metadata.get("test") or {}).get("accuracy"),
        )
        image = quantize(model, DatapathConfig.from_options(8 if bits is None else bits, spec_options), provenance=provenance)
    else:
        if bits is not None and bits != model.spec.weight_bits:
            raise ConfigError(f"{model_path} is a {model.spec.weight_bits}-bit weight image; --bits {bits} cannot re-quantise it")
        if spec_options:
            raise ConfigError(f"{model_path} is a weight image: its datapath is fixed; --spec applies to float models")
        provenance = dict(model.provenance, source_model=str(model_path))
        image = dataclasses.replace(model, provenance=provenance)
    if measure:
        from .emulator import emulate as run_emulator
        from .emulator import summarize

        images, labels, _ = _load_split(data_dir, "test")
        summary = summarize(run_emulator(image, images), labels)
        provenance["emulated_test_accuracy"] = summary["accuracy"]
        image = dataclasses.replace(image, provenance=provenance)
    h5io.save_weight_image(out, image)
    return {"out": str(out), "topology": list(image.topology), "weight_bits": image.spec.weight_bits, "provenance": provenance}


def inspect(path) -> dict:
    """Summarise a model or weight image file (checksums are verified by loading it)."""
    from . import h5io
    from .network import ExactNetwork

    model, metadata = h5io.load_model_and_metadata(path)
    info = {"path": str(path), "size_bytes": os.path.getsize(path)}
    if isinstance(model, ExactNetwork):
        info.update(
            kind="exact",
            topology=list(model.topology),
            dtype=str(model.weights[0].dtype),
            encoding=dataclasses.asdict(model.encoding),
            test=metadata.get("test"),
            epochs=len(metadata.get("history") or []),
        )
        return info
    from .weight_image import image_crc32

    info.update(
        kind="weight_image",
        topology=list(model.topology),
        datapath=model.spec.to_dict(),
        thresholds_lsb=[int(t) for t in model.thresholds_lsb],
        scales=[float(l.scale) for l in model.layers],
        weight_bytes=int(sum(l.weights_lsb.nbytes for l in model.layers)),
        learning=model.learning.to_dict() if model.learning is not None else None,
        provenance=model.provenance,
        crc32=f"0x{image_crc32(model):08x}",
        checksums_verified=True,
    )
    return info


def rtl_compare(image_path, *, limit=None, lanes=4, data_dir=None, progress=None, batch_images=None) -> dict:
    """Simulate the RTL core (firmware_bridge/rtl, Icarus + cocotb) on test images and compare it
    with the emulator image by image: class, decision step, tie, every spike step, counters.

    Returns the counts, the first mismatching image described in full (``first_mismatch``, None
    when bit-exact), cycles per image (mean / median / max) and simulated images per second.
    """
    import numpy as np

    from firmware_bridge.rtl import sim as rtl_sim

    from . import h5io
    from .emulator import emulate
    from .weight_image import WeightImage

    reason = rtl_sim.missing_tools()
    if reason:
        from .errors import RtlToolsMissing

        raise RtlToolsMissing(reason)
    image = h5io.load_model(image_path)
    if not isinstance(image, WeightImage):
        raise ConfigError(f"{image_path} is a float model; rtl compare takes a weight image (popcount-learn export)")
    images, labels, _ = _load_split(data_dir, "test", limit)
    expected = emulate(image, images)
    kwargs = {} if batch_images is None else {"batch_images": batch_images}
    observed = rtl_sim.simulate(image, images, lanes=lanes, progress=progress, **kwargs)
    bad = rtl_sim.mismatched_images(expected, observed)
    cycles = observed.cycles
    return {
        "images": int(len(images)),
        "lanes": int(lanes),
        "mismatches": int(bad.size),
        "first_mismatch": rtl_sim.describe_image(expected, observed, int(bad[0])) if bad.size else None,
        "accuracy": float(np.mean(observed.predicted == labels)),
        "mean_steps_to_decision": float(np.mean(observed.steps_to_decision)),
        "cycles_mean": float(np.mean(cycles)),
        "cycles_median": float(np.median(cycles)),
        "cycles_max": int(np.max(cycles)),
        "sim_seconds": float(observed.sim_seconds),
        "sim_images_per_s": float(len(images) / observed.sim_seconds) if observed.sim_seconds > 0 else 0.0,
    }
