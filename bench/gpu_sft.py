"""LoRA vs QLoRA chat SFT of SmolLM2-135M-Instruct (demo:smollm2) in bf16 on a GPU, through
tuitune's engine: tokens/s (real, non-padding tokens) and peak GPU memory for each.

    python bench/gpu_sft.py                      # lora and qlora, 30 steps each
    python bench/gpu_sft.py --steps 50 --batch 16 --max-length 512 --methods qlora

Each method runs in its own process (a clean peak-memory reading), from the shipped presets
`smollm2-chat-lora` / `smollm2-chat-qlora` with bf16 compute. Without a CUDA GPU it prints a
`skipped` line and exits 0. Prints one JSON line per method, then a table.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PRESETS = {"lora": "smollm2-chat-lora", "qlora": "smollm2-chat-qlora"}


def overrides(method: str, args) -> list[str]:
    o = [f"training.max_steps={args.steps}", f"training.per_device_train_batch_size={args.batch}",
         f"data.max_length={args.max_length}", "training.mixed_precision=bf16", "training.logging_steps=5",
         "training.eval_steps=100000", "evaluation.baseline=false", "data.max_eval_samples=8",
         "training.save_total_limit=1"]
    if method == "qlora":
        o.append("quantization.bnb_4bit_compute_dtype=bfloat16")
    else:
        o.append("model.dtype=bfloat16")
    return o


def one(method: str, args) -> dict:
    """Runs in a child process: one engine run, measured."""
    import torch

    from tuitune.engine.runner import Run
    from tuitune import paths
    from tuitune.config import load_config
    from tuitune.history import History

    cfg = load_config(PRESETS[method], overrides(method, args))
    h = History()
    run_id = h.create_run(cfg.model_dump(mode="json"), run_dir_for=paths.run_dir)
    paths.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    torch.cuda.reset_peak_memory_stats()
    run = Run(run_id, history=h)
    t0 = time.perf_counter()
    code = run.execute()
    wall = time.perf_counter() - t0
    row = h.get_run(run_id)
    if code != 0:
        return {"method": method, "error": row.get("error")}
    tps = [m["value"] for m in h.metrics(run_id, "train/tokens_per_second")]
    return {
        "method": method, "card": torch.cuda.get_device_name(0), "steps": args.steps, "batch": args.batch,
        "max_length": args.max_length,
        "tokens_per_second": round(sum(tps[1:]) / len(tps[1:]), 1) if len(tps) > 1 else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "trainable_params": row["trainable_params"], "total_params": row["total_params"],
        "wall_s": round(wall, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--methods", default="lora,qlora")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA GPU: this benchmark measures bf16 LoRA/QLoRA on a GPU"}))
        return 0
    if args.one:
        print(json.dumps(one(args.one, args)), flush=True)
        return 0

    results = []
    with tempfile.TemporaryDirectory() as home:
        from tuitune import paths

        # runs go to a throw-away history; the converted demo:smollm2 comes from the usual cache
        os.symlink(paths.cache_dir(), Path(home) / "cache")
        env = dict(os.environ, TUITUNE_HOME=home, HF_HUB_OFFLINE="1")
        for method in args.methods.split(","):
            cmd = [sys.executable, __file__, "--one", method, "--steps", str(args.steps), "--batch", str(args.batch),
                   "--max-length", str(args.max_length)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith('{"method"')), None)
            res = json.loads(line) if line else {"method": method, "error": out.stderr.strip().splitlines()[-1:]}
            print(json.dumps(res), flush=True)
            results.append(res)
    print(f"\n{'method':8} {'tokens/s':>10} {'peak GiB':>9} {'trainable':>12}  card")
    for r in results:
        if "error" in r:
            print(f"{r['method']:8} error: {r['error']}")
        else:
            print(f"{r['method']:8} {r['tokens_per_second'] or 0:>10.1f} {r['peak_memory_gib']:>9.3f} "
                  f"{r['trainable_params']:>12,}  {r['card']}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
