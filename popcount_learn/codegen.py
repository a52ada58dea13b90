"""The one generator of every header the firmware and the RTL are built from.

Spec objects (``DatapathConfig``, ``LearningConfig``, the upload stream layout of
``weight_image``) hold values; this module names them for C and Verilog and renders them. Other
layers that need a generated header (the wire protocol's constants, the RTL's memory layout and
harness depths) hand their own values over as ``Constant``s and render them here too, so every
generated file has one shape: a note of its source, then one constant per line.

- C: ``#define PCL_<NAME> <value>`` inside an include guard derived from the file name.
- Verilog: ``localparam integer PCL_<NAME> = <value>;`` (``localparam [31:0]`` for an unsigned
  32-bit constant, ``localparam [32*N-1:0]`` for a vector of N 32-bit values), to be included
  inside a module.

``write_if_changed`` is how every build writes them: an unchanged file keeps its timestamp, so
``make`` and the simulator caches rebuild only what changed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .datapath import OVERFLOW_CODES, TIE_CODES, DatapathConfig
from .learning import (
    CORRECT_RULE_CODES,
    INDEX_MUL,
    MIX_MUL_1,
    MIX_MUL_2,
    OUTPUT_RULE_CODES,
    SAMPLE_SALT,
    LearningConfig,
)
from .weight_image import (
    UPLOAD_HEADER_BYTES,
    UPLOAD_LAYER_HEADER_BYTES,
    UPLOAD_MAGIC,
    UPLOAD_SPEC_FIELDS,
    UPLOAD_STREAM_VERSION,
)

PREFIX = "PCL_"
_INT32_MIN = -(1 << 31)
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Constant:
    """One named value of a generated header (``name`` without the ``PCL_`` prefix).

    value: an int; a tuple of ints (a C initializer list, a Verilog vector of 32-bit fields,
        element 0 in the lowest bits); or a str, a C expression written as it is (C only).
    unsigned: a 32-bit unsigned value (C ``u`` suffix; Verilog ``localparam [31:0]``).
    hex: written in hexadecimal (unsigned values only).
    """

    name: str
    value: int | tuple[int, ...] | str
    unsigned: bool = False
    hex: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"constant name {self.name!r} is not an upper-case identifier")
        if isinstance(self.value, bool):
            raise ValueError(f"{self.name}: a bool is not a constant value; use 0 or 1")
        if self.unsigned and not (isinstance(self.value, int) and 0 <= self.value < 1 << 32):
            raise ValueError(f"{self.name}: unsigned constants are ints in 0..2**32-1, got {self.value!r}")
        if self.hex and not self.unsigned:
            raise ValueError(f"{self.name}: only unsigned constants are written in hexadecimal")
        if isinstance(self.value, int) and not self.unsigned and not _INT32_MIN <= self.value < 1 << 31:
            raise ValueError(f"{self.name}: {self.value} does not fit a signed 32-bit constant")
        if isinstance(self.value, tuple) and not all(isinstance(x, int) and 0 <= x < 1 << 32 for x in self.value):
            raise ValueError(f"{self.name}: a vector holds ints in 0..2**32-1, got {self.value!r}")


# ----------------------------------------------------------------------------------------------
# The spec objects, named


def datapath_constants(spec: DatapathConfig) -> list[Constant]:
    """Every width, limit, shift, policy and limit of the datapath (docs/datapath.md).

    Policies and the tie rule appear twice: as their code (``PCL_CURRENT_OVERFLOW`` against
    ``PCL_OVERFLOW_SATURATE`` / ``PCL_OVERFLOW_WRAP``; ``PCL_TIE_RULE``) and as 0/1 flags the
    RTL tests directly (``PCL_CURRENT_WRAP``, ``PCL_MEMBRANE_WRAP``, ``PCL_TIE_BY_LOWEST_INDEX``).
    """
    wrap, lowest = OVERFLOW_CODES["wrap"], TIE_CODES["lowest_index"]
    return [
        Constant("TIME_SHIFT", spec.time_shift),
        Constant("WEIGHT_BITS", spec.weight_bits),
        Constant("WEIGHT_MIN", spec.weight_min),
        Constant("WEIGHT_MAX", spec.weight_max),
        Constant("CURRENT_FRAC_BITS", spec.current_frac_bits),
        Constant("CURRENT_BITS", spec.current_bits),
        Constant("CURRENT_MIN", spec.current_min),
        Constant("CURRENT_MAX", spec.current_max),
        Constant("MEMBRANE_BITS", spec.membrane_bits),
        Constant("MEMBRANE_MIN", spec.membrane_min),
        Constant("MEMBRANE_MAX", spec.membrane_max),
        Constant("MEMBRANE_FRAC_BITS", spec.membrane_frac_bits),
        *(Constant(f"OVERFLOW_{name.upper()}", code) for name, code in OVERFLOW_CODES.items()),
        Constant("CURRENT_OVERFLOW", spec.current_overflow_code),
        Constant("MEMBRANE_OVERFLOW", spec.membrane_overflow_code),
        Constant("CURRENT_WRAP", int(spec.current_overflow_code == wrap)),
        Constant("MEMBRANE_WRAP", int(spec.membrane_overflow_code == wrap)),
        *(Constant(f"TIE_{name.upper()}", code) for name, code in TIE_CODES.items()),
        Constant("TIE_RULE", spec.tie_rule_code),
        Constant("TIE_BY_LOWEST_INDEX", int(spec.tie_rule_code == lowest)),
        Constant("INPUT_THRESHOLD", spec.input_threshold),
        Constant("DARK_INPUT_STEP", spec.dark_input_step),
        Constant("MAX_STEPS", spec.max_steps),
    ]


def learning_constants(learning: LearningConfig) -> list[Constant]:
    """The learning rule (docs/learning-rule.md) as ``PCL_LEARN_*``: its fields, the codes of its
    rules (and, as 0/1 flags the RTL tests directly, ``PCL_LEARN_USE_ALL_VIOLATORS`` and
    ``PCL_LEARN_USE_CORRECT_ALWAYS``), the constants of the random draw, and ``PCL_LEARN_SPEC_VALUES``
    (C only): the fields in ``LearningConfig`` order, rules as codes, as the board reports them in INFO."""
    consts = [
        Constant("LEARN_MARGIN_STEPS", learning.margin_steps),
        Constant("LEARN_HIDDEN_UPDATE_PROB_Q16", learning.hidden_update_prob_q16, unsigned=True),
        Constant("LEARN_OUTPUT_UPDATE_PROB_Q16", learning.output_update_prob_q16, unsigned=True),
        Constant("LEARN_PROB_HALVING_SAMPLES", learning.prob_halving_samples, unsigned=True),
        Constant("LEARN_SEED", learning.seed, unsigned=True, hex=True),
        *(Constant(f"LEARN_OUTPUT_{name.upper()}", code) for name, code in OUTPUT_RULE_CODES.items()),
        Constant("LEARN_OUTPUT_RULE", OUTPUT_RULE_CODES[learning.output_rule]),
        *(Constant(f"LEARN_CORRECT_{name.upper()}", code) for name, code in CORRECT_RULE_CODES.items()),
        Constant("LEARN_CORRECT_RULE", CORRECT_RULE_CODES[learning.correct_rule]),
        Constant("LEARN_USE_ALL_VIOLATORS", int(learning.output_rule == "all_violators")),
        Constant("LEARN_USE_CORRECT_ALWAYS", int(learning.correct_rule == "always")),
        Constant("LEARN_HIDDEN_SPIKE_TARGET", learning.hidden_spike_target, unsigned=True),
        Constant("LEARN_MIX_MUL_1", MIX_MUL_1, unsigned=True, hex=True),
        Constant("LEARN_MIX_MUL_2", MIX_MUL_2, unsigned=True, hex=True),
        Constant("LEARN_INDEX_MUL", INDEX_MUL, unsigned=True, hex=True),
        Constant("LEARN_SAMPLE_SALT", SAMPLE_SALT, unsigned=True, hex=True),
    ]
    field_macros = [f"(uint32_t){PREFIX}LEARN_{f.name.upper()}" for f in dataclasses.fields(LearningConfig)]
    _require_defined(field_macros, consts, "learning_constants")
    consts.append(Constant("LEARN_SPEC_VALUES", "{ " + ", ".join(field_macros) + " }"))
    return consts


def stream_constants(spec: DatapathConfig | None = None) -> list[Constant]:
    """Layout of the upload stream (docs/weight-image.md) and ``PCL_STREAM_SPEC_VALUES`` (C only):
    each header field, in stream order, paired with the compiled spec's ``PCL_<FIELD>`` code, so
    that the board compares an image's header against it."""
    field_macros = [f"{PREFIX}{name.upper()}" for name in UPLOAD_SPEC_FIELDS]
    _require_defined(field_macros, datapath_constants(spec or DatapathConfig()), "stream_constants")
    spec_offset = len(UPLOAD_MAGIC) + 4
    return [
        *(Constant(f"STREAM_MAGIC_{i}", b) for i, b in enumerate(UPLOAD_MAGIC)),
        Constant("STREAM_VERSION", UPLOAD_STREAM_VERSION),
        Constant("STREAM_VERSION_OFFSET", len(UPLOAD_MAGIC)),
        Constant("STREAM_SPEC_OFFSET", spec_offset),
        Constant("STREAM_N_SPEC_FIELDS", len(UPLOAD_SPEC_FIELDS)),
        Constant("STREAM_N_LAYERS_OFFSET", spec_offset + 4 * len(UPLOAD_SPEC_FIELDS)),
        Constant("STREAM_HEADER_BYTES", UPLOAD_HEADER_BYTES),
        Constant("STREAM_LAYER_HEADER_BYTES", UPLOAD_LAYER_HEADER_BYTES),
        Constant("STREAM_SPEC_VALUES", "{ " + ", ".join(field_macros) + " }"),
    ]


def _require_defined(macros: Iterable[str], consts: Sequence[Constant], where: str) -> None:
    defined = {PREFIX + c.name for c in consts}
    missing = [m for m in macros if m.replace("(uint32_t)", "") not in defined]
    if missing:
        raise RuntimeError(f"{where}: {missing} are not among the generated constants")


# ----------------------------------------------------------------------------------------------
# Rendering


def _c_value(c: Constant) -> str:
    v = c.value
    if isinstance(v, str):
        return v
    if isinstance(v, tuple):
        return "{ " + ", ".join(str(int(x)) for x in v) + " }"
    if c.unsigned:
        return f"0x{v:08X}u" if c.hex else f"{v}u"
    if v == _INT32_MIN:  # -2**31 is not a literal in C: spell it (-MAX - 1)
        return f"({v + 1} - 1)"
    return f"({v})" if v < 0 else str(v)


def _guard(file_name: str) -> str:
    return PREFIX + re.sub(r"[^A-Z0-9]", "_", Path(file_name).name.upper())


def c_header(file_name: str, constants: Iterable[Constant], *, source: str) -> str:
    """A C header of ``#define PCL_<NAME>`` lines with an include guard named after the file."""
    guard = _guard(file_name)
    lines = [f"/* {file_name}: generated from {source}; do not edit. */", f"#ifndef {guard}", f"#define {guard}", ""]
    lines += [f"#define {PREFIX}{c.name} {_c_value(c)}" for c in constants]
    lines += ["", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def _verilog_line(c: Constant) -> str:
    v = c.value
    if isinstance(v, str):
        raise ValueError(f"{c.name}: a C expression has no Verilog form")
    if isinstance(v, tuple):
        fields = ", ".join(f"32'd{int(x)}" for x in reversed(v))
        return f"localparam [32*{len(v)}-1:0] {PREFIX}{c.name} = {{{fields}}};"
    if c.unsigned:
        text = f"32'h{v:08X}" if c.hex else f"32'd{v}"
        return f"localparam [31:0] {PREFIX}{c.name} = {text};"
    text = f"({v + 1} - 1)" if v == _INT32_MIN else str(v)  # -2**31 is no 32-bit integer literal
    return f"localparam integer {PREFIX}{c.name} = {text};"


def verilog_header(file_name: str, constants: Iterable[Constant], *, source: str) -> str:
    """``localparam`` lines, to be `` `include``d inside a module; C-only constants are left out."""
    lines = [f"// {file_name}: generated from {source}; do not edit."]
    lines += [_verilog_line(c) for c in constants if not isinstance(c.value, str)]
    return "\n".join(lines) + "\n"


def verilog_parameter_bindings(file_name: str, bindings: Iterable[tuple[str, str]], *, source: str) -> str:
    """The body of a ``#( ... )`` parameter list, ``.PARAM(PCL_NAME)`` per (parameter, constant)."""
    return (
        f"// {file_name}: generated from {source}; do not edit.\n"
        + ",\n".join(f"    .{param}({PREFIX}{name})" for param, name in bindings)
        + "\n"
    )


# ----------------------------------------------------------------------------------------------
# The spec headers every body builds with


def firmware_spec_headers(spec: DatapathConfig, learning: LearningConfig | None = None) -> dict[str, str]:
    """File name -> text of the spec headers of a firmware build (``pcl_learning.h`` with a rule)."""
    headers = {
        "pcl_datapath.h": c_header(
            "pcl_datapath.h", datapath_constants(spec), source="popcount_learn.datapath.DatapathConfig"
        ),
        "pcl_image_stream.h": c_header(
            "pcl_image_stream.h", stream_constants(spec), source="popcount_learn.weight_image (upload stream layout)"
        ),
    }
    if learning is not None:
        headers["pcl_learning.h"] = c_header(
            "pcl_learning.h", learning_constants(learning), source="popcount_learn.learning.LearningConfig"
        )
    return headers


def rtl_spec_headers(spec: DatapathConfig, learning: LearningConfig | None = None) -> dict[str, str]:
    """File name -> text of the spec headers of an RTL build: ``pcl_datapath.vh`` and
    ``pcl_learning.vh`` (the rule's constants; no constants for an inference-only build, whose
    sources include it all the same)."""
    source = "popcount_learn.learning.LearningConfig"
    return {
        "pcl_datapath.vh": verilog_header(
            "pcl_datapath.vh", datapath_constants(spec), source="popcount_learn.datapath.DatapathConfig"
        ),
        "pcl_learning.vh": (
            verilog_header("pcl_learning.vh", learning_constants(learning), source=source)
            if learning is not None
            else verilog_header("pcl_learning.vh", [], source=f"{source} (inference only: no rule)")
        ),
    }


def write_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds exactly that; True if written.

    An unchanged file keeps its timestamp (``make`` must not rebuild for nothing); a new one
    appears whole (a concurrent build never reads half a header).
    """
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def write_headers(directory: str | os.PathLike, headers: dict[str, str]) -> list[Path]:
    """``write_if_changed`` every header into ``directory`` (created if needed); their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in headers.items():
        write_if_changed(directory / name, text)
        paths.append(directory / name)
    return paths
