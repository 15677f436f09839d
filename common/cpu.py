"""What CPU a number was measured on: its model name and whether it has AVX-512 (training runs
~2.2x slower without it on the project's machines)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> dict:
    """`{"cpu": model name, "avx512": bool}`, from /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu": platform.processor() or "unknown", "avx512": None}
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    return {"cpu": names[0] if names else "unknown", "avx512": "avx512" in info}
