"""Long runs you can leave alone (issue 10): the divergence watchdog, checkpoints by wall time,
resume from step 0 after a crash before any checkpoint, end-of-run notifications, report_to.

Real engines on the 2-layer BERT: in this process (`execute_run`, the engine's own `Run`) where no
signal is needed, through the real CLI where a process must die. Notifications are read from a
real pseudo-terminal, as a terminal emulator would receive them.
"""

from __future__ import annotations

import json
import math
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import execute_run, tiny_config, tuitune_cmd
from helpers_faults import cli, cli_json, faults, steps, values, wait_for, write_config
from tuitune.history import History
from tuitune.launcher import checkpoints

OSC9, OSC777, BEL = "\x1b]9;", "\x1b]777;notify;", "\a"


def _finite_checkpoint(path: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    w = load_file(str(path / "model.safetensors"))
    assert all(bool(torch.isfinite(t).all()) for t in w.values() if t.is_floating_point()), path
    return w


# -- the divergence watchdog --------------------------------------------------------------------

def test_watchdog_stops_a_diverging_run_and_keeps_a_checkpoint_from_before(tiny_bert, tiny_csv):
    # a huge learning rate (reached after a short warmup): the loss climbs far above its best
    cfg = tiny_config(tiny_bert, tiny_csv, evaluation={"baseline": False}, training={
        "max_steps": 30, "learning_rate": 0.9, "warmup_steps": 10, "lr_scheduler_type": "constant_with_warmup",
        "save_steps": 2, "eval_steps": 100, "logging_steps": 1, "save_total_limit": 1})
    run_id, code = execute_run(cfg)
    h = History()
    run = h.get_run(run_id)
    assert code == 1 and run["status"] == "failed"
    err = run["error"]
    assert err.startswith("stopped by the watchdog: training loss diverged") and "\n" not in err, err
    assert "lower training.learning_rate" in err
    diverged = [e for e in h.events(run_id) if e["kind"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["step"] < 30, "stopped early, not at the end"
    loss = values(h, run_id, "train/loss")
    assert max(loss) == diverged[0]["step"], "training stopped at the step it diverged"
    first_blowup = min(s for s, v in loss.items() if v > 3 * loss[1])
    kept = checkpoints(run_id)
    assert len(kept) == 1, kept
    step = int(kept[0].name.split("-")[1])
    assert step < first_blowup, f"checkpoint-{step} is from after the loss blew up at step {first_blowup}"
    assert kept[0].name in err
    # usable: finite weights that load as the classifier and give finite outputs
    _finite_checkpoint(kept[0])
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(kept[0])).eval()
    tok = AutoTokenizer.from_pretrained(str(kept[0]))
    with torch.no_grad():
        logits = model(**tok(["the film was great"], return_tensors="pt")).logits
    assert torch.isfinite(logits).all() and logits.shape == (1, 3)
    h.close()


@pytest.mark.parametrize("training, expect", [
    ({"logging_steps": 1, "save_steps": 2}, "training loss became nan at step 5"),
    # not logged at the save step: the weights themselves are checked before a checkpoint
    ({"logging_steps": 4, "save_steps": 3}, "trainable weights became NaN/Inf by step 6"),
], ids=["nan-loss", "nan-weights-at-save"])
def test_nan_stops_the_run_without_saving_nan_weights(tiny_bert, tiny_csv, training, expect):
    cfg = tiny_config(tiny_bert, tiny_csv, evaluation={"baseline": False},
                      training={"max_steps": 12, "eval_steps": 100, "save_total_limit": 1, **training})
    os.environ.update(faults(nan_at_step=5))
    try:
        run_id, code = execute_run(cfg)
    finally:
        del os.environ["TUITUNE_FAULTS"]
    h = History()
    run = h.get_run(run_id)
    assert code == 1 and run["status"] == "failed", run["error"]
    assert expect in run["error"] and "\n" not in run["error"], run["error"]
    kept = checkpoints(run_id)
    assert [p.name for p in kept] == [f"checkpoint-{4 if training['save_steps'] == 2 else 3}"]
    _finite_checkpoint(kept[0])
    h.close()


def test_loss_watch_tells_spikes_and_wobbles_from_divergence():
    from tuitune.engine.watchdog import LossWatch

    w = LossWatch(factor=3.0, margin=1.0, patience=3)
    for i, v in enumerate([2.0, 1.5, 1.0, 0.8, 0.7, 0.6] + [5.0, 4.0] + [0.6] * 5, 1):  # a two-log spike
        assert w.see(v, i) is None
    tiny = LossWatch()
    for i, v in enumerate([0.5, 0.05, 0.01, 0.01, 0.01, 0.3, 0.4, 0.35, 0.02], 1):  # 30x but +0.4: noise
        assert tiny.see(v, i) is None
    bad = LossWatch()
    reasons = [bad.see(v, i) for i, v in enumerate([1.1, 1.0, 0.9, 0.9, 4.0, 5.0, 6.0], 1)]
    assert reasons[:6] == [None] * 6 and reasons[6].startswith("training loss diverged: 6 at step 7")
    assert LossWatch().see(math.inf, 3) == "training loss became inf at step 3"


def test_watchdog_settings_validate_and_can_be_turned_off(tiny_bert, tiny_csv):
    from tuitune.config import validate_config
    from tuitune.errors import TuituneError

    cfg = validate_config(tiny_config(tiny_bert, tiny_csv))
    assert cfg.watchdog.enabled and cfg.training.checkpoint_every_minutes == 30 and cfg.training.report_to == []
    off = validate_config(tiny_config(tiny_bert, tiny_csv, watchdog={"enabled": False},
                                      training={"report_to": "tensorboard", "checkpoint_every_minutes": 0}))
    assert not off.watchdog.enabled and off.training.report_to == ["tensorboard"]
    with pytest.raises(TuituneError, match=r"watchdog.loss_factor: must be greater than 1"):
        validate_config(tiny_config(tiny_bert, tiny_csv, watchdog={"loss_factor": 0.5}))
    with pytest.raises(TuituneError, match=r"training.report_to.0: must be one of 'tensorboard', 'mlflow' or 'wandb'"):
        validate_config(tiny_config(tiny_bert, tiny_csv, training={"report_to": ["tensorbored"]}))


# -- checkpoints by wall time; resume from step 0 ---------------------------------------------------

def _kill_and_see_crash(h, run_id: int) -> dict:
    os.kill(h.get_run(run_id)["pid"], signal.SIGKILL)
    return wait_for(lambda: (r := h.get_run(run_id))["status"] == "crashed" and r, timeout=10, what="crashed")


def test_kill9_after_a_time_checkpoint_resumes_from_it(tiny_bert, tiny_csv, tmp_path):
    # step checkpoints every 1000 steps (never, in 16): only the wall clock (every ~0.5 s) saves
    cfg = write_config(tmp_path, tiny_config(tiny_bert, tiny_csv, evaluation={"baseline": False}, training={
        "max_steps": 16, "save_steps": 1000, "eval_steps": 1000, "checkpoint_every_minutes": 0.008,
        "save_total_limit": 1}))
    code, out = cli_json("run", cfg, "--detach", env=faults(step_sleep=0.2))
    assert code == 0, out
    run_id = out["id"]
    h = History()
    wait_for(lambda: checkpoints(run_id) and max(steps(h, run_id) or [0]) > int(checkpoints(run_id)[-1].name[11:]),
             what="a time checkpoint, then a step past it")
    _kill_and_see_crash(h, run_id)
    killed_at = time.time() * 1000
    ckpt = checkpoints(run_id)[-1]
    saved = int(ckpt.name.split("-")[1])
    assert 1 <= saved < 16
    before = {m["step"]: m["time"] for m in h.metrics(run_id, "train/loss")}
    code, out = cli_json("resume", run_id)
    assert code == 0 and out["status"] == "completed", out
    resumed = [e["message"] for e in h.events(run_id) if e["kind"] == "resume"]
    assert resumed == [f"from {ckpt.name}"]
    rows = {m["step"]: m["time"] for m in h.metrics(run_id, "train/loss")}
    assert sorted(rows) == list(range(1, 17)), "every step once"
    # the steps up to the time checkpoint were not trained again; the ones after it were
    assert all(rows[s] == before[s] for s in range(1, saved + 1))
    assert all(rows[s] > killed_at for s in range(saved + 1, 17))
    h.close()


def test_kill9_before_any_checkpoint_restarts_from_step_0_on_resume(tiny_bert, tiny_csv, tmp_path):
    cfg = write_config(tmp_path, tiny_config(tiny_bert, tiny_csv, training={
        "max_steps": 8, "save_steps": 1000, "eval_steps": 4, "checkpoint_every_minutes": 0}))
    code, out = cli_json("run", cfg, "--detach", env=faults(step_sleep=0.3))
    assert code == 0, out
    run_id = out["id"]
    h = History()
    wait_for(lambda: max(steps(h, run_id) or [0]) >= 3, what="step 3")
    _kill_and_see_crash(h, run_id)
    assert not checkpoints(run_id)
    code, out = cli_json("resume", run_id)
    assert code == 0 and out["status"] == "completed", out
    assert out["id"] == run_id
    kinds = [(e["kind"], e["message"]) for e in h.events(run_id)]
    assert ("crashed", "engine process is gone") in kinds
    assert ("resume", "no checkpoint yet: restarting from step 0 in this run (its steps so far are trained "
                      "again)") in kinds
    assert steps(h, run_id) == list(range(1, 9)), "each step once, the first attempt's replaced"
    assert [e["phase"] for e in h.evaluations(run_id)] == ["baseline", "eval", "eval", "final"]
    h.close()


# -- notifications ------------------------------------------------------------------------------------

def _pty_run(argv: list[str], env: dict, until, *, timeout: float = 60, on_start=None) -> str:
    """Run argv on a real 80x24 pseudo-terminal; return everything it wrote once `until(text)` holds
    (or it exits). `on_start(text)` is called with the output so far until it returns True."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=dict(os.environ, TERM="xterm-256color",
                            **env), start_new_session=True, close_fds=True)
    os.close(slave)
    out = b""
    started = on_start is None
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            text = out.decode("utf-8", "replace")
            if not started:
                started = bool(on_start(text))
            elif until(text):
                break
            if proc.poll() is not None and not r:
                break
        else:
            raise AssertionError(f"timed out; output so far: {out[-2000:]!r}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        os.close(master)
    return out.decode("utf-8", "replace")


def _live_run(tiny_bert, tiny_csv, name: str) -> int:
    """A run row as the engine leaves it while training (this process stands in for the engine)."""
    from tuitune import paths
    from tuitune.config import validate_config

    h = History()
    run_id = h.create_run(validate_config(tiny_config(tiny_bert, tiny_csv, name=name)).model_dump(mode="json"),
                          run_dir_for=paths.run_dir)
    h.update_run(run_id, pid=os.getpid(), max_steps=10, main_metric="accuracy")
    h.set_status(run_id, "running")
    h.close()
    return run_id


def _end(run_id: int) -> None:
    h = History()
    h.update_run(run_id, main_value=0.875)
    h.set_status(run_id, "completed")  # what the engine does last
    h.close()


@pytest.mark.parametrize("off", [None, "--no-notify", "TUITUNE_NOTIFY=0"])
def test_cli_follow_notifies_when_the_run_ends(tiny_bert, tiny_csv, off):
    run_id = _live_run(tiny_bert, tiny_csv, "longone")
    argv = tuitune_cmd() + ["follow", str(run_id)] + ([off] if off == "--no-notify" else [])
    env = {"TUITUNE_NOTIFY": "0"} if off == "TUITUNE_NOTIFY=0" else {}
    out = _pty_run(argv, env, until=lambda t: "model saved in" in t,
                   on_start=lambda t: f"run {run_id} running" in t and (_end(run_id) or True))
    assert f"run {run_id} completed" in out
    note = f"run {run_id} (longone) completed: accuracy 0.875"
    if off:
        assert OSC9 not in out and OSC777 not in out and BEL not in out
    else:
        assert f"{OSC9}tuitune: {note}\x07" in out
        assert f"{OSC777}tuitune;{note}\x07" in out
        assert BEL in out


def test_follow_a_finished_run_says_so_in_one_line(tiny_bert, tiny_csv):
    run_id = _live_run(tiny_bert, tiny_csv, "done")
    _end(run_id)
    r = cli("follow", run_id)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"tuitune: error: run {run_id} is completed, not live: "
                                f"`tuitune show {run_id}` shows how it ended")


def test_notifications_are_not_written_to_a_pipe_or_file(tiny_bert, tiny_csv):
    run_id = _live_run(tiny_bert, tiny_csv, "piped")
    proc = subprocess.Popen(tuitune_cmd() + ["follow", str(run_id)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # the follower's first progress line: it is following
    assert first.startswith(f"run {run_id} running"), first
    _end(run_id)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and f"run {run_id} completed" in out, err
    assert "\x1b]" not in first + out + err and BEL not in first + out + err


UI_SCRIPT = r"""
import asyncio, sys
from tuitune.app import make_app
from tuitune.screens.monitor import MonitorScreen

async def watch(pilot):
    await pilot.app.push_screen(MonitorScreen(int(sys.argv[1])))
    await asyncio.sleep(3600)

make_app(poll_s=0.2).run(auto_pilot=watch)
"""


@pytest.mark.parametrize("off", [False, True], ids=["on", "off"])
def test_ui_notifies_when_the_watched_run_ends(tiny_bert, tiny_csv, off):
    run_id = _live_run(tiny_bert, tiny_csv, "watched")
    env = {"TUITUNE_NOTIFY": "0"} if off else {}
    toast = f"run {run_id} (watched) completed"  # the in-app toast shows either way
    out = _pty_run([sys.executable, "-c", UI_SCRIPT, str(run_id)], env, until=lambda t: toast in t and (
        off or OSC777 in t), on_start=lambda t: "· running" in t and (_end(run_id) or True))
    if off:
        assert OSC777 not in out and OSC9 not in out
    else:
        assert f"{OSC777}tuitune;{toast}: accuracy 0.875\x07" in out
        assert f"{OSC9}tuitune: {toast}: accuracy 0.875\x07" in out


def test_notification_text_is_sanitised_and_wrapped_for_tmux():
    from tuitune.notify import sequences

    s = sequences("tui;tune", "line\nbreak;\x1b]0;evil\x07", tmux=False)
    assert s == "\a\x1b]9;tui,tune: line break, ]0,evil\x07\x1b]777;notify;tui,tune;line break, ]0,evil\x07"
    t = sequences("t", "b", tmux=True)
    assert t.startswith("\a\x1bPtmux;\x1b\x1b]9;t: b\x07\x1b\\")


# -- report_to ------------------------------------------------------------------------------------------

def test_report_to_tensorboard_writes_event_files_tensorboard_reads(tiny_bert, tiny_csv):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tiny_bert, tiny_csv, evaluation={"baseline": False},
                      training={"max_steps": 4, "eval_steps": 2, "report_to": "tensorboard"})
    run_id, code = execute_run(cfg)
    h = History()
    run = h.get_run(run_id)
    assert code == 0, run["error"]
    logdir = Path(run["run_dir"]) / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "eval/loss" in tags and "eval/accuracy" in tags, tags
    tb = {e.step: e.value for e in acc.Scalars("train/loss")}
    ours = values(h, run_id, "train/loss")
    assert sorted(tb) == sorted(ours) == [1, 2, 3, 4]
    for s, v in ours.items():
        assert tb[s] == pytest.approx(v, rel=1e-5)
    assert {e.step for e in acc.Scalars("eval/accuracy")} == {2, 4}
    h.close()


def test_report_to_a_missing_package_fails_in_one_line(tiny_bert, tiny_csv):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 2, "report_to": ["wandb"]})
    run_id, code = execute_run(cfg)
    h = History()
    err = h.get_run(run_id)["error"]
    assert code == 1 and err == ("training.report_to has wandb but the wandb package is not installed: "
                                 "pip install wandb, or remove wandb from training.report_to")
    h.close()
