"""Build and run the RTL core under Icarus Verilog + cocotb, and check it against the emulator.

``simulate`` drives ``firmware_bridge/rtl/pcl_core.v`` through the harness
``tb/pcl_tb_harness.v`` with cocotb's Python runner (``cocotb_tools.runner``; no Makefile);
the cocotb side is ``tb/core_bench.py``. ``run_harness`` (one batch of harness commands after
another) and ``run_bench`` (one cocotb run, its failure reported with the log) serve
``train_sim`` and the UP5K and bridge runners too. The model is
``popcount_learn.emulator.emulate`` itself; ``compare`` is the checker: it compares class, decision
step, steps to decision, tie, every spike step and the counters image by image and describes the
first mismatching image in full.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from popcount_learn import codegen
from popcount_learn.codegen import Constant
from popcount_learn.emulator import encode_input_steps, steps_to_decision
from popcount_learn.errors import ConfigError
from popcount_learn.learning import LearningConfig
from popcount_learn.progress import as_progress
from popcount_learn.weight_image import WeightImage

from ..errors import RtlSimulationError, RtlToolsMissing
from .params import TB_CYCLE_BITS, TB_IMAGE_BITS, TB_PHASE_COUNTERS, TRAIN_RECORD_FIELDS, RtlLayout, unpack
from .sources import CORE_FILE_LIST, RTL_DIR, read_file_list

CORE_SOURCES = tuple(read_file_list(CORE_FILE_LIST))
HARNESS = RTL_DIR / "tb" / "pcl_tb_harness.v"
TOPLEVEL = "pcl_tb_harness"
DEFAULT_BATCH_IMAGES = 64
_POLL_SECONDS = 0.2
# Command kinds of the harness's command stream (tb/pcl_tb_harness.v) and its file plusargs.
CMD_INPUT, CMD_TRAIN, CMD_READBACK = 0, 1, 2
PLUSARGS = ("load_hex", "cmd_hex", "sp_hex", "res_hex", "rd_hex")


def missing_tools() -> str | None:
    """Why the RTL simulation cannot run here, or None when iverilog, vvp and cocotb 2.x are present."""
    for tool in ("iverilog", "vvp"):
        if shutil.which(tool) is None:
            return f"{tool} (Icarus Verilog) is not on PATH; install it (Debian: apt-get install iverilog)"
    try:
        import cocotb
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        return "cocotb is not installed; pip install 'cocotb>=2.0' (or the package's [test] extra)"
    major = int(str(cocotb.__version__).split(".")[0])
    if major < 2:
        return f"cocotb {cocotb.__version__} is too old; the runner needs cocotb >= 2.0"
    return None


BUILD_DIR_ENV = "PCL_RTL_BUILD_DIR"
VVP_DIGEST = "sim.vvp.sha256"  # written beside a compiled sim.vvp; a reused one must match it


def default_build_root() -> Path:
    """``$PCL_RTL_BUILD_DIR``, else the user's own cache ``~/.cache/popcount-learn/rtl``
    (``$XDG_CACHE_HOME`` when set); never a directory shared with other users such as /tmp."""
    env = os.environ.get(BUILD_DIR_ENV)
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "popcount-learn" / "rtl"


def _own_cache_dir(path: Path) -> Path:
    """Create ``path`` (0700) and refuse one that belongs to another user: what is compiled there is run."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = path.stat().st_uid
    if hasattr(os, "getuid") and owner != os.getuid():
        raise RtlSimulationError(f"RTL build cache {path} belongs to user id {owner}, not to you; set {BUILD_DIR_ENV}")
    return path


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_vvp_intact(build_dir: Path) -> bool:
    """A compiled sim.vvp may be reused only if it is the file that was written (its digest
    matches the one recorded with it): a truncated or damaged one is deleted and rebuilt."""
    vvp, digest = build_dir / "sim.vvp", build_dir / VVP_DIGEST
    if not vvp.exists():
        return False
    try:
        if digest.read_text().strip() == _file_sha256(vvp):
            return True
    except OSError:
        pass
    vvp.unlink(missing_ok=True)
    return False


def tb_constants(layout: RtlLayout, batch_steps: int, readbacks_per_batch: int = 0) -> list[Constant]:
    """Harness memory depths (pcl_tb.vh) for batches of ``batch_steps`` images or training steps
    with up to ``readbacks_per_batch`` weight read-backs each."""
    commands = batch_steps * (layout.topology[0] + 2) + readbacks_per_batch
    return [
        Constant("TB_SRC_DEPTH", max(layout.weight_words + layout.n_layers, commands)),
        Constant("TB_SP_DEPTH", batch_steps * layout.neurons),
        Constant("TB_RES_DEPTH", batch_steps),
        Constant("TB_WORD_DEPTH", max(1, readbacks_per_batch * layout.weight_words)),
        Constant("TB_IMAGE_BITS", TB_IMAGE_BITS),
        Constant("TB_CYCLE_BITS", TB_CYCLE_BITS),
    ]


def timeout_cycles_per_image(layout: RtlLayout) -> int:
    """An upper bound on the core's cycles for one image (every row and spike in every step)."""
    per_step = sum(
        (p + 1) * (g + 2) + 4 * g + 2 * n + 16
        for p, g, n in zip(layout.n_pre, layout.groups, layout.n_post, strict=True)
    )
    return layout.spec.max_steps * per_step + 4 * layout.topology[0] + 100


def compile_bench(
    sources,
    toplevel: str,
    headers: dict[str, str],
    *,
    build_root=None,
    parameters: dict | None = None,
    defines: dict | None = None,
):
    """Compile a testbench under Icarus for cocotb, cached by content.

    ``headers`` (file name -> text) are written into the build directory, which is on the include
    path and named by a hash of the headers, the sources, ``parameters`` (of ``toplevel``) and
    ``defines``. Returns ``(runner, build_dir)``; the runner is ready for ``runner.test``.
    """
    reason = missing_tools()
    if reason:
        raise RtlToolsMissing(reason)
    from cocotb_tools.runner import get_runner

    sources = [Path(src) for src in sources]
    parameters, defines = dict(parameters or {}), dict(defines or {})
    digest = hashlib.sha256()
    for name, text in sorted(headers.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    digest.update(json.dumps([toplevel, sorted(parameters.items()), sorted(defines.items())]).encode())
    build_dir = _own_cache_dir(Path(build_root or default_build_root())) / digest.hexdigest()[:16]
    build_dir.mkdir(parents=True, exist_ok=True)
    codegen.write_headers(build_dir, headers)
    options = dict(
        sources=sources,
        includes=[build_dir],
        hdl_toplevel=toplevel,
        timescale=("1ns", "1ps"),
        parameters=parameters,
        defines=defines,
    )
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one compile per directory; nobody sees it half done
        if not _cached_vvp_intact(build_dir):
            # Compile in a private directory and rename: a concurrent run never sees half a file.
            tmp = Path(tempfile.mkdtemp(prefix="build-", dir=build_dir))
            try:
                get_runner("icarus").build(**options, build_dir=tmp, always=True, log_file=tmp / "build.log")
                (tmp / VVP_DIGEST).write_text(_file_sha256(tmp / "sim.vvp") + "\n")
                os.replace(tmp / VVP_DIGEST, build_dir / VVP_DIGEST)
                os.replace(tmp / "sim.vvp", build_dir / "sim.vvp")
            except (RuntimeError, SystemExit, FileNotFoundError) as exc:
                log = (tmp / "build.log").read_text(errors="replace")[-3000:] if (tmp / "build.log").exists() else ""
                raise RtlSimulationError(f"building the RTL failed: {exc}\n{log}") from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    runner = get_runner("icarus")
    runner.build(**options, build_dir=build_dir, always=False, log_file=build_dir / "build.log")
    return runner, build_dir


def build(
    layout: RtlLayout, *, batch_images: int = DEFAULT_BATCH_IMAGES, readbacks_per_batch: int = 0, build_root=None
):
    """Generate the headers and compile the core's harness (cached by content).

    Returns ``(runner, build_dir)``; the runner is ready for ``runner.test``.
    """
    headers = {
        **layout.headers(),
        "pcl_tb.vh": codegen.verilog_header(
            "pcl_tb.vh", tb_constants(layout, batch_images, readbacks_per_batch), source="firmware_bridge.rtl.sim"
        ),
    }
    return compile_bench([*CORE_SOURCES, HARNESS], TOPLEVEL, headers, build_root=build_root)


def command_payload_bits(layout: RtlLayout) -> int:
    """Width of a harness command's payload: an input beat or a training request (the kind above it)."""
    w = layout.widths
    return max(1 + w["STEP_BITS"] + w["IN_INDEX_BITS"], w["NEURON_BITS"] + 32)


def _hex_records(path: Path) -> list[int]:
    lines = (line.split("//")[0].strip() for line in path.read_text().splitlines())
    return [int(line, 16) for line in lines if line]


def run_harness(
    layout: RtlLayout,
    load_beats: list[int],
    batches: list[dict],
    *,
    batch_steps: int,
    throttle: bool,
    what: str,
    desc: str,
    build_root=None,
    progress=None,
    keep_dir=None,
) -> tuple[list[dict], list[list[int]], float]:
    """Load the weights, then run each batch of harness commands (``{"commands", "n_results",
    "n_words", "timeout_cycles"}``; every batch but the last has ``batch_steps`` results) through
    the harness around ``pcl_core``. Returns per batch its record (``TRAIN_RECORD_FIELDS``, the
    phase counters, ``rows_read``, ``spikes``, ``first_image``, as ``decode_records`` takes them)
    and its read-back words, and the wall seconds."""
    readbacks = max(b["n_words"] for b in batches) // layout.weight_words
    runner, build_dir = build(layout, batch_images=batch_steps, readbacks_per_batch=readbacks, build_root=build_root)
    n = sum(b["n_results"] for b in batches)
    with tempfile.TemporaryDirectory(prefix="pcl-rtl-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        out_dir = work / "out"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        (work / "load.hex").write_text("".join(f"{v:x}\n" for v in load_beats))
        jobs = []
        for b, batch in enumerate(batches):
            path = work / f"cmd{b:06d}.hex"
            path.write_text("".join(f"{v:x}\n" for v in batch["commands"]))
            fields = {"n_results": batch["n_results"], "n_words": batch["n_words"]}
            jobs.append(
                {
                    "cmd_hex": str(path),
                    "n_beats": len(batch["commands"]),
                    **fields,
                    "timeout_cycles": batch["timeout_cycles"],
                }
            )
        job = {name: str(work / f"{name[:-4]}.hex") for name in PLUSARGS}
        job |= {"load_beats": len(load_beats), "batches": jobs, "out_dir": str(out_dir), "throttle": bool(throttle)}
        (work / "job.json").write_text(json.dumps(job))

        def finished() -> int:
            return len(list(out_dir.glob("batch*.done")))

        seconds = run_bench(
            runner,
            build_dir,
            work,
            test_module="firmware_bridge.rtl.tb.core_bench",
            toplevel=TOPLEVEL,
            what=what,
            plusargs=[f"+{name}={job[name]}" for name in PLUSARGS],
            complete=lambda: finished() >= len(batches),
            progress=progress,
            total=n,
            desc=desc,
            units_done=lambda: finished() * batch_steps,
        )
        fields = layout.harness_result_fields()
        spike_fields = layout.spike_fields()
        records, words = [], []
        for b, batch in enumerate(batches):
            res = [unpack(v, fields) for v in _hex_records(out_dir / f"batch{b:06d}_res.hex")]
            if len(res) != batch["n_results"]:
                raise RtlSimulationError(f"batch {b}: {len(res)} results for {batch['n_results']} requests")
            spikes = [unpack(v, spike_fields) for v in _hex_records(out_dir / f"batch{b:06d}_sp.hex")]
            words.append(_hex_records(out_dir / f"batch{b:06d}_rd.hex"))
            if len(words[-1]) != batch["n_words"]:
                raise RtlSimulationError(f"batch {b}: {len(words[-1])} read-back words, expected {batch['n_words']}")
            record = {
                name: np.array([r[name] for r in res], dtype=np.int64)
                for name in (*TRAIN_RECORD_FIELDS, *TB_PHASE_COUNTERS)
            }
            record["rows_read"] = np.array(
                [[r[f"rows_read{k}"] for k in range(layout.n_layers)] for r in res], dtype=np.int64
            ).reshape(len(res), layout.n_layers)
            record["spikes"] = np.array(
                [[s["image"], s["layer"], s["index"], s["step"]] for s in spikes], dtype=np.int64
            ).reshape(len(spikes), 4)
            record["first_image"] = np.int64(b * batch_steps)
            records.append(record)
    return records, words, seconds


@dataclass(frozen=True)
class RtlResult:
    """What the core reported, per image, in the emulator's field names (``docs/datapath.md`` 6).

    ``cycles``: clock cycles from the image's first input beat to its result beat.
    ``faults``: image index -> stream-level problems (a neuron reported twice, the core's
    input-error flag); empty when the streams behaved. ``firmware_bridge.check.compare`` takes it
    as it takes a board's results.
    """

    predicted: np.ndarray
    first_output_step: np.ndarray
    steps_to_decision: np.ndarray
    tie: np.ndarray
    spike_steps: tuple[np.ndarray, ...]
    rows_read: np.ndarray
    synaptic_additions: np.ndarray
    cycles: np.ndarray
    faults: dict[int, tuple[str, ...]]
    lanes: int
    sim_seconds: float

    def __len__(self) -> int:
        return len(self.predicted)


def decode_records(layout: RtlLayout, batches: list[dict], n: int, lanes: int, seconds: float) -> RtlResult:
    """The spike and result records of ``n`` images (batches as a testbench writes them) as an RtlResult."""
    max_steps = layout.spec.max_steps
    cat = {
        name: np.concatenate([b[name] for b in batches]) if batches else np.zeros(0, np.int64)
        for name in ("cycles", "input_error", "tie", "decided", "predicted", "step")
    }
    rows_read = (
        np.concatenate([b["rows_read"] for b in batches]) if batches else np.zeros((0, layout.n_layers), np.int64)
    )
    decided = cat["decided"].astype(bool)
    spike_steps = [np.full((n, m), -1, dtype=np.int32) for m in layout.n_post]
    faults: dict[int, list[str]] = {}
    for b in batches:
        first = int(b["first_image"])
        for img, layer, index, step in b["spikes"]:
            i = first + int(img)
            if layer >= layout.n_layers or index >= layout.n_post[layer] or i >= n:
                faults.setdefault(min(i, n - 1), []).append(
                    f"spike of layer {layer} neuron {index} of image {i}, which does not exist"
                )
            elif spike_steps[layer][i, index] != -1:
                faults.setdefault(i, []).append(
                    f"layer {layer} neuron {index} reported twice (steps {spike_steps[layer][i, index]} and {step})"
                )
            else:
                spike_steps[layer][i, index] = step
    for i in np.nonzero(cat["input_error"])[0]:
        faults.setdefault(int(i), []).append("the core flagged an input beat out of step order or out of range")
    return RtlResult(
        predicted=np.where(decided, cat["predicted"], -1).astype(np.int32),
        first_output_step=np.where(decided, cat["step"], -1).astype(np.int32),
        steps_to_decision=steps_to_decision(np.where(decided, cat["step"], -1), max_steps),
        tie=(cat["tie"].astype(bool) & decided),
        spike_steps=tuple(spike_steps),
        rows_read=rows_read.astype(np.int32),
        synaptic_additions=((rows_read + 1) * np.asarray(layout.n_post)[None, :]).sum(axis=1).astype(np.int64),
        cycles=cat["cycles"],
        faults={i: tuple(texts) for i, texts in sorted(faults.items())},
        lanes=lanes,
        sim_seconds=seconds,
    )


def input_steps_of(image: WeightImage, images_uint8, input_spike_steps, who: str) -> np.ndarray:
    """The input spike steps of a batch given as uint8 images (encoded with the image's own
    encoding) or as steps, exactly one of the two, checked against ``image``'s input size."""
    if (images_uint8 is None) == (input_spike_steps is None):
        raise ConfigError(f"{who}: pass exactly one of images_uint8 and input_spike_steps")
    if images_uint8 is not None:
        steps = encode_input_steps(image.spec, images_uint8, image.input_encoding)
    else:
        steps = np.asarray(input_spike_steps)
    if steps.ndim != 2 or steps.shape[1] != image.topology[0] or not np.issubdtype(steps.dtype, np.integer):
        raise ConfigError(
            f"input spike steps must be integers of shape (n, {image.topology[0]}), got {steps.dtype} {steps.shape}"
        )
    return steps


def run_bench(
    runner,
    build_dir,
    work: Path,
    *,
    test_module: str,
    toplevel: str,
    what: str,
    plusargs=(),
    complete=lambda: True,
    progress=None,
    total: int = 0,
    desc: str = "",
    units_done=None,
) -> float:
    """Run the cocotb bench ``test_module`` on ``toplevel`` (compiled in ``build_dir``; its job in
    ``work/job.json``, its log in ``work/sim.log``) and return the wall seconds it took.

    ``units_done()`` (how many of ``total`` are finished) is polled for ``progress`` while it runs.
    RtlSimulationError, with the log's last lines, when the test failed, the simulator died or
    ``complete()`` is false afterwards (outputs missing).
    """
    from cocotb_tools.check_results import get_results

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["xml"] = runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                test_dir=work,
                results_xml=str(work / "results.xml"),
                log_file=work / "sim.log",
                plusargs=list(plusargs),
                extra_env={"PCL_RTL_JOB": str(work / "job.json"), "PYTHONPATH": simulator_pythonpath()},
            )
        except BaseException as exc:  # reported below, in the calling thread
            outcome["error"] = exc

    progress = as_progress(progress)
    t0 = time.perf_counter()
    progress.start(total=total, desc=desc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    done = 0
    try:
        while thread.is_alive():
            thread.join(_POLL_SECONDS)
            if units_done is not None:
                finished = min(total, units_done())
                if finished > done:
                    progress.update(finished - done)
                    done = finished
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    failed = "error" in outcome
    if not failed:
        try:
            failed = get_results(outcome["xml"])[1] > 0
        except Exception:  # no or unreadable results file: the simulator died
            failed = True
    if failed or not complete():
        log = (work / "sim.log").read_text(errors="replace") if (work / "sim.log").exists() else ""
        tail = "\n".join(log.splitlines()[-40:])
        raise RtlSimulationError(
            f"{what} did not finish ({outcome.get('error', 'test failed')}); last lines of the simulator log:\n{tail}"
        )
    return seconds


def simulate(
    image: WeightImage,
    images_uint8: np.ndarray | None = None,
    *,
    input_spike_steps: np.ndarray | None = None,
    lanes: int = 4,
    learning: LearningConfig | None = None,
    batch_images: int = DEFAULT_BATCH_IMAGES,
    throttle: bool = False,
    shuffle_seed: int | None = None,
    build_root=None,
    progress=None,
    keep_dir=None,
) -> RtlResult:
    """Run the core on a batch (uint8 images or input spike steps, as ``emulate`` takes them).

    ``learning``: run the learning build of the core (``pcl_learn`` beside it, that rule's
    constants) instead of the inference-only one; the images are plain inference requests.
    ``throttle``: random gaps and back-pressure on every stream; ``shuffle_seed``: permute the
    input spikes within each step. Progress is reported per finished batch of images.
    ``keep_dir``: run in this directory and keep the beats, records and simulator log there.
    """
    if not isinstance(image, WeightImage):
        raise ConfigError(f"simulate: expected a WeightImage, got {type(image).__name__}")
    steps = input_steps_of(image, images_uint8, input_spike_steps, "simulate")
    if len(steps) >= 1 << TB_IMAGE_BITS:
        raise ConfigError(f"at most {(1 << TB_IMAGE_BITS) - 1} images per simulation")
    if learning is not None and not isinstance(learning, LearningConfig):
        raise ConfigError(f"simulate: learning must be a LearningConfig, got {type(learning).__name__}")
    layout = RtlLayout.for_image(image, lanes, learning)
    batch_images = max(1, min(int(batch_images), max(1, len(steps))))
    n = len(steps)
    if n == 0:
        build(layout, batch_images=batch_images, build_root=build_root)
        return decode_records(layout, [], 0, lanes, 0.0)
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    pay_bits = command_payload_bits(layout)
    per_image = timeout_cycles_per_image(layout) * (4 if throttle else 1)
    batches = []
    for start in range(0, n, batch_images):
        rows = range(start, min(n, start + batch_images))
        cmds = [(CMD_INPUT << pay_bits) | beat for i in rows for beat in layout.input_beats(steps[i], shuffle=rng)]
        timeout = len(rows) * per_image + 4 * len(cmds) + 100
        batches.append({"commands": cmds, "n_results": len(rows), "n_words": 0, "timeout_cycles": timeout})
    records, _, seconds = run_harness(
        layout,
        layout.load_beats(image),
        batches,
        batch_steps=batch_images,
        throttle=throttle,
        what="the RTL simulation",
        desc=f"RTL ({lanes} lanes)",
        build_root=build_root,
        progress=progress,
        keep_dir=keep_dir,
    )
    return decode_records(layout, records, n, lanes, seconds)


def simulator_pythonpath() -> str:
    """The simulator's Python must import this tree's firmware_bridge and popcount_learn."""
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")
