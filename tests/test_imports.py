"""The UI side never loads the heavy ML stack: checked in a fresh interpreter."""

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
    (seconds per engine process), and bitsandbytes is still the real, usable module."""
    code = ("import sys, tuitune.engine, peft, bitsandbytes, torch\n"
            "assert 'torch._inductor.compile_fx' not in sys.modules, 'bitsandbytes loaded the compiler'\n"
            "assert bitsandbytes.__spec__.loader.__class__.__name__ == 'SourceFileLoader'\n"
            "w = torch.randn(64, 64)\n"
            "q, state = bitsandbytes.functional.quantize_4bit(w, quant_type='nf4')\n"
            "back = bitsandbytes.functional.dequantize_4bit(q, state)\n"
            "assert (back - w).abs().mean() < 0.1 * w.abs().mean(), 'nf4 round trip'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
