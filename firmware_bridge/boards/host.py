"""The host virtual board: the firmware built for this machine, serving a pseudo-terminal."""

from __future__ import annotations

import os
import subprocess
import tty
from pathlib import Path

STOP_TIMEOUT_S = 3.0


class VirtualBoard:
    """The host firmware as a child process whose stdin/stdout is the master side of a pty.

    ``port`` is the slave device (e.g. ``/dev/pts/5``), which any serial client can open. The
    launcher keeps the slave open itself, so clients may come and go; closing the board ends
    the process.
    """

    def __init__(self, executable: Path) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
            self.port = os.ttyname(slave)
            self._process = subprocess.Popen(
                [str(executable)], stdin=master, stdout=master, close_fds=True, start_new_session=True
            )
        except BaseException:
            os.close(slave)
            raise
        finally:
            os.close(master)  # the child holds its own copy
        self._slave = slave

    @property
    def pid(self) -> int:
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self._process.wait(timeout)

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None

    stop = close  # the name QEMU boards use

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
