"""Start, stop and resume engine processes. The only way runs are launched (CLI and UI alike).

The engine runs in a new process session with stdin closed and its output in
`runs/<id>/engine.log`, so a closed terminal, a dropped SSH connection or a killed UI never
stops it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

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


def _spawn(history: History, run_id: int, cfg: RunConfig, *, resume: bool = False,
           extra_env: Optional[dict[str, str]] = None) -> int:
    run_dir = paths.run_dir(run_id)
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ)
    env.update(extra_env or {})
    env["TUITUNE_HOME"] = str(paths.home())
    env.setdefault("PYTHONUNBUFFERED", "1")
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
