"""What machine a benchmark ran on, for the lines it prints (shared by the tools/bench_* scripts)."""

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    return {"cpu": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version()}
