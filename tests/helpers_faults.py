"""Helpers shared by the fault-injection and bad-input tests: the real CLI, the real engine, waits."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import yaml

from conftest import tuitune_cmd


def write_config(folder: Path, cfg: dict, name: str = "run.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return p


def cli(*args: str, env: Optional[dict] = None, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """The real `tuitune` entry point, with extra environment variables."""
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(tuitune_cmd() + [str(a) for a in args], capture_output=True, text=True,
                          env=full, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def cli_json(*args: str, env: Optional[dict] = None, timeout: float = 180) -> tuple[int, dict]:
    r = cli(*args, "--json", env=env, timeout=timeout)
    lines = r.stdout.strip()
    try:
        return r.returncode, json.loads(lines) if lines else {}
    except ValueError:
        raise AssertionError(f"not JSON (exit {r.returncode}): {r.stdout[-1500:]} {r.stderr[-1500:]}")


def faults(**spec) -> dict:
    """The environment that turns on the engine's test-only fault injection."""
    return {"TUITUNE_FAULTS": json.dumps(spec)}


def wait_for(pred: Callable[[], object], timeout: float = 90, every: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def steps(h, run_id: int, key: str = "train/loss") -> list[int]:
    return [m["step"] for m in h.metrics(run_id, key)]


def values(h, run_id: int, key: str) -> dict[int, float]:
    return {m["step"]: m["value"] for m in h.metrics(run_id, key)}


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "model" / "model.safetensors"))


def engine_log(run: dict) -> str:
    p = Path(run["run_dir"]) / "engine.log"
    return p.read_text(errors="replace") if p.exists() else ""


def terminal_job_signals() -> None:
    """preexec_fn for a process standing in for a terminal's job (a UI or a following CLI): the
    default action for SIGHUP, as a shell gives its jobs, even when whatever runs the tests (a CI
    runner, nohup) ignores SIGHUP — an ignored signal is inherited across exec."""
    import signal

    signal.signal(signal.SIGHUP, signal.SIG_DFL)
