"""Compression side by side on a completed run (the README's table: a `bbc-news-minilm` run).

    TUITUNE_HOME=... python bench/compress.py RUN_ID [--recover-steps N] [--rounds 3] [--skip-build]
    TUITUNE_HOME=... python bench/compress.py RUN_ID --candidates

1. `tuitune compress RUN` builds every variant and measures it (size, quality on the evaluation split,
   peak RSS in its own process).
2. This script then loads every variant folder in ONE process and times batch-1 latency alternately,
   round after round (the same 40 examples; the order flips every round), so machine drift hits all
   variants alike. Throughput at batch 32, peak RSS and quality come from step 1. Prints the table and whether the goal is met: a variant ≤ 1/3 of the fp32 size,
   ≥ 1.5× its batch-1 speed, losing ≤ 1 accuracy point.

`--candidates` compares the dynamic-int8 back-ends for CPU on the run's model, alternating: PyTorch
fp32, PyTorch `quantize_dynamic`, torchao `Int8DynamicActivationInt8WeightConfig`, ONNX Runtime fp32
and int8 (`onnxruntime.quantization.quantize_dynamic` on a `torch.onnx.export`). torchao, onnx,
onnxscript and onnxruntime are not tuitune dependencies: install them to compare (missing ones are
skipped with a line). optimum-onnx 0.1 does not import with transformers 5, so ONNX Runtime is driven
directly (what optimum's ORTQuantizer wraps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _lat(fn, inputs, warm: int = 3) -> list[float]:
    for b in inputs[:warm]:
        fn(b)
    out = []
    for b in inputs:
        t0 = time.perf_counter()
        fn(b)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _thr(fn, batch, repeats: int = 3) -> float:
    fn(batch)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(batch)
    return batch["input_ids"].shape[0] * repeats / (time.perf_counter() - t0)


def side_by_side(run_id: int, rows: list[dict], rounds: int) -> dict[str, dict]:
    import torch

    from tuitune.engine import compress

    src = compress.Source(run_id)
    inputs = src.eval_inputs()
    models = {r["variant"]: compress.load_variant(r["path"]) for r in rows if r["status"] == "done"}
    lat: dict[str, list[float]] = {v: [] for v in models}
    with torch.inference_mode():
        for rnd in range(rounds):
            order = list(models) if rnd % 2 == 0 else list(reversed(models))
            for v in order:
                f = lambda b, m=models[v]: m(**b)  # noqa: E731
                lat[v] += _lat(f, inputs["single"])
            print(f"round {rnd + 1}/{rounds} timed", file=sys.stderr, flush=True)
    out = {}
    for v in models:
        s = sorted(lat[v])
        out[v] = {"p50": statistics.median(s), "p95": s[int(0.95 * (len(s) - 1))]}
    return out


def cmd_table(args) -> int:
    from tuitune.compress_cli import describe, ordered

    if not args.skip_build:
        cmd = [sys.executable, "-m", "tuitune.cli", "compress", str(args.run), "--json",
               "--recover-steps", str(args.recover_steps)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "compress failed", file=sys.stderr)
            return 2
        print(f"compress: {time.time() - t0:.0f} s", file=sys.stderr)
    from tuitune.history import History

    h = History()
    run = h.get_run(args.run)
    rows = ordered(h.compressions(run.id))
    timed = side_by_side(run.id, rows, args.rounds)
    ref = next(r for r in rows if r["variant"] == "fp32")
    ref_t = timed["fp32"]
    metric = "accuracy" if run.task == "classification" else ("perplexity" if run.task == "mlm" else "loss")
    print(f"run {run.id} ({run.name}), {os.cpu_count()} CPU cores, torch threads {_threads()}; "
          f"quality on the evaluation split ({len(_ids(run.id))} examples)")
    print(f"| variant | size MB | ×size | p50 ms (b1) | p95 ms | ×speed b1 | b32 ex/s | peak RSS MB | {metric} | Δ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    goal = []
    for r in rows:
        v = r["variant"]
        if r["status"] != "done":
            print(f"| {v} | {r['status']}: {r.get('reason') or ''} | | | | | | | | |")
            continue
        t = timed[v]
        q, q0 = r["metrics"].get(metric), ref["metrics"].get(metric)
        size_ratio = r["size_bytes"] / ref["size_bytes"]
        speed = ref_t["p50"] / t["p50"]
        delta = (100 * (q - q0)) if metric == "accuracy" else (q - q0)
        print(f"| {v} | {r['size_bytes'] / 1e6:.1f} | {size_ratio:.2f} | {t['p50']:.1f} | {t['p95']:.1f} | "
              f"{speed:.2f} | {r['throughput']:.0f} | {(r.get('peak_rss') or 0) / 2**20:.0f} | {q:.4f} | "
              + (f"{delta:+.1f} pt |" if metric == "accuracy" else f"{delta:+.3f} |"))
        if v != "fp32" and size_ratio <= 1 / 3 and speed >= 1.5 and (metric != "accuracy" or delta >= -1.0):
            goal.append(v)
    print()
    print("goal (≤ 1/3 size, ≥ 1.5× batch-1 speed, ≤ 1 point lost): "
          + (f"met by {', '.join(goal)}" if goal else "NOT met by any variant"))
    for r in rows:
        print(f"  {r['variant']:<13} {describe(r['variant'])}")
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _ids(run_id: int):
    from tuitune.engine import compress

    _, val = compress.Source(run_id).data()
    return range(min(len(val), compress.MAX_EVAL))


def cmd_candidates(args) -> int:
    import copy
    import warnings

    import torch

    from tuitune.engine import compress

    warnings.filterwarnings("ignore")
    src = compress.Source(args.run)
    inputs = src.eval_inputs()
    fp32 = src.load()
    cands, sizes, notes = {"torch fp32": fp32}, {}, []
    cands["torch.ao quantize_dynamic"] = compress.quantize_dynamic_int8(copy.deepcopy(fp32))
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        ta = copy.deepcopy(fp32)
        quantize_(ta, Int8DynamicActivationInt8WeightConfig())
        cands["torchao int8 dyn"] = ta
    except Exception as err:  # noqa: BLE001
        notes.append(f"torchao skipped: {type(err).__name__}: {str(err)[:100]}")
    ort_runs = {}
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        d = Path(tempfile.mkdtemp())
        import inspect

        # positional export: the inputs in the order forward() takes them (the tokenizer's order,
        # input_ids, token_type_ids, attention_mask, would feed the token types in as the mask)
        names = [k for k in inspect.signature(fp32.forward).parameters if k in inputs["single"][0]]
        sample = tuple(inputs["single"][0][k] for k in names)
        torch.onnx.export(fp32, sample, str(d / "fp32.onnx"), input_names=names, output_names=["logits"],
                          dynamic_axes={k: {0: "batch", 1: "seq"} for k in names}, dynamo=False, opset_version=17)
        quantize_dynamic(str(d / "fp32.onnx"), str(d / "int8.onnx"), weight_type=QuantType.QInt8)
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        for tag in ("fp32", "int8"):
            sess = ort.InferenceSession(str(d / f"{tag}.onnx"), so, providers=["CPUExecutionProvider"])
            ort_runs[f"onnxruntime {tag}"] = sess
            sizes[f"onnxruntime {tag}"] = (d / f"{tag}.onnx").stat().st_size
    except Exception as err:  # noqa: BLE001
        notes.append(f"onnxruntime skipped: {type(err).__name__}: {str(err)[:100]}")

    def caller(name):
        if name in ort_runs:
            sess = ort_runs[name]
            return lambda b: torch.from_numpy(sess.run(None, {k: v.numpy() for k, v in b.items()})[0])
        m = cands[name]
        return lambda b: m(**b).logits

    every = list(cands) + list(ort_runs)
    lat = {n: [] for n in every}
    thr = {n: [] for n in every}
    with torch.inference_mode():
        acc = {}
        for n in every:
            f = caller(n)
            ok = tot = 0
            for b in inputs["quality"]:
                feed = {k: v for k, v in b.items() if k != "labels"}
                ok += int((f(feed).argmax(-1) == b["labels"]).sum())
                tot += len(b["labels"])
            acc[n] = ok / tot
        for rnd in range(args.rounds):
            for n in (every if rnd % 2 == 0 else every[::-1]):
                f = caller(n)
                lat[n] += _lat(f, inputs["single"])
                thr[n].append(_thr(f, inputs["batch"]))
            print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr, flush=True)
    base = statistics.median(lat["torch fp32"])
    print(f"dynamic int8 candidates, run {args.run}, torch threads {torch.get_num_threads()}, alternating "
          f"{args.rounds} rounds × {len(inputs['single'])} batch-1 examples")
    print("| back-end | p50 ms (b1) | ×speed b1 | b32 ex/s | accuracy |")
    print("|---|---|---|---|---|")
    for n in every:
        p50 = statistics.median(lat[n])
        print(f"| {n} | {p50:.1f} | {base / p50:.2f} | {statistics.median(thr[n]):.0f} | {acc[n]:.4f} |")
    for n in notes:
        print(n)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=int)
    p.add_argument("--recover-steps", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-build", action="store_true", help="time the variants already built")
    p.add_argument("--candidates", action="store_true", help="compare the dynamic int8 back-ends")
    args = p.parse_args(argv)
    return cmd_candidates(args) if args.candidates else cmd_table(args)


if __name__ == "__main__":
    sys.exit(main())
