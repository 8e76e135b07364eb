"""Two processes (torchrun, DDP over gloo on the CPU) reach the same loss as one process.

Each step sees the whole (16-row) training set: one process with batch 16, or two with batch 8
each, averaging the same gradient. On a model without dropout the losses then agree closely
whatever order the samplers pick. Only rank 0
writes the history.
"""

from __future__ import annotations

import math
import time

import pytest
from conftest import run_in_process, tiny_config


@pytest.fixture(scope="module")
def tiny_bert_no_dropout(tmp_path_factory, tiny_bert):
    import json
    import shutil

    out = tmp_path_factory.mktemp("tiny-bert-nodrop")
    shutil.copytree(tiny_bert, out, dirs_exist_ok=True)
    config = json.loads((out / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (out / "config.json").write_text(json.dumps(config))
    return out


def wait(run_id: int, timeout_s: float = 240) -> dict:
    from tuitune.history import History

    h = History()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = h.get_run(run_id)
        if run["status"] in ("completed", "failed", "crashed", "stopped"):
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} still {h.get_run(run_id)['status']} after {timeout_s} s")


def final_losses(run_id: int) -> tuple[float, float]:
    from tuitune.history import History

    h = History()
    train = [m["value"] for m in h.metrics(run_id, "train/loss")]
    final = h.evaluations(run_id, "final")[-1]["metrics"]["eval_loss"]
    return train[-1], final


def test_two_processes_match_one(tiny_bert_no_dropout, tiny_csv):
    from tuitune import launcher, paths
    from tuitune.config import validate_config
    from tuitune.history import History

    def config(processes: int, batch: int) -> dict:
        cfg = tiny_config(tiny_bert_no_dropout, tiny_csv)
        cfg["data"].update(max_train_samples=16, max_eval_samples=16)
        cfg["training"].update(processes=processes, per_device_train_batch_size=batch, max_steps=6, eval_steps=6,
                               per_device_eval_batch_size=8)
        return cfg

    one = run_in_process(config(1, 16))
    h = History()
    two = launcher.start_run(h, validate_config(config(2, 8)))
    run = wait(two)
    log = (paths.run_dir(two) / "engine.log").read_text(errors="replace")
    assert run["status"] == "completed", f"{run.get('error')}\n{log[-3000:]}"

    train1, eval1 = final_losses(one)
    train2, eval2 = final_losses(two)
    assert math.isfinite(train2) and math.isfinite(eval2)
    # The baseline evaluation must not stop train() from wrapping the model in DDP (else each
    # process trains its own copy and the losses drift apart after the first step).
    assert train2 == pytest.approx(train1, rel=1e-3, abs=1e-3)
    assert eval2 == pytest.approx(eval1, rel=1e-3, abs=1e-3)
    # rank 0 alone writes: one row per logged step, not two
    steps = [m["step"] for m in h.metrics(two, "train/loss")]
    assert len(steps) == len(set(steps)) == 6
    assert run["trainable_params"] and run["total_params"]


def test_two_nodes_on_loopback_share_one_run(tmp_path, monkeypatch, tiny_bert_no_dropout, tiny_csv):
    """Multi-node as documented: the same config started on each "node" (here two TUITUNE_HOMEs on
    this machine) with torchrun rendezvous arguments. Global rank 0's history gets the metrics,
    once per step; the other node's row follows the run's status without writing metrics."""
    import socket

    from tuitune import launcher, paths
    from tuitune.config import validate_config
    from tuitune.history import History

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runs = []
    for node in (0, 1):
        monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / f"node{node}"))
        cfg = tiny_config(tiny_bert_no_dropout, tiny_csv)
        cfg["data"].update(max_train_samples=16, max_eval_samples=16)
        cfg["training"].update(max_steps=4, eval_steps=4, per_device_train_batch_size=8, launcher_args=[
            "--nnodes=2", f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}"])
        runs.append(launcher.start_run(History(), validate_config(cfg)))
    results = []
    for node, run_id in enumerate(runs):
        monkeypatch.setenv("TUITUNE_HOME", str(tmp_path / f"node{node}"))
        run = wait(run_id)
        log = (paths.run_dir(run_id) / "engine.log").read_text(errors="replace")
        assert run["status"] == "completed", f"node {node}: {run.get('error')}\n{log[-3000:]}"
        h = History()
        results.append([m["step"] for m in h.metrics(run_id, "train/loss")])
    assert results[0] == [1, 2, 3, 4]
    assert results[1] == []
