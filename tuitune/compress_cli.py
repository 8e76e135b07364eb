"""`tuitune compress RUN` and `tuitune export-model RUN --out DIR`, and the compression table they,
the Compress view and the model card share. No torch here: the work happens in
`python -m tuitune.engine compress|export-model`, which writes rows to the history.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

from tuitune.errors import TuituneError
from tuitune.tasks import MAXIMIZE, TASKS

VARIANTS = ("int8-dynamic", "bnb-8bit", "bnb-4bit-fp4", "bnb-4bit-nf4", "prune-30", "prune-50", "prune-70",
            "prune-ffn-50", "cluster-16", "cluster-256")  # engine/compress.py builds them
BASELINE = "fp32"
ORDER = (BASELINE,) + VARIANTS


def describe(variant: str) -> str:
    """What a variant is, in one line (the engine's wording, without importing it)."""
    if variant == BASELINE:
        return "the run's model, fp32: the reference"
    if variant == "int8-dynamic":
        return "dynamic int8 for CPU (PyTorch): per-channel int8 Linear weights, int8 activations and embeddings"
    if variant == "bnb-8bit":
        return "bitsandbytes LLM.int8 weights"
    if variant.startswith("bnb-4bit-"):
        kind = variant.rsplit("-", 1)[1]
        return f"bitsandbytes 4-bit {kind.upper()} ({'uniform' if kind == 'fp4' else 'non-uniform'} levels)"
    if variant.startswith("prune-ffn-"):
        return f"structured: {variant.rsplit('-', 1)[1]}% of feed-forward neurons removed per layer"
    if variant.startswith("prune-"):
        return f"magnitude pruning: {variant.rsplit('-', 1)[1]}% of Linear weights zeroed (global)"
    if variant.startswith("cluster-"):
        return f"k-means clustering: {variant.rsplit('-', 1)[1]}-entry codebook per layer"
    return variant


def add_parsers(sub, common) -> None:
    c = sub.add_parser("compress", parents=[common],
                       help="quantize, prune and cluster a run's model; measure size, speed and quality")
    c.add_argument("run", metavar="RUN")
    c.add_argument("--variant", action="append", default=[], choices=VARIANTS, metavar="V",
                   help=f"one of {', '.join(VARIANTS)} (repeatable; default: all)")
    c.add_argument("--recover-steps", type=int, default=0, metavar="N",
                   help="fine-tune N steps after pruning or clustering to win accuracy back")
    c.add_argument("--show", action="store_true", help="print the last compress table without computing")

    e = sub.add_parser("export-model", parents=[common],
                       help="write a run's model (merged or adapter) with a model card; GGUF for Llama models")
    e.add_argument("run", metavar="RUN")
    e.add_argument("--out", required=True, help="folder to write into (new or empty)")
    e.add_argument("--merge", action="store_true", help="fold a LoRA-family adapter into the base weights")
    e.add_argument("--format", choices=["safetensors", "gguf"], default="safetensors")
    e.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this hub repository")


# -- the table ---------------------------------------------------------------------------------------

def _main_metric(task: Optional[str]) -> tuple[str, bool]:
    """(quality metric shown, higher is better): the task's main metric (compress measures each task's
    first metric: accuracy, perplexity or loss)."""
    if task not in TASKS:
        return "loss", False
    spec = TASKS[task]
    return spec.main_metric, spec.direction(spec.main_metric) == MAXIMIZE


def _with_f1(task: Optional[str]) -> bool:
    return task in TASKS and TASKS[task].predicts == "labels"


def ordered(rows: list[dict]) -> list[dict]:
    rank = {v: i for i, v in enumerate(ORDER)}
    return sorted(rows, key=lambda r: rank.get(r["variant"], len(rank)))


def table_rows(rows: list[dict], task: Optional[str], *, compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and text cells: size and speed against fp32, quality and its change. `compact` (the
    80-column view) leaves out p95 latency and F1, and uses short headers."""
    metric, higher = _main_metric(task)
    ref = next((r for r in rows if r["variant"] == BASELINE and r["status"] == "done"), None)
    ref_q = (ref or {}).get("metrics", {}).get(metric)
    short = {"accuracy": "acc", "perplexity": "ppl", "loss": "loss"}[metric]
    if compact:
        headers = ["variant", "MB", "×size", "p50ms", "×spd", "b32/s", "RSS", short, "Δ"]
    else:
        headers = ["variant", "MB", "×size", "p50 ms", "p95 ms", "×speed", "b32/s", "RSS MB", metric, "Δ"]
        if _with_f1(task):
            headers.insert(-1, "f1")
    out = []
    for r in ordered(rows):
        if r["status"] != "done":
            why = r.get("reason") or ""
            cells = [r["variant"], r["status"] + (f": {why}" if why else "")]
            out.append(cells + [""] * (len(headers) - len(cells)))
            continue
        q = r["metrics"].get(metric)
        cells = [r["variant"], f"{r['size_bytes'] / 1e6:.1f}",
                 f"{r['size_bytes'] / ref['size_bytes']:.2f}" if ref else "-",
                 f"{r['latency_p50_ms']:.1f}"]
        if not compact:
            cells.append(f"{r['latency_p95_ms']:.1f}")
        # speed against the fp32 measured in the same compress call (the engine stores it): a variant
        # re-run later, on a machine busier or idler than before, is not compared with another fp32
        speed = (r.get("info") or {}).get("speedup_b1")
        if speed is None and ref:
            speed = ref["latency_p50_ms"] / r["latency_p50_ms"]
        cells += ["-" if speed is None else f"{speed:.2f}",
                  f"{r['throughput']:.0f}", f"{(r.get('peak_rss') or 0) / 2**20:.0f}",
                  "-" if q is None else (f"{q:.4f}" if metric == "accuracy" and not compact else
                                         f"{q:.3f}")]
        if _with_f1(task) and not compact:
            cells.append(f"{r['metrics'].get('f1', 0):.4f}")
        if q is None or ref_q is None:
            cells.append("-")
        elif metric == "accuracy":
            cells.append(f"{100 * (q - ref_q):+.1f}pt")
        else:
            cells.append(f"{q - ref_q:+.3f}")
        out.append(cells)
    return headers, out


def markdown_table(rows: list[dict], task: Optional[str]) -> str:
    headers, cells = table_rows(rows, task)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for c in cells:
        if len(c) > 1 and c[2:] == [""] * (len(c) - 2):  # a variant that did not build: one line, one reason
            c = [c[0], c[1]] + ["" for _ in c[2:]]
        lines.append("| " + " | ".join(x.replace("|", "/") for x in c) + " |")
    return "\n".join(lines)


# -- running the engine ------------------------------------------------------------------------------

def engine_argv(run_id: int, variants: list[str], recover_steps: int) -> list[str]:
    """`python -m tuitune.engine compress`'s arguments."""
    argv = ["compress", str(run_id)]
    for v in variants:
        argv += ["--variant", v]
    return argv + ["--recover-steps", str(recover_steps)]


def run_compress(run_id: int, variants: list[str], recover_steps: int,
                 on_progress: Optional[Callable[[str], None]] = None) -> dict:
    """Build and measure variants in an engine process (blocks); `on_progress(str)` gets each
    progress line. Ctrl-C stops the engine, which removes its temporary folder as it unwinds."""
    from tuitune.launcher import call_engine

    return call_engine(engine_argv(run_id, variants, recover_steps), error_prefix="compress failed",
                       on_progress=on_progress)


def _check_run(h, run_ref) -> dict:
    run = h.get_run(run_ref)
    if run.status != "completed":
        raise TuituneError(f"run {run.id} is {run.status}: compress and export need a completed run")
    return run


# -- commands ----------------------------------------------------------------------------------------

def cmd_compress(args, h) -> int:
    from tuitune.cli import _print_json, _table

    run = _check_run(h, args.run)
    if args.recover_steps < 0:
        raise TuituneError("--recover-steps must be ≥ 0")
    this_call = None
    if not args.show:
        progress = None if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
        this_call = run_compress(run.id, args.variant, args.recover_steps, progress)["rows"]
    rows = h.compressions(run.id)  # the newest row of every variant, this call's and earlier ones
    if not rows:
        raise TuituneError(f"run {run.id} has no compressed variants yet: `tuitune compress {run.id}`")
    # exit 0 when this call built a variant (with --show: when one is there), 1 when none
    built = any(r["status"] == "done" and r["variant"] != BASELINE for r in (this_call or rows))
    if args.json:
        _print_json({"id": run.id, "task": run.task, "variants": ordered(rows)})
        return 0 if built else 1
    headers, cells = table_rows(rows, run.task)
    print(_table(cells, headers))
    print(f"variants in {os.path.join(run.run_dir, 'compressed')}")
    return 0 if built else 1


def cmd_export_model(args, h) -> int:
    from tuitune.cli import _print_json

    run = _check_run(h, args.run)
    # The checks that need no model, before an engine process starts (the engine checks them again).
    if args.format == "gguf" and not (run.task in TASKS and TASKS[run.task].is_causal):
        raise TuituneError(f"GGUF export is for causal LMs (sft/dpo runs); run {run.id} is {run.task}: "
                           "use --format safetensors")
    if args.push_to_hub and any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
                                for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        raise TuituneError("--push-to-hub needs the internet, but HF_HUB_OFFLINE is set: unset it, or export "
                           "without --push-to-hub and upload the folder later")
    from tuitune.launcher import call_engine

    argv = ["export-model", str(run.id), "--out", args.out, "--format", args.format] + \
           (["--merge"] if args.merge else []) + (["--push-to-hub", args.push_to_hub] if args.push_to_hub else [])
    out = call_engine(argv, error_prefix="export failed")
    if args.json:
        _print_json(out)
    else:
        print("\n".join(out["files"]))
        if out.get("pushed"):
            print(f"pushed to {out['pushed']}")
    return 0


COMMANDS = {"compress": cmd_compress, "export-model": cmd_export_model}
