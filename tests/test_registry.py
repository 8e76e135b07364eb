"""One registry of tasks and methods (tuitune/tasks.py): names live there, the rest asks the spec.
One main metric (recorded and optimised alike); the final evaluation reuses an end-of-training one."""

import ast
from pathlib import Path

import pytest

from conftest import execute_run, tiny_config
from tuitune import tasks as registry
from tuitune.config import validate_config
from tuitune.errors import TuituneError
from tuitune.history import History

ROOT = Path(__file__).resolve().parent.parent


def _cfg(**sections) -> dict:
    return {"model": {"name_or_path": "m"}, "data": {"path": "d.csv"}, **sections}


def test_every_registry_task_and_method_has_an_engine_part_and_vice_versa():
    from tuitune.engine import methods
    from tuitune.engine import tasks as engine_tasks

    assert set(engine_tasks.TASKS) == set(registry.TASKS)
    assert set(methods.METHODS) == set(registry.METHODS)
    for name, cls in engine_tasks.TASKS.items():
        assert cls.spec is registry.TASKS[name]


def test_config_refuses_an_unknown_task_naming_the_registry_s_tasks():
    with pytest.raises(TuituneError) as err:
        validate_config(_cfg(task="summarization"))
    msg = str(err.value)
    assert "\n" not in msg and "task" in msg
    assert all(name in msg for name in registry.TASKS)


def test_config_refuses_a_method_the_task_does_not_support():
    bad = next((t, m) for t in registry.TASKS.values() for m in registry.METHODS if m not in t.methods)
    with pytest.raises(TuituneError, match=f"task {bad[0].name} does not support method {bad[1]}"):
        validate_config(_cfg(task=bad[0].name, method={"name": bad[1]}))


def _branches_on_task_names(path: Path) -> list[str]:
    """`x == "sft"`, `x in ("sft", "dpo")` and the like: comparisons against a task name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            if any(isinstance(i, ast.Constant) and i.value in registry.TASKS for i in items):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(f"{where}:{node.lineno}")
    return found


def test_no_module_branches_on_a_task_name():
    files = [*sorted((ROOT / "engine").glob("*.py")), ROOT / "tuitune" / "config.py", ROOT / "tuitune" / "generation.py"]
    assert [hit for f in files for hit in _branches_on_task_names(f)] == []


def test_the_branch_finder_finds_a_branch(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('x = 1\nif cfg.task in ("sft", "dpo") or task.name == "mlm":\n    pass\n', encoding="utf-8")
    assert _branches_on_task_names(probe) == ["probe.py:2", "probe.py:2"]


# -- one main metric --------------------------------------------------------------------------------

def test_a_metric_the_task_does_not_report_is_refused_in_one_line():
    with pytest.raises(TuituneError) as err:
        validate_config(_cfg(training={"metric_for_best_model": "bleu"}))
    msg = str(err.value)
    assert "\n" not in msg and "'bleu' is not a metric task classification reports" in msg
    assert "accuracy, f1, loss" in msg


@pytest.mark.parametrize("task, chosen, main, trainer, greater", [
    ("classification", None, "accuracy", "accuracy", True),
    ("classification", "eval_f1", "f1", "f1", True),
    ("classification", "loss", "loss", "loss", False),
    ("mlm", None, "perplexity", "loss", False),
    ("sft", None, "loss", "loss", False),
])
def test_trainer_optimises_the_metric_the_run_records(tuitune_home, task, chosen, main, trainer, greater):
    from tuitune.engine.trainer_args import training_arguments

    cfg = validate_config(_cfg(task=task, training={"metric_for_best_model": chosen, "use_cpu": True}))
    args = training_arguments(cfg, tuitune_home / "out")
    assert cfg.main_metric == main
    assert (args.metric_for_best_model, args.greater_is_better) == (trainer, greater)


# -- the final evaluation reuses the one training ended on -------------------------------------------

def _run(tiny_bert, tiny_csv, **training):
    run_id, code = execute_run(tiny_config(tiny_bert, tiny_csv, training=training))
    h = History()
    assert code == 0, h.get_run(run_id)["error"]
    return h, run_id


def test_final_evaluation_reuses_the_last_periodic_one(tiny_bert, tiny_csv):
    """6 steps, evaluated every 3: step 6's evaluation is the final one; evaluate runs 3 times
    (baseline, step 3, step 6), each leaving one eval/runtime value in the metrics."""
    h, run_id = _run(tiny_bert, tiny_csv, max_steps=6, eval_steps=3, metric_for_best_model="f1")
    periodic = h.evaluations(run_id, "eval")
    [final] = h.evaluations(run_id, "final")
    assert [e["step"] for e in periodic] == [3, 6] and final["step"] == 6
    assert final["metrics"] == periodic[-1]["metrics"]  # same keys, same values, same runtime
    assert len(h.metrics(run_id, "eval/runtime")) == 3
    assert "final_reused" in {e["kind"] for e in h.events(run_id)}
    run = h.get_run(run_id)
    assert run["main_metric"] == "f1" and run["main_value"] == pytest.approx(final["metrics"]["eval_f1"])


def test_final_evaluation_runs_again_when_the_best_checkpoint_was_restored(tiny_bert, tiny_csv):
    """A learning rate too small to change accuracy: step 3's checkpoint stays the best (a tie is
    not better), Trainer restores it at the end, and those weights are evaluated afresh."""
    h, run_id = _run(tiny_bert, tiny_csv, max_steps=6, eval_steps=3, learning_rate=1e-12,
                     early_stopping_patience=5)
    [final] = h.evaluations(run_id, "final")
    assert final["metrics"] != h.evaluations(run_id, "eval")[-1]["metrics"]
    assert len(h.metrics(run_id, "eval/runtime")) == 4  # baseline, step 3, step 6, final
    assert "final_reused" not in {e["kind"] for e in h.events(run_id)}
