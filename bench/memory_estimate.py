"""The Model screen's training-memory estimate against the measured peak, per demo preset.

    python bench/memory_estimate.py [--presets a,b,...] [--steps 5] [--llm-steps 1] [--skip-llm]

Runs each demo preset shortened (`training.max_steps` = --steps, 1 for the SmolLM2 ones by default;
256 training rows, no baseline evaluation, 64 evaluation rows (8 for SmolLM2), no probes, CPU)
through the real CLI in a fresh TUITUNE_HOME, reads the peak resident memory the engine recorded
for the run (`tuitune show --json` → peak_ram_bytes), and prints it beside the estimate
(`model_info.config_estimate`: the preset's method, batch, task and quantization at the padded
length its data gives: the typical (median) longest row among the rows the shortened run draws, from the
data's token lengths; what the Model screen shows for the same config), with the estimate's parts.
Rows outside ±30 % are flagged. The SmolLM2 GGUF is converted once beforehand, in its own process
(a first use converts it inside the run's engine, and that would be the peak measured). Presets that
need the hub (IMDB, Yelp) are skipped with the reason printed. Figures differ by machine: run it
where you train.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "tuitune"
LLM = ("smollm2-chat-lora", "smollm2-chat-qlora", "smollm2-dpo")
DEMO_PRESETS = ("bbc-news-minilm", "bbc-news-minilm-head", "bbc-news-minilm-bitfit", "bbc-news-minilm-ia3",
                "bbc-news-minilm-lora", "tweets-minilm-lora", "minilm-mlm", "minilm-mlm-prompt-tuning", *LLM,
                "imdb-distilbert-mlm", "yelp-bert")


def warm_up(home: str) -> None:
    """Convert the SmolLM2 GGUF once, in its own process: a first use converts it inside the run's
    engine process, and that conversion, not training, would be the peak measured."""
    env = {**os.environ, "TUITUNE_HOME": home, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", "from tuitune.engine.gguf_demo import converted_smollm2; converted_smollm2()"],
                   env=env, check=True, capture_output=True)


def measure(preset: str, steps: int, home: str, eval_rows: int) -> tuple[int | None, float, str, float | None]:
    env = {**os.environ, "TUITUNE_HOME": home, "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    out = subprocess.run([str(BIN), "run", preset, "--json",
                          "--set", f"training.max_steps={steps}", "--set", "training.use_cpu=true",
                          "--set", "evaluation.baseline=false", "--set", "evaluation.on_test=false",
                          "--set", "evaluation.probes=[]", "--set", f"data.max_eval_samples={eval_rows}",
                          "--set", "data.max_train_samples=256",
                          "--set", f"training.eval_steps={steps}", "--set", f"training.logging_steps={steps}"],
                         capture_output=True, text=True, env=env)
    took = time.perf_counter() - t
    try:
        summary = json.loads(out.stdout)
    except ValueError:
        return None, took, (out.stderr.strip().splitlines() or ["no output"])[-1], None
    if summary.get("status") != "completed" or not summary.get("peak_ram_bytes"):
        return None, took, f"status {summary.get('status')}, error {summary.get('error')}, log {summary.get('log')}", None
    latest = summary.get("latest") or {}
    tps, sps = latest.get("train/tokens_per_second"), latest.get("train/samples_per_second")
    mean_len = tps / sps if tps and sps else None  # non-padding tokens per training row
    return summary.get("peak_ram_bytes"), took, "", mean_len


def shortened(preset: str, steps: int, eval_rows: int):
    """The preset as the bench runs it (the estimate must see the same steps and rows)."""
    from tuitune.config import load_config

    cfg = load_config(preset)
    cfg.training.max_steps = steps
    cfg.data.max_train_samples = 256
    cfg.data.max_eval_samples = eval_rows
    return cfg


def main() -> int:
    from tuitune.model_info import config_estimate, inspect_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(DEMO_PRESETS))
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--llm-steps", type=int, default=1)
    ap.add_argument("--llm-eval-rows", type=int, default=8, help="evaluation rows of the SmolLM2 runs (slow on CPU)")
    ap.add_argument("--skip-llm", action="store_true", help="skip the SmolLM2 presets (slow on CPU)")
    ap.add_argument("--out", help="also write the rows as JSON here")
    ap.add_argument("--measured", action="append", default=[], metavar="FILE",
                    help="reuse the measured peaks of earlier --out files (no runs): the table with today's estimate")
    ap.add_argument("--home", help="TUITUNE_HOME to run in (default: a new temporary one); with --measured, one where "
                                   "demo:smollm2 is converted, so the estimate counts tokens with its tokenizer")
    args = ap.parse_args()

    rows = []
    earlier = {r["preset"]: r for f in args.measured for r in json.loads(Path(f).read_text())}
    home = args.home or tempfile.mkdtemp(prefix="tuitune-mem-")  # shared: the SmolLM2 conversion happens once, first
    os.environ["TUITUNE_HOME"] = home  # this process too: the estimate reads the converted tokenizer there
    warmed = False
    for preset in [p for p in args.presets.split(",") if p]:
        llm = preset in LLM
        if args.skip_llm and llm:
            print(f"{preset}: skipped (--skip-llm)", file=sys.stderr)
            continue
        if args.measured and preset not in earlier:
            continue
        steps = (earlier[preset]["steps"] if args.measured else args.llm_steps if llm else args.steps)
        cfg = shortened(preset, steps, args.llm_eval_rows if llm else 64)
        try:
            info = inspect_model(cfg.model.name_or_path)
        except Exception as err:  # noqa: BLE001 - a hub model offline: say so, go on
            print(f"{preset}: skipped ({err})", file=sys.stderr)
            continue
        if llm and not warmed and not args.measured:
            warm_up(home)  # before the estimate too: it reads the converted model's tokenizer
            warmed = True
            info = inspect_model(cfg.model.name_or_path)
        est, lengths = config_estimate(info, cfg)
        if args.measured:
            e = earlier[preset]
            peak, took, err, mean_len = e["measured"], e["seconds"], "", e.get("mean_row_tokens")
        else:
            peak, took, err, mean_len = measure(preset, steps, home, args.llm_eval_rows if llm else 64)
        if peak is None:
            print(f"{preset}: run failed ({err})", file=sys.stderr)
            continue
        rows.append({"preset": preset, "method": cfg.method.name, "batch": cfg.training.per_device_train_batch_size,
                     "max_length": cfg.data.max_length, "length": lengths.length if lengths else cfg.data.max_length,
                     "lengths_how": lengths.how if lengths else "max_length (data not read)",
                     "data_mean_tokens": round(lengths.mean, 1) if lengths else None,
                     "steps": steps, "estimate": est["total"], "measured": peak,
                     "error_pct": 100 * (est["total"] - peak) / peak, "parts": est, "seconds": round(took, 1),
                     "mean_row_tokens": mean_len})
        print(f"{preset}: estimate {est['total'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f} MiB", file=sys.stderr)

    mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    head = ["preset", "method", "batch×length", "steps", "estimate MiB", "measured MiB", "error", "",
            "runtime", "weights", "train state", "activations", "logits", "row tokens (data / run)"]
    table = [[r["preset"], r["method"], f"{r['batch']}×{r['length']} (max {r['max_length']})", str(r["steps"]),
              mib(r["estimate"]), mib(r["measured"]), f"{r['error_pct']:+.0f}%",
              "OUTSIDE ±30%" if abs(r["error_pct"]) > 30 else "",
              mib(r["parts"]["runtime"]), mib(r["parts"]["weights"]), mib(r["parts"]["train_state"]),
              mib(r["parts"]["activations"]), mib(r["parts"]["logits"]),
              f"{r['data_mean_tokens'] or '?'} / {r['mean_row_tokens']:.0f}" if r["mean_row_tokens"]
              else f"{r['data_mean_tokens'] or '?'} / ?"]
             for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *table)]
    for line in [head, ["-" * w for w in widths], *table]:
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
    worst = max((abs(r["error_pct"]) for r in rows), default=0)
    outside = [r["preset"] for r in rows if abs(r["error_pct"]) > 30]
    print(f"\nworst error {worst:.0f}% over {len(rows)} presets (peak resident memory of the engine process, CPU); "
          + (f"outside ±30%: {', '.join(outside)}" if outside else "all within ±30%"))
    print("length: the padded length the estimate used (typical longest row the run draws); row tokens: mean "
          "tokens per row by the data's token counts / by the run's logged tokens and samples per second "
          "(DPO: per pair)")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
