"""Build and run the RTL core under Icarus Verilog + cocotb, and check it against the emulator.

``simulate`` drives ``firmware_bridge/rtl/pcl_core.v`` through the harness
``rtl/sim/pcl_tb_harness.v`` with cocotb's Python runner (``cocotb_tools.runner``; no Makefile);
the cocotb side (stimulus and monitor) is ``firmware_bridge/_rtl_cocotb.py``. The model is
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
from .params import TB_CYCLE_BITS, TB_IMAGE_BITS, RtlLayout
from .sources import CORE_FILE_LIST, RTL_DIR, read_file_list

CORE_SOURCES = tuple(read_file_list(CORE_FILE_LIST))
HARNESS = RTL_DIR / "tb" / "pcl_tb_harness.v"
TOPLEVEL = "pcl_tb_harness"
DEFAULT_BATCH_IMAGES = 64
_POLL_SECONDS = 0.2


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


def tb_constants(layout: RtlLayout, batch_images: int) -> list[Constant]:
    """Harness memory depths (pcl_tb.vh) for batches of ``batch_images`` images."""
    src = max(layout.weight_words + layout.n_layers, batch_images * layout.topology[0])
    return [
        Constant("TB_SRC_DEPTH", src),
        Constant("TB_SP_DEPTH", batch_images * sum(layout.n_post)),
        Constant("TB_RES_DEPTH", batch_images),
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


def build(layout: RtlLayout, *, batch_images: int = DEFAULT_BATCH_IMAGES, build_root=None):
    """Generate the headers and compile the core's harness (cached by content).

    Returns ``(runner, build_dir)``; the runner is ready for ``runner.test``.
    """
    headers = {
        **layout.headers(),
        "pcl_tb.vh": codegen.verilog_header(
            "pcl_tb.vh", tb_constants(layout, batch_images), source="firmware_bridge.rtl.sim"
        ),
    }
    return compile_bench([*CORE_SOURCES, HARNESS], TOPLEVEL, headers, build_root=build_root)


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
    if (images_uint8 is None) == (input_spike_steps is None):
        raise ConfigError("simulate: pass exactly one of images_uint8 and input_spike_steps")
    if images_uint8 is not None:
        steps = encode_input_steps(image.spec, images_uint8, image.input_encoding)
    else:
        steps = np.asarray(input_spike_steps)
        if not np.issubdtype(steps.dtype, np.integer) or steps.ndim != 2:
            raise ConfigError(f"input_spike_steps must be a 2-D integer array, got {steps.dtype} {steps.shape}")
    if steps.shape[1] != image.topology[0]:
        raise ConfigError(
            f"the inputs have {steps.shape[1]} values per image, the weight image expects {image.topology[0]}"
        )
    if len(steps) >= 1 << TB_IMAGE_BITS:
        raise ConfigError(f"at most {(1 << TB_IMAGE_BITS) - 1} images per simulation")
    if learning is not None and not isinstance(learning, LearningConfig):
        raise ConfigError(f"simulate: learning must be a LearningConfig, got {type(learning).__name__}")
    layout = RtlLayout.for_image(image, lanes, learning)
    batch_images = max(1, min(int(batch_images), max(1, len(steps))))
    runner, build_dir = build(layout, batch_images=batch_images, build_root=build_root)
    progress = as_progress(progress)
    n = len(steps)
    if n == 0:
        return decode_records(layout, [], 0, lanes, 0.0)

    from cocotb_tools.check_results import get_results

    with tempfile.TemporaryDirectory(prefix="pcl-rtl-") as tmp:
        work = Path(keep_dir) if keep_dir is not None else Path(tmp)
        out_dir = work / "out"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        load = layout.load_beats(image)
        (work / "load.hex").write_text("".join(f"{v:x}\n" for v in load))
        np.save(work / "steps.npy", np.ascontiguousarray(steps, dtype=np.int64))
        job = {
            "spec": image.spec.to_dict(),
            "topology": list(layout.topology),
            "lanes": lanes,
            "load_hex": str(work / "load.hex"),
            "load_beats": len(load),
            "in_hex": str(work / "in.hex"),
            "sp_hex": str(work / "sp.hex"),
            "res_hex": str(work / "res.hex"),
            "steps_npy": str(work / "steps.npy"),
            "out_dir": str(out_dir),
            "batch_images": batch_images,
            "shuffle_seed": shuffle_seed,
            "throttle": bool(throttle),
            "timeout_cycles_per_image": timeout_cycles_per_image(layout) * (4 if throttle else 1),
        }
        (work / "job.json").write_text(json.dumps(job))
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["xml"] = runner.test(
                    test_module="firmware_bridge.rtl.tb.core_bench",
                    hdl_toplevel=TOPLEVEL,
                    build_dir=build_dir,
                    test_dir=work,
                    results_xml=str(work / "results.xml"),
                    log_file=work / "sim.log",
                    plusargs=[f"+{name}={job[name]}" for name in ("load_hex", "in_hex", "sp_hex", "res_hex")],
                    extra_env={"PCL_RTL_JOB": str(work / "job.json"), "PYTHONPATH": simulator_pythonpath()},
                )
            except BaseException as exc:  # reported below, in the calling thread
                outcome["error"] = exc

        t0 = time.perf_counter()
        progress.start(total=n, desc=f"RTL ({lanes} lanes)")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        done = 0
        try:
            while thread.is_alive():
                thread.join(_POLL_SECONDS)
                finished = min(n, len(list(out_dir.glob("batch*.npz"))) * batch_images)
                if finished > done:
                    progress.update(finished - done)
                    done = finished
        finally:
            progress.close()
        seconds = time.perf_counter() - t0
        log = (work / "sim.log").read_text(errors="replace") if (work / "sim.log").exists() else ""
        failed = "error" in outcome
        if not failed:
            try:
                _, n_failed = get_results(outcome["xml"])
                failed = n_failed > 0
            except Exception:  # no or unreadable results file: the simulator died
                failed = True
        batch_files = sorted(out_dir.glob("batch*.npz"))
        if failed or len(batch_files) * batch_images < n:
            tail = "\n".join(log.splitlines()[-40:])
            raise RtlSimulationError(
                f"the RTL simulation did not finish ({outcome.get('error', 'test failed')}); "
                f"last lines of the simulator log:\n{tail}"
            )
        batches = [dict(np.load(f)) for f in batch_files]
    return decode_records(layout, batches, n, lanes, seconds)


def simulator_pythonpath() -> str:
    """The simulator's Python must import this tree's firmware_bridge and popcount_learn."""
    root = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH", "")
    return root + (os.pathsep + rest if rest else "")
