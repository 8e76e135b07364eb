"""System readings (CPU, RAM, and per GPU through NVML). Never raises: a missing value is None.

Used by the engine's sampler thread (written to the history ~1/s) and by the UI.
"""

from __future__ import annotations

import time
from typing import Any, Optional

_nvml_state: Optional[bool] = None  # None: not tried yet; False: no NVML here


def _nvml():
    global _nvml_state
    if _nvml_state is False:
        return None
    try:
        import pynvml

        if _nvml_state is None:
            pynvml.nvmlInit()
            _nvml_state = True
        return pynvml
    except Exception:  # NVMLError_LibraryNotFound, ImportError, driver errors: no GPU readings
        _nvml_state = False
        return None


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def gpu_readings() -> list[dict[str, Any]]:
    nv = _nvml()
    if nv is None:
        return []
    out = []
    count = _safe(nv.nvmlDeviceGetCount) or 0
    for i in range(count):
        h = _safe(nv.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            continue
        util = _safe(nv.nvmlDeviceGetUtilizationRates, h)
        mem = _safe(nv.nvmlDeviceGetMemoryInfo, h)
        power = _safe(nv.nvmlDeviceGetPowerUsage, h)
        name = _safe(nv.nvmlDeviceGetName, h)
        out.append({
            "index": i,
            "name": name.decode() if isinstance(name, bytes) else name,
            "util": getattr(util, "gpu", None),
            "mem_used": getattr(mem, "used", None),
            "mem_total": getattr(mem, "total", None),
            "temp": _safe(nv.nvmlDeviceGetTemperature, h, 0),
            "power_w": power / 1000.0 if power is not None else None,
        })
    return out


def sample() -> dict[str, Any]:
    """One reading. The first `cpu_percent` of a process is 0.0 (psutil): the sampler primes it."""
    out: dict[str, Any] = {"time": int(time.time() * 1000), "cpu_percent": None, "ram_used": None,
                           "ram_total": None, "gpus": gpu_readings()}
    try:
        import psutil

        out["cpu_percent"] = psutil.cpu_percent(interval=None)
        vm = psutil.virtual_memory()
        out["ram_used"], out["ram_total"] = vm.total - vm.available, vm.total
    except Exception:
        pass
    return out


def fmt(value: Any, unit: str = "") -> str:
    return "N/A" if value is None else f"{value}{unit}"
