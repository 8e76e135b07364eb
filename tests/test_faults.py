"""Nothing lost, ever: real engines, real signals, injected faults (issue 5).

Every test starts real engine processes through the real `tuitune` CLI (so through
`tuitune.launcher`), on the 2-layer BERT, and checks the history afterwards. Faults come from
outside (kill -9, SIGHUP, SIGTERM, Ctrl-C) or, where no signal can produce them, from the engine's
test-only `TUITUNE_FAULTS` hook (a slow step, an out-of-memory error at step N).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import execute_run, tiny_config, tuitune_cmd
from helpers_faults import (cli, cli_json, engine_log, faults, steps, terminal_job_signals, values, wait_for, weights,
                            write_config)
from tuitune.history import History
from tuitune.launcher import checkpoints

MAX_STEPS = 16
SLOW = 0.2  # seconds per step while a test needs time to act


def compare_config(tiny_bert, tiny_csv, **training):
    t = {"max_steps": MAX_STEPS, "save_steps": 4, "eval_steps": 4, "save_total_limit": 2, "logging_steps": 1}
    t.update(training)
    return tiny_config(tiny_bert, tiny_csv, training=t)


@pytest.fixture(scope="module")
def uninterrupted(tiny_bert, tiny_csv, tmp_path_factory):
    """The reference: the same config and seed, trained start to finish without a fault."""
    home = tmp_path_factory.mktemp("reference-home")
    cfg = write_config(home, compare_config(tiny_bert, tiny_csv))
    code, out = cli_json("run", cfg, env={"TUITUNE_HOME": str(home)})
    assert code == 0 and out["status"] == "completed", out
    h = History(home / "history.db")
    # checkpoint every save_steps (and at the end), keeping save_total_limit of them
    saved = [e["message"] for e in h.events(out["id"]) if e["kind"] == "checkpoint"]
    assert saved == ["checkpoint-4", "checkpoint-8", "checkpoint-12", "checkpoint-16"]
    kept = {p.name for p in (Path(out["run_dir"]) / "checkpoints").iterdir()}
    # save_total_limit of them: the newest, and Trainer keeps the best by the main metric among them
    assert len(kept) == 2 and "checkpoint-16" in kept, kept
    ref = {
        "steps": steps(h, out["id"]),
        "loss": values(h, out["id"], "train/loss"),
        "lr": values(h, out["id"], "train/learning_rate"),
        "final": out["metrics"],
        "weights": weights(out["run_dir"]),
    }
    h.close()
    assert ref["steps"] == list(range(1, MAX_STEPS + 1))
    return ref


def assert_matches_reference(h, run_id: int, ref: dict) -> None:
    """Same steps (no gaps, no duplicates), same losses, LR schedule, final metrics and weights."""
    import torch

    assert steps(h, run_id) == ref["steps"]
    assert steps(h, run_id, "train/learning_rate") == ref["steps"]
    loss, lr = values(h, run_id, "train/loss"), values(h, run_id, "train/learning_rate")
    for s in ref["steps"]:
        assert loss[s] == pytest.approx(ref["loss"][s], rel=1e-4, abs=1e-5), f"loss at step {s}"
        assert lr[s] == pytest.approx(ref["lr"][s], rel=1e-6), f"learning rate at step {s}"
    final = [e for e in h.evaluations(run_id) if e["phase"] == "final"]
    assert len(final) == 1
    for k in ("eval_loss", "eval_accuracy", "eval_f1"):
        assert final[0]["metrics"][k] == pytest.approx(ref["final"][k], rel=1e-4, abs=1e-5), k
    run = h.get_run(run_id)
    got = weights(run["run_dir"])
    assert got.keys() == ref["weights"].keys()
    for name, w in ref["weights"].items():
        torch.testing.assert_close(got[name], w, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


def start_detached(cfg_path: Path, env: dict) -> int:
    code, out = cli_json("run", cfg_path, "--detach", env=env)
    assert code == 0, out
    return out["id"]


# -- kill -9 of the engine ------------------------------------------------------------------------

def test_kill9_engine_then_resume_matches_uninterrupted_run(tiny_bert, tiny_csv, tmp_path, uninterrupted):
    cfg = write_config(tmp_path, compare_config(tiny_bert, tiny_csv))
    run_id = start_detached(cfg, faults(step_sleep=SLOW))
    h = History()
    # the logged metrics (not the live step counter, which the heartbeat advances between logs)
    wait_for(lambda: max(steps(h, run_id) or [0]) >= 10 and any(p.name == "checkpoint-8" for p in checkpoints(run_id)),
             what="step 10 logged with checkpoint-8")
    pid = h.get_run(run_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    # whoever looks next (here: `tuitune show`) sees the crash at once (the pid is dead)
    run = wait_for(lambda: (r := cli_json("show", run_id)[1])["status"] == "crashed" and r, timeout=10,
                   what="crashed status")
    assert time.monotonic() - t0 < 5
    assert f"tuitune resume {run_id}" in run["error"]
    kept = steps(h, run_id)
    assert kept == list(range(1, len(kept) + 1)) and len(kept) >= 10, "metrics up to the last log are kept"

    code, out = cli_json("resume", run_id)  # without the slow-step fault
    assert code == 0 and out["status"] == "completed", out
    events = [e["kind"] for e in h.events(run_id)]
    assert "crashed" in events and "resume" in events
    assert_matches_reference(h, run_id, uninterrupted)
    h.close()


# -- the CLI that started the run dies: the run does not ---------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["sighup", "kill9"])
def test_run_survives_its_cli(tiny_bert, tiny_csv, tmp_path, sig):
    cfg = write_config(tmp_path, tiny_config(tiny_bert, tiny_csv, training={"max_steps": 10, "eval_steps": 5}))
    env = dict(os.environ, **faults(step_sleep=0.15))
    # `tuitune run` following its run, in its own session as if it were a terminal's shell job
    follower = subprocess.Popen(tuitune_cmd() + ["run", str(cfg)], env=env, start_new_session=True,
                                preexec_fn=terminal_job_signals,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    h = History()
    wait_for(lambda: h.list_runs() and h.list_runs()[0]["step"] >= 2, what="the run to train")
    run_id = h.list_runs()[0]["id"]
    os.killpg(follower.pid, sig)  # the terminal hangs up / the UI is killed
    assert follower.wait(timeout=10) != 0
    run = wait_for(lambda: (r := h.get_run(run_id))["status"] not in ("queued", "running") and r,
                   timeout=120, what="the run to end")
    assert run["status"] == "completed", run["error"]
    assert steps(h, run_id) == list(range(1, 11))
    h.close()


# -- graceful stop, then resume ---------------------------------------------------------------------

@pytest.mark.parametrize("how", ["tuitune-stop", "ctrl-c"])
def test_graceful_stop_checkpoints_then_resume_completes(tiny_bert, tiny_csv, tmp_path, uninterrupted, how):
    # save_steps beyond the run: the only checkpoint is the one the stop writes
    cfg = write_config(tmp_path, compare_config(tiny_bert, tiny_csv, save_steps=1000))
    env = faults(step_sleep=SLOW)
    h = History()
    if how == "tuitune-stop":
        run_id = start_detached(cfg, env)
        wait_for(lambda: h.get_run(run_id)["step"] >= 5, what="step 5")
        r = cli("stop", run_id)
        assert r.returncode == 0, r.stderr
        run = wait_for(lambda: (x := h.get_run(run_id))["status"] not in ("queued", "running") and x,
                       timeout=60, what="the run to stop")
    else:
        follower = subprocess.Popen(tuitune_cmd() + ["run", str(cfg)], env=dict(os.environ, **env),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        wait_for(lambda: h.list_runs() and h.list_runs()[0]["step"] >= 5, what="step 5")
        run_id = h.list_runs()[0]["id"]
        follower.send_signal(signal.SIGINT)  # Ctrl-C in `tuitune run`
        _, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, err
        assert "stopping run" in err
        run = h.get_run(run_id)
    assert run["status"] == "stopped", run["error"]
    assert f"tuitune resume {run_id}" in run["error"]
    ckpts = checkpoints(run_id)
    assert [p.name for p in ckpts] == [f"checkpoint-{run['step']}"], "the stop saved a checkpoint at its step"
    assert any(e["kind"] == "checkpoint" for e in h.events(run_id))
    assert 5 <= run["step"] < MAX_STEPS

    if how == "tuitune-stop":  # (resume is the same code path for both; once is enough)
        code, out = cli_json("resume", run_id)
        assert code == 0 and out["status"] == "completed", out
        assert_matches_reference(h, run_id, uninterrupted)
    h.close()


# -- out of memory -------------------------------------------------------------------------------------

def test_oom_fails_with_a_message_that_says_what_to_change(tiny_bert, tiny_csv, tmp_path):
    cfg = write_config(tmp_path, tiny_config(tiny_bert, tiny_csv, training={"max_steps": 6}))
    r = cli("run", cfg, env=faults(oom_at_step=3, oom_above_batch=4))
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    h = History()
    run = h.list_runs()[0]
    assert run["status"] == "failed"
    assert run["error"].startswith("out of memory: lower training.per_device_train_batch_size (now 8)")
    assert "auto_retry_oom" in run["error"]
    assert run["error"] in r.stdout
    assert steps(h, run["id"]) == [1, 2], "steps before the OOM are kept"
    h.close()


def test_oom_auto_retry_halves_the_batch_and_records_it(tiny_bert, tiny_csv, tmp_path):
    cfg = write_config(tmp_path, tiny_config(tiny_bert, tiny_csv, training={"max_steps": 6, "auto_retry_oom": True,
                                                                             "save_steps": 2}))
    code, out = cli_json("run", cfg, env=faults(oom_at_step=3, oom_above_batch=4))
    assert code == 0 and out["status"] == "completed", out
    h = History()
    run = h.get_run(out["id"])
    assert run["config"]["training"]["per_device_train_batch_size"] == 4
    assert run["config"]["training"]["gradient_accumulation_steps"] == 2
    retries = [e["message"] for e in h.events(out["id"]) if e["kind"] == "oom_retry"]
    assert retries == ["out of memory at batch 8: retrying with per_device_train_batch_size=4, "
                       "gradient_accumulation_steps=2"]
    assert steps(h, out["id"]) == list(range(1, 7)), "the failed attempt's steps are not duplicated"
    assert "per_device_train_batch_size: 4" in (Path(run["run_dir"]) / "config.yaml").read_text()
    assert [e["phase"] for e in h.evaluations(out["id"])].count("baseline") == 1
    h.close()


# -- security --------------------------------------------------------------------------------------------

def test_secrets_and_permissions(tiny_bert, tiny_csv, tmp_path, tuitune_home):
    token = "hf_" + "Q7xZ" * 9
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 2, "eval_steps": 2},
                      model={"trust_remote_code": True}, name=f"pasted {token} by mistake")
    code, out = cli_json("run", write_config(tmp_path, cfg), env={"HF_TOKEN": token})
    assert code == 0 and out["status"] == "completed", out
    h = History()
    warnings = [e["message"] for e in h.events(out["id"]) if e["kind"] == "warning"]
    assert any("trust_remote_code is on" in w for w in warnings)
    assert "trust_remote_code is on" in engine_log(h.get_run(out["id"]))
    h.close()
    # the token is nowhere under TUITUNE_HOME: history (+WAL), logs, configs, checkpoints, model
    for p in tuitune_home.rglob("*"):
        if p.is_file():
            assert token.encode() not in p.read_bytes(), p
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, f"{p} is {oct(mode)}: group/others must have no access"


def test_trust_remote_code_is_off_by_default(tiny_bert, tiny_csv, tmp_path):
    """A model folder that ships its own code: by default the run refuses it (the code never runs,
    one line says what to set); with model.trust_remote_code the same folder's code runs."""
    import json
    import shutil

    marker = tmp_path / "custom-code-ran"
    model = tmp_path / "custom-model"
    shutil.copytree(tiny_bert, model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="tuitune-custom-bert", architectures=["CustomBert"],
                  auto_map={"AutoConfig": "custom.CustomConfig",
                            "AutoModelForSequenceClassification": "custom.CustomBert"})
    (model / "config.json").write_text(json.dumps(config))
    (model / "custom.py").write_text(
        "from pathlib import Path\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "class CustomConfig(BertConfig):\n    model_type = 'tuitune-custom-bert'\n"
        "class CustomBert(BertForSequenceClassification):\n    config_class = CustomConfig\n")
    steps = {"max_steps": 2, "eval_steps": 2}
    run_id, code = execute_run(tiny_config(model, tiny_csv, training=steps))
    run = History().get_run(run_id)
    assert code == 1 and run["status"] == "failed"
    assert run["error"] == f"model {model} needs custom code: set model.trust_remote_code=true if you trust it"
    assert not marker.exists(), "the model's own code ran although trust_remote_code is off"

    run_id, code = execute_run(tiny_config(model, tiny_csv, training=steps, model={"trust_remote_code": True}))
    assert marker.exists()


@pytest.mark.parametrize("parts", [("..", "escape"), ("/etc/passwd",), ("a/../../b",), ("link", "x")])
def test_export_paths_cannot_escape_the_chosen_folder(tmp_path, parts):
    from tuitune.errors import TuituneError
    from tuitune.safety import inside

    base = tmp_path / "exports"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    with pytest.raises(TuituneError, match="leaves the folder"):
        inside(base, *parts)
    assert inside(base, "merged", "model") == (base / "merged" / "model").resolve()


# -- concurrency: two engines and readers at once ----------------------------------------------------

def test_two_engines_and_readers_share_the_history(tiny_bert, tiny_csv, tmp_path):
    import threading

    cfgs = [write_config(tmp_path, tiny_config(tiny_bert, tiny_csv, name=f"c{i}", training={
        "max_steps": 12, "eval_steps": 4, "seed": i}), f"c{i}.yaml") for i in range(2)]
    ids = [start_detached(c, faults(step_sleep=0.05)) for c in cfgs]
    errors: list[str] = []
    done = threading.Event()
    reads = [0]

    def reader():
        h = History()
        seen = {i: 0 for i in ids}
        try:
            while not done.is_set():
                h.list_runs()
                for i in ids:
                    rows = h.metrics(i, after_rowid=seen[i])
                    if rows:
                        seen[i] = rows[-1]["rowid"]
                    h.latest(i)
                    h.system(i)
                reads[0] += 1
                time.sleep(0.02)
        except Exception as err:  # noqa: BLE001 - every error is a failure of the test
            errors.append(repr(err))
        finally:
            h.close()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    cli_reads = []
    try:
        h = History()
        while any(h.get_run(i)["status"] in ("queued", "running") for i in ids):
            r = cli("runs", "--json")  # a third reader: the CLI
            cli_reads.append(r.returncode)
            if r.returncode:
                errors.append(r.stderr)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert reads[0] > 10 and cli_reads
    for i in ids:
        assert h.get_run(i)["status"] == "completed"
        assert steps(h, i) == list(range(1, 13))
    h.close()


def test_history_load_bench_short(tmp_path):
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "bench" / "history_load.py"), "--duration", "3",
                        "--db", str(tmp_path / "load.db")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    import re

    assert re.search(r"^errors\s+0$", r.stdout, re.M), r.stdout
    assert re.search(r"^rows missing\s+0$", r.stdout, re.M), r.stdout
