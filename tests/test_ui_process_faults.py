"""A run launched from the terminal UI outlives the UI process: hung up (SIGHUP, a dropped SSH
connection) or killed (kill -9), the UI process dies and the run trains on to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from conftest import tiny_config
from helpers_faults import faults, steps, terminal_job_signals, wait_for
from tuitune.history import History

UI_SCRIPT = r"""
import asyncio, sys, yaml
from tuitune.app import make_app

config = yaml.safe_load(open(sys.argv[1]))
app = make_app()

async def main():
    async with app.run_test(size=(80, 24)) as pilot:
        run_id = app.store.launch(config)   # what the wizard's launch key does
        print(run_id, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["sighup", "kill9"])
def test_run_survives_the_ui_process(tiny_bert, tiny_csv, tmp_path, sig):
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 10, "eval_steps": 5})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, **faults(step_sleep=0.15))
    # the UI in its own session, as the shell job of a terminal that is about to go away
    # (with SIGHUP's default action, as in a terminal, even where this test's runner ignores it)
    ui = subprocess.Popen([sys.executable, "-c", UI_SCRIPT, str(path)], env=env, start_new_session=True,
                          preexec_fn=terminal_job_signals, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    try:
        run_id = int(ui.stdout.readline())
        h = History()
        wait_for(lambda: max(steps(h, run_id) or [0]) >= 2, what="the run to train")
        os.killpg(ui.pid, sig)
        assert ui.wait(timeout=10) != 0  # the UI is gone
    finally:
        if ui.poll() is None:  # never leave a stray UI behind a failed assertion
            ui.kill()
            ui.wait()
    run = wait_for(lambda: (r := h.get_run(run_id))["status"] not in ("queued", "running") and r,
                   timeout=120, what="the run to end")
    assert run["status"] == "completed", run["error"]
    assert steps(h, run_id) == list(range(1, 11))
    h.close()
