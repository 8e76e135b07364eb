"""Start, stop and resume engine processes. The only way runs are launched (CLI and UI alike).

The engine runs in a new process session with stdin closed and its output in
`runs/<id>/engine.log`, so a closed terminal, a dropped SSH connection or a killed UI never
stops it. `call_engine` runs the engine's short subcommands (predict, merge, compress,
export-model, compress-measure) to their end and reads their answer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from tuitune import paths
from tuitune.config import RunConfig, stored_config
from tuitune.errors import TuituneError
from tuitune.history import History, now_ms, pid_alive
from tuitune.records import RunRecord
from tuitune.safety import private_text, scrub


def engine_command(run_id: int, processes: int = 1, *, resume: bool = False,
                   launcher_args: Optional[list[str]] = None) -> list[str]:
    """The engine's command line: one process, or torchrun (DDP) for several processes or nodes."""
    tail = ["-m", "tuitune.engine", "run", str(run_id)] + (["--resume"] if resume else [])
    if processes > 1 or launcher_args:
        return [sys.executable, "-m", "torch.distributed.run", *(launcher_args or ["--standalone"]),
                f"--nproc_per_node={processes}", *tail]
    return [sys.executable, *tail]


def engine_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The engine's environment: ours, plus `extra`, with this history's home and unbuffered output."""
    env = dict(os.environ)
    env.update(extra or {})
    env["TUITUNE_HOME"] = str(paths.home())
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _spawn(history: History, run_id: int, cfg: RunConfig, *, resume: bool = False,
           extra_env: Optional[dict[str, str]] = None) -> int:
    run_dir = paths.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = engine_env(extra_env)
    if cfg.training.processes > 1:
        env.setdefault("OMP_NUM_THREADS", "1")
    log_fd = os.open(run_dir / "engine.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(log_fd, "ab") as log:
        proc = subprocess.Popen(
            engine_command(run_id, cfg.training.processes, resume=resume,
                           launcher_args=cfg.training.launcher_args),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=str(run_dir), close_fds=True,
        )
    history.update_run(run_id, pid=proc.pid, host=socket.gethostname())
    return proc.pid


# -- short engine subcommands ------------------------------------------------------------------------

# The last line of a Python traceback: `ValueError: ...`, `torch.OutOfMemoryError: ...`, `KeyboardInterrupt`.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b:?")
# What warnings print: `path.py:12: UserWarning: ...` and the source line echoed under it.
_WARNING_LINE = re.compile(r"^\S+:\d+: \w*Warning\b|^warnings\.warn\(|^(logger|logging)\.\w+\(")
ERROR_CHARS = 300


def failure_line(returncode: int, stderr: str) -> str:
    """One line saying why an engine process gave no answer: the exception its traceback ends with,
    else the signal that killed it, else its last stderr line that is not a warning."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    exceptions = [ln for ln in lines if _EXCEPTION_LINE.match(ln)]
    if exceptions:
        why = exceptions[-1]
    elif returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = f"killed by {name}" + (" (out of memory?)" if returncode == -signal.SIGKILL else "")
    else:
        plain = [ln for ln in lines if not _WARNING_LINE.search(ln)]
        why = (plain or lines or [f"exit status {returncode} and no output"])[-1]
    return why if len(why) <= ERROR_CHARS else why[:ERROR_CHARS - 1] + "…"


def call_engine(args: list[str], *, error_prefix: str = "engine failed",
                on_progress: Optional[Callable[[str], None]] = None, cwd: Optional[str] = None) -> dict[str, Any]:
    """Run `python -m tuitune.engine ARGS` to its end and return the last JSON object it printed.

    The engine starts as runs do (`engine_env`, its own process session, stdin closed), in the
    caller's folder (`cwd`: relative paths in ARGS stay relative to it). JSON lines holding
    `progress` go to `on_progress`. Failures become a one-line `TuituneError`: the engine's own
    `{"error": ...}` line as it is, otherwise `ERROR_PREFIX: ` + `failure_line` (the traceback's
    exception, a killing signal, the last stderr line). Interrupted here (Ctrl-C, or an exception
    from `on_progress`), the engine gets SIGINT, so it unwinds and removes its temporary files; it
    is killed if it has not ended 30 s later, and the interruption goes on up.
    """
    env = engine_env()
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    last: Optional[dict[str, Any]] = None
    # stderr to a file, not a pipe: a chatty engine (a warning per layer) cannot fill a pipe and stall
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tuitune.engine", *args], stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd,
                                start_new_session=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                msg = _json_object(line)
                if msg is None:
                    continue
                if "progress" in msg:
                    if on_progress is not None:
                        on_progress(str(msg["progress"]))
                else:
                    last = msg
            proc.wait()
        except BaseException:
            _interrupt(proc)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        err.seek(0)
        stderr = err.read()
    if last is None:
        raise TuituneError(f"{error_prefix}: {failure_line(proc.returncode, stderr)}")
    if "error" in last:
        raise TuituneError(str(last["error"]))
    return last


def _json_object(line: str) -> Optional[dict[str, Any]]:
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except ValueError:  # a library printing a dict's repr, not ours
        return None
    return msg if isinstance(msg, dict) else None


def _interrupt(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except BaseException:  # a second Ctrl-C: no more waiting
        proc.kill()
        proc.wait()
        raise


def start_run(history: History, cfg: RunConfig, *, env: Optional[dict[str, str]] = None,
              fields: Optional[dict] = None) -> int:
    """Record a queued run, write its config, and start its engine. Returns the run id.
    `fields` go on the run row before the engine starts (a sweep's trial link); `env` is added to
    the engine's environment (e.g. CUDA_VISIBLE_DEVICES)."""
    run_id = history.create_run(cfg.model_dump(mode="json"), run_dir_for=paths.run_dir)
    if fields:
        history.update_run(run_id, **fields)
    run_dir = paths.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_text(run_dir / "config.yaml", scrub(cfg.to_yaml()))
    _spawn(history, run_id, cfg, extra_env=env)
    return run_id


def stop_run(history: History, run_id: int) -> RunRecord:
    """Ask a live run to stop gracefully: it checkpoints and ends as `stopped`."""
    run = history.get_run(run_id)
    if not run.live:
        raise TuituneError(f"run {run_id} is not live (status {run.status}): nothing to stop")
    history.request_stop(run_id)
    if run.host == socket.gethostname() and run.pid and pid_alive(run.pid):
        try:
            os.kill(run.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return run


def resume_run(history: History, run_id: int) -> int:
    """Continue a stopped, crashed or failed run from its last checkpoint, in the same run; a run
    that crashed before its first checkpoint starts again from step 0 (same id, events kept)."""
    run = history.get_run(run_id)
    if run.live:
        raise TuituneError(f"run {run_id} is still {run.status}: nothing to resume")
    if run.status == "completed":
        raise TuituneError(f"run {run_id} has completed: clone its config to train further")
    ckpts = checkpoints(run_id, Path(run.run_dir) if run.run_dir else None)
    if not ckpts and run.status != "crashed":
        raise TuituneError(f"run {run_id} has no checkpoint to resume from: start it again with `tuitune run`")
    cfg = stored_config(run.config)
    # pid=None and a fresh heartbeat: a reader looking before the new engine starts must not
    # take the old, dead pid (or an old timestamp) as a fresh crash
    history.update_run(run_id, status="queued", error=None, ended_at=None, stop_requested=0,
                       pid=None, heartbeat_at=now_ms())
    if ckpts:
        history.log_event(run_id, "resume", f"from {ckpts[-1].name}")
    else:  # killed before its first checkpoint: the same run trains again from step 0
        history.log_event(run_id, "resume", "no checkpoint yet: restarting from step 0 in this run "
                                            "(its steps so far are trained again)")
    return _spawn(history, run_id, cfg, resume=True)


def checkpoints(run_id: int, run_dir: Optional[Path] = None) -> list[Path]:
    """Complete checkpoints, oldest first. Trainer writes trainer_state.json last, so a folder
    without it was cut short (kill -9 or a full disk mid-save) and cannot be resumed from."""
    d = Path(run_dir or paths.run_dir(run_id)) / "checkpoints"
    found = [p for p in d.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def wait_pid(pid: Optional[int]) -> None:
    """Reap a child we started (so it does not linger as a zombie)."""
    if not pid:
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def delete_run(history: History, run_id: int) -> None:
    """Delete a finished run: its history rows (one transaction; live runs are refused), then its
    folder — only ever a folder inside our runs folder, whatever the history row says."""
    import shutil

    from tuitune.safety import inside

    run = history.get_run(run_id)
    root = paths.runs_dir().resolve()
    run_dir = inside(root, Path(run.run_dir).name) if run.run_dir else None
    history.delete_run(run_id)
    if run_dir is not None and run_dir != root and run_dir.exists():
        shutil.rmtree(run_dir, ignore_errors=True)
