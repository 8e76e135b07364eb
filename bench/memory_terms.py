"""What one SmolLM2 LoRA training step holds in memory per token, on CPU: the slopes behind
`ACT_PER_*` and `HEAD_TILES` in tuitune/model_info.py.

    python bench/memory_terms.py [--shapes 4x64,8x64,8x128] [--model FOLDER]

Each shape runs in a fresh process: SmolLM2-135M-Instruct (demo:smollm2, converted) with LoRA r=16
on every projection (dropout 0.05, as the smollm2 presets) and TRL's fused LM head (as SFTTrainer
and DPOTrainer patch it), one forward + backward on random tokens after a tiny warm-up step. The
peak resident memory is reset before the step (/proc/self/clear_refs), so the figure is what the
step adds on top of the loaded model: once with the loss through the LM head ("step"), once with
the backbone only ("backbone": a sum of the last hidden states as the loss). Their difference is
the head's; the backbone's, divided by tokens × layers, is the activations' bytes per token per
layer, which the estimate splits as ACT_PER_HIDDEN·hidden + ACT_PER_INNER·1.5·inner (a gated MLP) + 5 B per
input unit of each LoRA layer (its dropped-out input and mask).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TARGETS = {"all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],  # the chat presets
           "qv": ["q_proj", "v_proj"]}  # tuitune's default for Llama (smollm2-dpo)


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def child(folder: str, batch: int, length: int, mode: str, targets: str) -> dict:
    import gc

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS[targets],
                                             task_type="CAUSAL_LM"))
    model.train()
    vocab = model.config.vocab_size

    def step(ids):
        mask = torch.ones_like(ids)
        if mode == "backbone":
            out = model.base_model.model.model(input_ids=ids, attention_mask=mask)
            loss = out.last_hidden_state.float().pow(2).mean()
        else:
            loss = model(input_ids=ids, attention_mask=mask, labels=ids, fused_lm_head=True).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    step(torch.randint(0, vocab, (1, 8)))  # lazy allocations (thread pools, kernels) belong to the baseline
    gc.collect()
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    step(torch.randint(0, vocab, (batch, length)))
    peak = _status("VmHWM")
    return {"batch": batch, "length": length, "mode": mode, "targets": targets, "base": base, "added": peak - base,
            "layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
            "inner": model.config.intermediate_size, "vocab": vocab}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4x64,8x128")
    ap.add_argument("--targets", default="all,qv", help="LoRA target sets: all (7 projections), qv")
    ap.add_argument("--model", help="a converted SmolLM2 folder (default: $TUITUNE_HOME's, converting it once)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        folder, b, n, mode, targets = args.child.split(",")
        print(json.dumps(child(folder, int(b), int(n), mode, targets)))
        return 0
    folder = args.model
    if not folder:
        from tuitune.engine.gguf_demo import converted_smollm2

        folder = str(converted_smollm2())
    rows = []
    combos = [(shape, t) for t in args.targets.split(",") for shape in args.shapes.split(",")]
    for shape, targets in combos:
        b, n = (int(x) for x in shape.split("x"))
        for mode in ("step", "backbone"):
            out = subprocess.run([sys.executable, __file__, "--child", f"{folder},{b},{n},{mode},{targets}"],
                                 capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if out.returncode != 0:
                print(f"{shape} {targets} {mode}: failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}",
                      file=sys.stderr)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{shape} {targets} {mode}: +{rows[-1]['added'] / 2**20:.0f} MiB", file=sys.stderr)
    mib = lambda x: f"{x / 2**20:,.0f}"  # noqa: E731
    print(f"{'shape':>7}  {'LoRA on':>7}  {'step MiB':>9}  {'backbone MiB':>12}  {'head MiB':>8}  "
          f"{'B/token/layer':>13}  {'head tiles':>10}  base MiB")
    for shape, targets in combos:
        b, n = (int(x) for x in shape.split("x"))
        got = {r["mode"]: r for r in rows if (r["batch"], r["length"], r["targets"]) == (b, n, targets)}
        if len(got) < 2:
            continue
        s, k = got["step"], got["backbone"]
        head = s["added"] - k["added"]
        per = k["added"] / (b * n * k["layers"])
        tile = min(b * (n - 1), 4096) * min(s["vocab"], 32768) * 4
        print(f"{shape:>7}  {targets:>7}  {mib(s['added']):>9}  {mib(k['added']):>12}  {mib(head):>8}  "
              f"{per:>13,.0f}  {head / tile:>10.1f}  {mib(s['base'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
