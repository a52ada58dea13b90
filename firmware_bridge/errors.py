"""Errors of the board bridge and the RTL; all are PopcountLearnError (the CLI prints one line)."""

from popcount_learn.errors import PopcountLearnError


class BoardError(PopcountLearnError):
    """Base class of every fault talking to a board."""


class BoardConnectionError(BoardError):
    """The port cannot be opened, or it went away."""


class BoardTimeout(BoardError):
    """No valid reply to a request after every retry."""


class BoardProtocolError(BoardError):
    """A reply that is well framed but not what the request calls for (wrong type, bad layout)."""


class BoardRefused(BoardError):
    """The board answered with an error code (``code``: protocol.ErrorCode, ``a``/``b`` details)."""

    def __init__(self, message: str, code: int, a: int = 0, b: int = 0) -> None:
        super().__init__(message)
        self.code, self.a, self.b = code, a, b


class ImageRejected(BoardRefused):
    """The board refused a weight image (size, CRC, format, spec mismatch, capacity)."""


class FirmwareBuildError(BoardError):
    """The firmware could not be built (compiler missing, compile error)."""


class BoardToolError(BoardError):
    """A tool a virtual board needs (QEMU, the cross compiler) is missing or failed to start."""


class RtlError(PopcountLearnError):
    """Base class of every fault simulating the RTL."""


class RtlToolsMissing(RtlError):
    """The RTL simulation needs Icarus Verilog (``iverilog``/``vvp``) and cocotb >= 2, and one is absent."""


class RtlSimulationError(RtlError):
    """The RTL simulation did not finish (build error, timeout, harness protocol error)."""
