"""The commands behind the CLI, as plain functions that take arguments and return dicts.

Usable from Python and notebooks; the CLI only parses arguments and prints what these return.
Every file is written atomically, and only after its inputs were checked.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path

import numpy as np

from . import __version__, emulator, h5io
from .data import FIT, file_sha256, load_split, load_splits
from .datapath import DatapathConfig
from .encoding import InputEncoding, latency_t_max_for
from .errors import ConfigError, ModelFileError
from .evaluate import evaluate_exact
from .learning import LearningConfig, starting_rule
from .network import ExactNetwork
from .onchip_train import random_initial_image
from .onchip_train import train_onchip as run_onchip_training
from .progress import as_progress
from .quantize import dequantize, encoding_for, quantize
from .train import budget_for, expected_active_inputs, train_exact
from .weight_image import WeightImage, image_crc32, provenance_record


def _as_network(model) -> ExactNetwork:
    """An ExactNetwork from a checkpoint's network or a weight image (dequantised)."""
    if isinstance(model, ExactNetwork):
        return model
    if isinstance(model, WeightImage):
        return dequantize(model)
    raise ModelFileError(f"unsupported model object {type(model).__name__}")


def as_weight_image(model, name, *, bits=None, spec_options=None, provenance=None) -> WeightImage:
    """The weight image a command runs: a float model quantised to ``bits`` (default 8) with the
    datapath fields ``spec_options`` ({field: text}) overridden, or a weight image as it is (its
    integers and thresholds fix its datapath: ``bits`` must match it and ``spec_options`` are
    refused). ``name`` says which file or option the model came from, for the errors."""
    if isinstance(model, WeightImage):
        if bits is not None and bits != model.spec.weight_bits:
            raise ConfigError(
                f"{name} is a {model.spec.weight_bits}-bit weight image; --bits {bits} cannot re-quantise it "
                "(quantise the float model again instead)"
            )
        if spec_options:
            raise ConfigError(
                f"{name} is a weight image: its datapath is fixed (its thresholds depend on it); "
                "--spec applies when a float model is quantised"
            )
        return model if provenance is None else dataclasses.replace(model, provenance=provenance)
    spec = DatapathConfig.from_options(8 if bits is None else bits, spec_options)
    return quantize(_as_network(model), spec, provenance=provenance)


def _writable_out_path(out) -> Path:
    """``out`` as a Path, refused (ConfigError) if it is a directory, a FIFO, a device or anything
    else but a regular file (saving renames a new file over it), or its directory is unusable."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as {out / 'model.h5'}")
    _check_out_directory(out, out.parent)  # first: its own words beat stat()'s "Not a directory"
    try:
        target = Path(h5io.replaceable_target(out))
    except ModelFileError as exc:
        raise ConfigError(f"--out {exc}") from None
    if target != out:  # a symbolic link: the file it points to is replaced, in its directory
        _check_out_directory(out, target.parent)
    return out


def _check_out_directory(out: Path, directory: Path) -> None:
    if not directory.exists():
        raise ConfigError(f"--out {out}: directory {directory} does not exist")
    if not directory.is_dir():
        raise ConfigError(f"--out {out}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: directory {directory} is not writable")


_KIND_TEXT = {ExactNetwork: "float model", WeightImage: "weight image"}


def _refuse_replacing_input(out: Path, writes: type, source, source_model, flag: str = "--out") -> None:
    """ConfigError when ``out`` is the input file ``source`` and the command would write another
    kind of model there (a weight image over the float model it is made from): the input would
    be gone. The same kind in and out (a fine-tune in place) is allowed."""
    if source is None or isinstance(source_model, writes):
        return
    try:
        same = out.exists() and os.path.samefile(out, source)
    except OSError:
        return
    if same:
        raise ConfigError(
            f"{flag} {out} is the input {source} itself: the {_KIND_TEXT[writes]} would replace the "
            f"{_KIND_TEXT.get(type(source_model), 'model')} it is made from; give another output path"
        )


ENCODING_CHOICES = ("auto", "binary", "latency")


def choose_encoding(kind: str, data, *, t_max=None, silence=None, spec=None) -> InputEncoding:
    """The input encoding a new network is trained with: ``kind`` "binary" (threshold and dark
    step from ``spec``, default 128 / never), "latency" (``t_max``, ``silence``; defaults
    ``encoding.latency_t_max_for(data.images)`` and 0: every code spikes, images too, where
    silencing the background code 0 read 26-27 % fewer input rows but cost 2-3 points on digits
    and graded MNIST, BENCHMARKS.md #14) or "auto": binary for data that are 8-bit codes as they
    are (IDX images such as MNIST, where the recipe was tuned), latency for data that were scaled
    to codes (any other dtype). The data's feature scaling travels in the encoding."""
    if kind not in ENCODING_CHOICES:
        raise ConfigError(f"--encoding must be one of {', '.join(ENCODING_CHOICES)}, got {kind!r}")
    if kind == "auto":
        kind = "binary" if data.scaling is None else "latency"
    if kind == "binary":
        for value, flag in ((t_max, "--t-max"), (silence, "--silence")):
            if value is not None:
                raise ConfigError(f"{flag} applies to --encoding latency only")
        base = encoding_for(spec) if spec is not None else InputEncoding()
        return dataclasses.replace(base, scaling=data.scaling)
    if t_max is None:
        t_max = latency_t_max_for(data.images)
    return InputEncoding.latency(t_max, 0 if silence is None else silence, scaling=data.scaling)


def adapt_to_data(config, data, given=()):
    """``config`` with the defaults that depend on the data derived from it (fields in ``given``
    were asked for and are kept): the shift augmentation is ``round(side / 28)`` pixels (1 on
    28 x 28 MNIST, as tuned; 0 on 8 x 8 digits) and 0 for a table of features, which has no
    pixels to shift."""
    if "augment_shift_px" in given:
        if config.augment_shift_px and data.image_shape is None:
            raise ConfigError(f"--augment-shift shifts images; {data.source} is a table of features (use 0)")
        return config
    shift = 0 if data.image_shape is None else min(4, round(min(data.image_shape) / 28))
    return dataclasses.replace(config, augment_shift_px=shift)


def adapt_exact_to_data(config, data, given=()):
    """``adapt_to_data`` and, for the exact trainer, the budget of ``train.budget_for``: at least
    ``MIN_ADAM_STEPS`` Adam steps (more epochs on a small set, the lr decay stretched to match)."""
    return budget_for(adapt_to_data(config, data, given), data.n_samples, given)


def _scaling_of(model):
    if model is None:
        return FIT
    return model.encoding.scaling if isinstance(model, ExactNetwork) else model.input_encoding.scaling


def _as_lists(config) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def _dataset_record(data) -> dict:
    if not data.files:  # scikit-learn's bundled copy
        import sklearn

        where = f"{data.source} (scikit-learn {sklearn.__version__})"
    else:
        where = str(Path(data.files[0]) if len(data.files) == 1 else Path(data.files[0]).parent)
    return {
        "dataset": where,
        "dataset_sha256": {Path(f).name: file_sha256(f) for f in data.files},
        "train_images": int(data.n_samples),
        "classes": int(data.n_classes),
    }


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
    classes=None,
    encoding="auto",
    t_max=None,
    silence=None,
    given=(),
    validation=None,
) -> dict:
    """Train the exact network on ``data_dir`` (anything ``--data`` takes); save it atomically to
    ``out`` if given. ``encoding`` / ``t_max`` / ``silence``: ``choose_encoding`` (a network from
    ``init`` keeps its own); ``config`` fields not in ``given`` adapt to the data (``adapt_to_data``).
    ``validation`` (N samples or a fraction, ``data.validation_count``): the last training samples
    are held out, not trained on, and measured after every epoch (``history[i]["validation"]``);
    what was held out and its final summary go into the model's metadata.

    Returns a dict with the test summary (and the validation summary), the per-epoch history and
    the output path.
    """
    if out is not None:
        out = _writable_out_path(out)  # before the data is loaded: a bad path must not cost a run
    start = h5io.load_model(init) if init is not None else None
    train_data, test_data, val_data = _splits(data_dir, limit, start, classes, validation)
    config = adapt_exact_to_data(config, train_data, given)
    if out is not None:
        _refuse_replacing_input(out, ExactNetwork, init, start)
    network = _as_network(start) if start is not None else None
    if network is None:
        chosen = choose_encoding(encoding, train_data, t_max=t_max, silence=silence)
    else:
        if encoding != "auto" or t_max is not None or silence is not None:
            raise ConfigError(f"--init {init} brings its own input encoding; drop --encoding / --t-max / --silence")
        chosen = network.encoding
    if network is not None and tuple(config.hidden) != tuple(network.topology[1:-1]):
        raise ConfigError(
            f"--init {init} has hidden layers {list(network.topology[1:-1])}, but --hidden "
            f"{list(config.hidden)} was asked for; drop --hidden or make it match"
        )
    network, history = train_exact(
        train_data.images,
        train_data.labels,
        config,
        network=network,
        test_images=test_data.images if evaluate_every_epoch else None,
        test_labels=test_data.labels if evaluate_every_epoch else None,
        validation_images=val_data.images if val_data is not None else None,
        validation_labels=val_data.labels if val_data is not None else None,
        progress=as_progress(progress),
        on_epoch=on_epoch,
        image_shape=train_data.image_shape,
        n_classes=train_data.n_classes,
        encoding=chosen,
    )
    if history.epochs and "test" in history.epochs[-1]:
        test = history.epochs[-1]["test"]  # already measured on exactly these (final) weights
    else:
        test = evaluate_exact(network, test_data.images, test_data.labels).summary()
    held_out = None
    if val_data is not None:
        final = history.epochs[-1]["validation"] if history.epochs else None
        if final is None:
            final = evaluate_exact(network, val_data.images, val_data.labels).summary()
        held_out = dict(val_data.validation, summary=final)
    qat = None
    if config.qat_bits:
        # What the board will run: the image `export` makes of this model, on the emulator.
        image = quantize(network, bits=config.qat_bits)
        emulated = emulator.summarize(emulator.emulate(image, test_data.images), test_data.labels)
        qat = {
            "bits": config.qat_bits,
            "scale": config.qat_scale,
            "exact_test_accuracy": test["accuracy"],
            "emulated_test_accuracy": emulated["accuracy"],
            "emulated_hidden_spikes_before_decision_mean": emulated["hidden_spikes_before_decision_mean"],
        }
    metadata = {
        "kind": "exact",
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **_dataset_record(train_data),
        "config": _as_lists(config),
        "encoding": network.encoding.to_dict(),
        "init": str(init) if init is not None else None,
        "history": history.epochs,
        "test": test,
        **({"validation": held_out} if held_out is not None else {}),
        **({"qat": qat} if qat is not None else {}),
    }
    if out is not None:
        h5io.save_network(out, network, metadata)
    result = {"test": test, "history": history.epochs, "out": str(out) if out is not None else None}
    if held_out is not None:
        result["validation"] = held_out["summary"]
    if qat is not None:
        result["qat"] = qat
    return result


def _splits(data_dir, limit, start, classes, validation):
    """(train, test, validation or None) of ``data_dir``, read once (``data.load_splits``): the
    training split cut to ``limit`` after the ``validation`` tail is held out, and the scaling
    fitted on it or ``start``'s."""
    return tuple(load_splits(data_dir, limit, scaling=_scaling_of(start), n_classes=classes, validation=validation))


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
    continue_schedule=True,
    classes=None,
    encoding="auto",
    t_max=None,
    silence=None,
    given=(),
    validation=None,
) -> dict:
    """Train with the sign-only popcount rule on the integer datapath; save the weight image.

    Starts from ``init`` (a float model, quantised to ``bits`` / ``spec_options``, or a weight
    image, used as it is) or from a seeded random integer network. The rule is
    ``learning.starting_rule``: a new network gets the defaults (seed ``config.seed``); a weight
    image that carries a rule keeps it and, with ``continue_schedule``, its schedule continues
    at the sample index where the image's training stopped (``continued_sample_index``);
    a trained network without a rule is fine-tuned (``FINE_TUNE_RATES``). ``learning_options``
    ({field: text}) override any field. ``validation`` holds out the last training samples as
    ``train`` does; the trained image is measured on them once (the emulator) and the result kept
    in its provenance. Returns the test summary (the keys of ``evaluate --emulate``), the history,
    the output path, the rule and its origin (and the validation summary).
    """
    if out is not None:
        out = _writable_out_path(out)
    start = h5io.load_model(init) if init is not None else None
    train_data, test_data, val_data = _splits(data_dir, limit, start, classes, validation)
    n_classes = train_data.n_classes
    config = adapt_to_data(config, train_data, given)
    if start is not None and (encoding != "auto" or t_max is not None or silence is not None):
        raise ConfigError(f"--init {init} brings its own input encoding; drop --encoding / --t-max / --silence")
    if out is not None:
        _refuse_replacing_input(out, WeightImage, init, start)
    if start is not None:
        image = as_weight_image(start, f"--init {init}", bits=bits, spec_options=spec_options)
        if tuple(config.hidden) != tuple(image.topology[1:-1]):
            raise ConfigError(
                f"--init {init} has hidden layers {list(image.topology[1:-1])}, but --hidden "
                f"{list(config.hidden)} was asked for; drop --hidden or make it match"
            )
    else:
        spec = DatapathConfig.from_options(bits if bits is not None else 8, spec_options)
        topology = (int(train_data.images[0].size), *config.hidden, n_classes)
        # A new binary network takes its threshold and dark step from the spec (--spec input_threshold=...).
        chosen = choose_encoding(encoding, train_data, t_max=t_max, silence=silence, spec=spec)
        active = expected_active_inputs(train_data.images, chosen)
        image = random_initial_image(topology, spec, config, chosen, active)
    if image.topology[-1] < n_classes or image.topology[0] != train_data.images[0].size:
        raise ConfigError(
            f"the network is {'-'.join(map(str, image.topology))} but the data has {train_data.images[0].size} "
            f"pixels and {n_classes} classes"
        )
    if start is not None:
        learning, rule_origin = starting_rule(image.learning, config.seed, learning_options)
        if rule_origin == "carried" and continue_schedule:
            config = dataclasses.replace(config, first_sample_index=continued_sample_index(image))
    else:
        learning, rule_origin = LearningConfig.from_options(learning_options, seed=config.seed), "from-scratch"
    trained, history = run_onchip_training(
        train_data.images,
        train_data.labels,
        image,
        learning,
        config,
        test_images=test_data.images if evaluate_every_epoch else None,
        test_labels=test_data.labels if evaluate_every_epoch else None,
        progress=as_progress(progress),
        on_epoch=on_epoch,
        image_shape=train_data.image_shape,
    )
    if history and "test" in history[-1]:
        test = history[-1]["test"]
    else:
        test = emulator.summarize(emulator.emulate(trained, test_data.images), test_data.labels)
    held_out = None
    if val_data is not None:
        final = emulator.summarize(emulator.emulate(trained, val_data.images), val_data.labels)
        held_out = dict(val_data.validation, summary=final)
    provenance = provenance_record(
        "onchip",
        init=str(init) if init is not None else None,
        init_provenance=start.provenance if isinstance(start, WeightImage) else None,
        **({"learning_rule_origin": rule_origin} if start is not None else {}),
        epochs=config.epochs,
        seed=config.seed,
        train_config=_as_lists(config),
        samples_trained=int(config.epochs * train_data.n_samples),
        **_dataset_record(train_data),
        history=history,
        emulated_test_accuracy=test["accuracy"],
        **({"validation": held_out} if held_out is not None else {}),
    )
    trained = dataclasses.replace(trained, provenance=provenance)
    if out is not None:
        h5io.save_weight_image(out, trained)
    return {
        "test": test,
        "history": history,
        "out": str(out) if out is not None else None,
        "learning": learning.to_dict(),
        "learning_rule_origin": rule_origin,
        **({"validation": held_out["summary"]} if held_out is not None else {}),
    }


def continued_sample_index(image: WeightImage) -> int:
    """The sample index after the last one an on-chip-trained image was trained on (its
    provenance: first sample index + samples trained), 0 for any other image."""
    prov = image.provenance or {}
    trained = prov.get("samples_trained")
    first = (prov.get("train_config") or {}).get("first_sample_index", 0)
    if prov.get("mode") != "onchip" or not isinstance(trained, int) or not isinstance(first, int):
        return 0
    return first + trained


def model_topology(path) -> tuple[int, ...]:
    """Layer sizes of a model or weight image file, e.g. (784, 800, 10)."""
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
    model = h5io.load_model(model_path)
    data = load_split(data_dir, split, limit, scaling=_scaling_of(model), n_classes=model.topology[-1])
    if not emulate:
        for value, flag in ((bits, "--bits"), (plots_dir, "--plots"), (spec_options, "--spec")):
            if value:
                raise ConfigError(f"{flag} only applies with --emulate")
        summary = evaluate_exact(_as_network(model), data.images, data.labels).summary()
        summary["mode"] = "exact"
        return summary
    image = as_weight_image(model, model_path, bits=bits, spec_options=spec_options)
    result = emulator.emulate(image, data.images)
    summary = emulator.summarize(result, data.labels)
    summary["mode"] = "emulate"
    summary["weight_bits"] = image.spec.weight_bits
    if plots_dir is not None:
        summary["plots"] = _write_plots(image, result, data.images[:1], Path(plots_dir))
    return summary


def _write_plots(image: WeightImage, result, first_image: np.ndarray, plots_dir: Path) -> list[str]:
    from .plots import plot_decision_histograms, plot_raster  # matplotlib: only when plots are asked for

    try:
        plots_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--plots {plots_dir}: cannot create the directory ({exc.strerror})") from None
    written = list(plot_decision_histograms(result, plots_dir) or [])
    raster_path = plots_dir / "raster.png"
    plot_raster(emulator.emulate(image, first_image, full_raster=True), 0, raster_path)
    written.append(str(raster_path))
    return [str(p) for p in written]


def export(model_path, out, *, bits=None, data_dir=None, measure=True, spec_options=None) -> dict:
    """Write a deployable weight image atomically to ``out``.

    A float model is quantised (``bits``, default 8, or the model's ``qat_bits`` when it was
    trained quantisation-aware; ``spec_options`` ({field: text}) override
    fields of the default datapath for ``bits``). A weight image (e.g. from ``train --mode
    onchip``) is written as it is: its integers, spec and learning rule are kept, ``bits`` must
    match and ``spec_options`` are refused. Either way the emulator's test accuracy is measured
    and recorded in the provenance (unless ``measure`` is false).
    """
    out = _writable_out_path(out)
    loaded = h5io.read_model_file(model_path)
    model, metadata = loaded.model, loaded.metadata
    _refuse_replacing_input(out, WeightImage, model_path, model, flag="-o")
    if isinstance(model, ExactNetwork):
        config = metadata.get("config") or {}
        qat_bits = config.get("qat_bits") or None
        if bits is None and isinstance(qat_bits, int):
            bits = qat_bits  # a model trained for B-bit weights exports at B bits
        provenance = provenance_record(
            metadata.get("kind", "exact"),
            source_model=str(model_path),
            epochs=config.get("epochs"),
            seed=config.get("seed"),
            dataset=metadata.get("dataset"),
            dataset_sha256=metadata.get("dataset_sha256"),
            float_test_accuracy=(metadata.get("test") or {}).get("accuracy"),
            **({"qat_bits": qat_bits, "init": metadata.get("init"), "train_config": config} if qat_bits else {}),
        )
    else:
        provenance = dict(model.provenance, source_model=str(model_path))
    # The new file is sealed; say whether what it was made from was verified whole (an unsealed
    # source's learning rule and scales had no checksum).
    provenance["source_integrity"] = loaded.integrity
    image = as_weight_image(model, model_path, bits=bits, spec_options=spec_options, provenance=provenance)
    if measure:
        test = load_split(data_dir, "test", scaling=_scaling_of(image), n_classes=image.topology[-1])
        result = emulator.emulate(image, test.images)
        provenance["emulated_test_accuracy"] = emulator.summarize(result, test.labels)["accuracy"]
        image = dataclasses.replace(image, provenance=provenance)
    h5io.save_weight_image(out, image)
    return {
        "out": str(out),
        "topology": list(image.topology),
        "weight_bits": image.spec.weight_bits,
        "provenance": provenance,
    }


def inspect(path) -> dict:
    """Summarise a model or weight image file (checksums are verified by loading it)."""
    loaded = h5io.read_model_file(path)
    model, metadata = loaded.model, loaded.metadata
    info = {"path": str(path), "size_bytes": os.path.getsize(path)}
    if isinstance(model, ExactNetwork):
        info.update(
            kind="exact",
            topology=list(model.topology),
            dtype=str(model.weights[0].dtype),
            encoding=_encoding_summary(model.encoding),
            test=metadata.get("test"),
            **({"validation": metadata["validation"]} if "validation" in metadata else {}),
            epochs=len(metadata.get("history") or []),
            checksums_verified=loaded.fully_verified,
            integrity=h5io.INTEGRITY_TEXT[loaded.integrity],
            **_onchip_rule_record(model),
        )
        return info
    info.update(
        kind="weight_image",
        topology=list(model.topology),
        datapath=model.spec.to_dict(),
        thresholds_lsb=[int(t) for t in model.thresholds_lsb],
        scales=[float(layer.scale) for layer in model.layers],
        weight_bytes=int(sum(layer.weights_lsb.nbytes for layer in model.layers)),
        learning=model.learning.to_dict() if model.learning is not None else None,
        encoding=_encoding_summary(model.input_encoding),
        provenance=model.provenance,
        crc32=f"0x{image_crc32(model):08x}",
        checksums_verified=loaded.fully_verified,
        integrity=h5io.INTEGRITY_TEXT[loaded.integrity],
        **_onchip_rule_record(model),
    )
    return info


def _onchip_rule_record(model) -> dict:
    """What ``train --mode onchip --init FILE`` (no --learn, default --seed) will train with:
    the rule, where it comes from, the first sample index and the update probabilities there."""
    from .train import TrainConfig

    image = model if isinstance(model, WeightImage) else None
    rule, origin = starting_rule(image.learning if image is not None else None, TrainConfig().seed)
    first = continued_sample_index(image) if origin == "carried" else 0
    return {
        "onchip_training_rule": rule.to_dict(),
        "onchip_training_rule_origin": origin,
        "onchip_training_first_sample_index": first,
        "onchip_training_update_prob_q16": {
            "hidden": rule.update_prob_q16(False, first),
            "output": rule.update_prob_q16(True, first),
        },
    }


def _encoding_summary(encoding: InputEncoding) -> dict:
    summary = encoding.to_dict()
    scaling = encoding.scaling
    summary["scaling"] = (
        None if scaling is None else f"min/max of the training split over {scaling.low.size} feature range(s)"
    )
    return summary
