"""`python -m tuitune.engine run RUN_ID [--resume]` · `python -m tuitune.engine predict RUN_ID TEXT` ·
`python -m tuitune.engine serve RUN_ID` (JSON lines on stdin/stdout) · `python -m tuitune.engine merge RUN_ID` ·
`python -m tuitune.engine compress RUN_ID [--variant V …]` · `python -m tuitune.engine export-model RUN_ID --out DIR`."""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from tuitune.generation import add_generation_flags, generation_kwargs

    p = argparse.ArgumentParser(prog="python -m tuitune.engine")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("run_id", type=int)
    r.add_argument("--resume", action="store_true")
    pr = sub.add_parser("predict")
    pr.add_argument("run_id")
    pr.add_argument("text")
    pr.add_argument("--top-k", type=int, help="fill-mask: tokens ranked (5); generation: top-k sampling (50)")
    pr.add_argument("--base", action="store_true", help="the base model, before fine-tuning")
    add_generation_flags(pr)  # causal LMs (sft/dpo runs)
    s = sub.add_parser("serve")
    s.add_argument("run_id")
    m = sub.add_parser("merge")
    m.add_argument("run_id", type=int)
    m.add_argument("--out")
    c = sub.add_parser("compress")  # JSON lines: {"progress": ...} while it works, then {"rows": [...]}
    c.add_argument("run_id", type=int)
    c.add_argument("--variant", action="append", default=[])
    c.add_argument("--recover-steps", type=int, default=0)
    c.add_argument("--in-process", action="store_true", help="measure in this process (no peak RSS isolation; "
                   "TUITUNE_COMPRESS_IN_PROCESS=1 does the same for a compress started by the CLI or the UI)")
    cm = sub.add_parser("compress-measure")
    cm.add_argument("path")
    cm.add_argument("inputs")
    e = sub.add_parser("export-model")
    e.add_argument("run_id", type=int)
    e.add_argument("--out", required=True)
    e.add_argument("--merge", action="store_true")
    e.add_argument("--format", choices=["safetensors", "gguf"], default="safetensors")
    e.add_argument("--push-to-hub")
    args = p.parse_args(argv)

    from tuitune.errors import TuituneError

    if args.cmd == "run":
        from tuitune.engine.runner import main as run_main

        return run_main(args.run_id, resume=args.resume)
    try:
        from tuitune.engine import predict

        if args.cmd == "predict":
            pred = predict.Predictor.for_run(args.run_id, base=args.base)
            print(json.dumps(pred.predict(args.text, top_k=args.top_k, **generation_kwargs(args))))
            return 0
        if args.cmd == "serve":
            return predict.serve(args.run_id)
        if args.cmd in ("compress", "compress-measure"):
            from tuitune.engine import compress

            if args.cmd == "compress-measure":
                return compress.measure_main(args.path, args.inputs)
            _interrupt_on_signals()  # Ctrl-C or `kill`: unwind, so the variant being built is removed
            rows = compress.compress(args.run_id, args.variant or None, recover_steps=args.recover_steps,
                                     isolate=not (args.in_process
                                                  or os.environ.get("TUITUNE_COMPRESS_IN_PROCESS") == "1"),
                                     progress=lambda msg: print(json.dumps({"progress": msg}), flush=True))
            print(json.dumps({"rows": rows}))
            return 0
        if args.cmd == "export-model":
            from tuitune.engine import export_model

            _interrupt_on_signals()  # the half-written export folder is removed as it unwinds
            print(json.dumps(export_model.export(args.run_id, args.out, merge=args.merge, fmt=args.format,
                                                 push_to_hub=args.push_to_hub)))
            return 0
        if args.cmd == "merge":
            print(json.dumps({"path": str(predict.merge(args.run_id, args.out))}))
            return 0
    except TuituneError as err:
        print(json.dumps({"error": str(err)}))
        return 2
    return 2


def _interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt here, even if our parent ignored SIGINT."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
