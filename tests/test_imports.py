"""The UI side never loads the heavy ML stack: checked in a fresh interpreter."""

import json
import os
import subprocess
import sys

from conftest import ROOT, tuitune_cmd

HEAVY = ["torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate", "optuna"]


def _loaded_after(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_cli_and_core_do_not_import_ml_libraries():
    code = ("import tuitune.cli, tuitune.config, tuitune.history, tuitune.launcher, tuitune.demo, tuitune.sysmon, "
            "tuitune.presets, tuitune.screens, tuitune.sweep, tuitune.sweep_cli, tuitune.screens.sweep, "
            "tuitune.app")
    assert _loaded_after(code) == []


def test_help_does_not_load_torch(tmp_path):
    out = subprocess.run(tuitune_cmd() + ["--help"], capture_output=True, text=True,
                         env={"PYTHONVERBOSE": "1", "PATH": "/usr/bin:/bin", "TUITUNE_HOME": str(tmp_path)})
    assert out.returncode == 0
    assert "usage: tuitune" in out.stdout
    assert "import 'torch'" not in out.stderr


def test_screens_do_not_import_one_another():
    """Screens post messages and the app navigates: a screen imports only the shared pieces
    (base, dialogs, messages), never another screen, so there is no import cycle among them."""
    import ast

    shared = {"tuitune.screens", "tuitune.screens.base", "tuitune.screens.dialogs", "tuitune.screens.messages"}
    found = {}
    for path in sorted((ROOT / "screens").glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        screens = {n for n in names if n.startswith("tuitune.screens.") and n.count(".") == 2} - shared
        if screens:
            found[path.name] = sorted(screens)
    assert found == {}


def test_engine_start_up_leaves_torchs_compiler_unloaded():
    """`import peft` imports bitsandbytes, whose kernels call `torch.compile` at import: in an engine
    process that call compiles on first use instead, so start-up does not load torch._inductor
    (seconds per engine process), and bitsandbytes is still the real module (test_methods trains
    QLoRA and 8-bit through its kernels)."""
    code = ("import sys, tuitune.engine, peft, bitsandbytes\n"
            "assert 'torch._inductor.compile_fx' not in sys.modules, 'bitsandbytes loaded the compiler'\n"
            "assert bitsandbytes.__spec__.loader.__class__.__name__ == 'SourceFileLoader'\n"
            "assert bitsandbytes.nn.Linear4bit and bitsandbytes.functional.quantize_4bit\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_run_whose_model_path_is_missing_fails_before_the_ml_stack_loads(tmp_path):
    """The engine checks the model path before importing transformers & co.: a typo fails at once."""
    code = ("import json, sys\n"
            "from tuitune import paths\n"
            "from tuitune.config import validate_config\n"
            "from tuitune.history import History\n"
            "from tuitune.engine.runner import Run\n"
            "cfg = {'name': 'typo', 'task': 'classification', 'model': {'name_or_path': sys.argv[1]},\n"
            "       'data': {'path': sys.argv[2]}, 'method': {'name': 'full'}}\n"
            "h = History()\n"
            "rid = h.create_run(validate_config(cfg).model_dump(mode='json'), run_dir_for=paths.run_dir)\n"
            "code = Run(rid, history=h).execute()\n"
            f"print(json.dumps([code, h.get_run(rid)['error'], [m for m in {HEAVY!r} if m in sys.modules]]))\n")
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngood,pos\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "no-model"), str(data)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "TUITUNE_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr[-2000:]
    code, error, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 1 and "does not exist" in error, error
    assert loaded == []
