"""`tuitune` command line. With no arguments it opens the terminal UI.

Every command takes `--json` for scripts. Errors are one line on stderr and a non-zero exit;
`--debug` shows the traceback. This module never imports torch & co.: training and prediction
happen in `python -m tuitune.engine` processes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

from tuitune import compress_cli, sweep_cli
from tuitune.errors import TuituneError
from tuitune.formatting import (eta_seconds, f1_changes, fmt_change, fmt_clock, fmt_duration, fmt_metric,
                                 fmt_resources, fmt_time, probe_timeline, real_metrics, resources, short)
from tuitune.generation import add_generation_flags, generation_argv
from tuitune.records import STATUSES, RunRecord

EXIT_ERROR = 2
EXIT_RUN_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    p = argparse.ArgumentParser(
        prog="tuitune", parents=[common],
        description="Fine-tune Hugging Face models from the terminal. No command: open the UI.",
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    r = sub.add_parser("run", parents=[common], help="start a run from a preset or YAML file")
    r.add_argument("source", metavar="PRESET|FILE")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set training.learning_rate=3e-5 (repeatable)")
    r.add_argument("--detach", action="store_true", help="start it and return; it runs on in the background")
    r.add_argument("--no-notify", dest="notify", action="store_false", default=None,
                   help="no bell or desktop notification when the run ends (or TUITUNE_NOTIFY=0)")

    ls = sub.add_parser("runs", parents=[common], help="list the run history")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--limit", type=int, default=50)

    for name, help_ in (("show", "a run's config, status, metrics and paths"),
                        ("stop", "stop a live run gracefully (it saves a checkpoint)"),
                        ("resume", "continue a stopped or crashed run from its last checkpoint"),
                        ("follow", "follow a live run's progress until it ends (Ctrl-C stops it)"),
                        ("delete", "delete a finished run and its files"),
                        ("merge", "merge a LoRA adapter into its base model")):
        c = sub.add_parser(name, parents=[common], help=help_)
        c.add_argument("run", metavar="RUN")
        if name == "resume":
            c.add_argument("--detach", action="store_true")
        if name in ("resume", "follow"):
            c.add_argument("--no-notify", dest="notify", action="store_false", default=None,
                           help="no bell or desktop notification when the run ends (or TUITUNE_NOTIFY=0)")
        if name == "delete":
            c.add_argument("--yes", action="store_true", help="do not ask")
        if name == "merge":
            c.add_argument("--out", help="folder for the merged model (default runs/<id>/merged)")

    er = sub.add_parser("errors", parents=[common],
                        help="the misclassified evaluation rows of a classification run (after its final evaluation)")
    er.add_argument("run", metavar="RUN")
    er.add_argument("--true", dest="true_label", metavar="LABEL", help="only rows of this true label")
    er.add_argument("--pred", dest="pred_label", metavar="LABEL", help="only rows predicted as this label")
    er.add_argument("--limit", type=int, default=50, help="rows to print (text output; --json prints all)")

    ex = sub.add_parser("export", parents=[common], help="write a run's metrics, evaluations and events to files")
    ex.add_argument("run", metavar="RUN")
    ex.add_argument("--out", required=True, help="folder to write into (created if missing)")
    ex.add_argument("--format", choices=["csv", "json"], default="csv")

    cmp_ = sub.add_parser("compare", parents=[common],
                          help="runs side by side: main metric before → after, per-class F1, time, memory, "
                               "trainable share, config differences")
    cmp_.add_argument("runs", nargs="+", metavar="RUN")

    sub.add_parser("presets", parents=[common], help="list the shipped presets")

    pr = sub.add_parser("predict", parents=[common],
                        help="query a trained run (labels, fill-mask or generation); no TEXT: one input per "
                             "line from stdin, the model kept loaded")
    pr.add_argument("run", metavar="RUN")
    pr.add_argument("text", nargs="?", help="the input (omit it to read inputs line by line from stdin)")
    pr.add_argument("--file", help="answer every line of this file (one input per line)")
    pr.add_argument("--top-k", type=int, help="fill-mask: how many tokens to rank (5); generation: top-k sampling (50)")
    pr.add_argument("--base", action="store_true", help="ask the base model, before fine-tuning")
    add_generation_flags(pr)

    sweep_cli.add_parsers(sub, common)

    cfg = sub.add_parser("config", parents=[common], help="print a preset's validated config (with --set applied)")
    cfg.add_argument("source", metavar="PRESET|FILE")
    cfg.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    compress_cli.add_parsers(sub, common)
    return p


# -- formatting ------------------------------------------------------------------------------------

def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def run_summary(h, run: RunRecord) -> dict[str, Any]:
    """What `--json` prints about a run: id, status, metrics and the rest."""
    evals = h.evaluations(run.id)
    by_phase = {e.phase: e.metrics for e in evals}  # the last of each phase
    shown = ([e for e in evals if e.phase == "final"] or [e for e in evals if e.phase == "eval"] or [None])[-1]
    return {
        # which evaluation `metrics` is: the final one, or (running, stopped, failed) the latest periodic one
        "metrics_phase": shown.phase if shown else None, "metrics_step": shown.step if shown else None,
        "id": run.id, "name": run.name, "status": run.status, "task": run.task,
        "model": run.model, "method": run.method, "dataset": run.dataset,
        "step": run.step, "max_steps": run.max_steps,
        "metrics": by_phase.get("final") or by_phase.get("eval") or {},
        "baseline": by_phase.get("baseline"), "test": by_phase.get("test"),
        "latest": h.latest(run.id),
        "main_metric": run.main_metric, "main_value": run.main_value, "baseline_value": run.baseline_value,
        "trainable_params": run.trainable_params, "total_params": run.total_params,
        "error": run.error, "pid": run.pid,
        "sweep": run.sweep, "trial": run.trial, "params": run.params,
        "created_at": run.created_at, "started_at": run.started_at, "ended_at": run.ended_at,
        "run_dir": run.run_dir, "model_dir": _str(run.model_dir), "log": _str(run.log_path),
        **resources(run),
    }


def evaluation_depth(h, run: RunRecord) -> dict[str, Any]:
    """What `tuitune show --json` adds: per-class reports, confusion matrices, probe answers."""
    return {
        "class_report": [{"phase": p, "step": st, "classes": r} for p, st, r in h.class_report(run.id)],
        "confusion": h.confusions(run.id),
        "errors_stored": len(h.errors(run.id)),
        "probes": h.probes(run.id),
    }


def _str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


# -- commands ---------------------------------------------------------------------------------------

def cmd_presets(args, h) -> int:
    from tuitune import presets

    rows = [(n, "shipped") for n in presets.list_presets()] + [(n, "yours") for n in presets.list_user_presets()]
    if args.json:
        _print_json([{"name": n, "source": src, "description": presets.preset_summary(n)} for n, src in rows])
    else:
        print(_table([[n, src, presets.preset_summary(n)] for n, src in rows], ["preset", "source", "what it does"]))
    return 0


def cmd_config(args, h) -> int:
    from tuitune.config import load_config

    cfg = load_config(args.source, args.overrides)
    if args.json:
        _print_json(cfg.model_dump(mode="json"))
    else:
        print(cfg.to_yaml(), end="")
    return 0


def cmd_runs(args, h) -> int:
    runs = h.list_runs(status=args.status, limit=args.limit)
    if args.json:
        _print_json([run_summary(h, r) for r in runs])
        return 0
    if not runs:
        print("no runs yet: `tuitune presets` lists starting points, `tuitune run PRESET` starts one")
        return 0
    rows = [[r.id, r.status, r.task or "", short(r.model), r.method or "", short(r.dataset),
             fmt_time(r.started_at or r.created_at), fmt_duration(r), fmt_metric(r, long=True)] for r in runs]
    print(_table(rows, ["id", "status", "task", "model", "method", "dataset", "started", "duration", "main metric"]))
    return 0


def cmd_show(args, h) -> int:
    run = h.get_run(args.run)
    summary = run_summary(h, run)
    config = _shown_config(run.config)
    if args.json:
        summary.update(evaluation_depth(h, run))
        summary["config"] = config
        _print_json(summary)
        return 0
    import yaml

    print(f"run {run.id} ({run.name}): {run.status}" + (f" — {run.error}" if run.error else ""))
    print(f"  step {run.step or 0}/{run.max_steps or '?'}  started {fmt_time(run.started_at)}"
          f"  duration {fmt_duration(run)}")
    if run.trainable_params and run.total_params:
        print(f"  trainable parameters {run.trainable_params:,} of {run.total_params:,}"
              f" ({100 * run.trainable_params / run.total_params:.2f}%)")
    for phase in ("baseline", "final", "test"):
        m = summary["metrics"] if phase == "final" else summary[phase]
        if m:
            label = phase if phase != "final" else _metrics_label(summary)
            print(f"  {label:8s} {({k: float(format(v, '.4g')) for k, v in real_metrics(m).items()})}")
    if summary["latest"] and run.live:
        shown = {k: float(format(v, ".4g")) for k, v in summary["latest"].items() if k.startswith("train/")}
        print(f"  latest   {shown}")
    if not run.live and run.started_at:
        print(f"  cost     {fmt_resources(run)}")
    _print_depth(h, run)
    print(f"  run dir  {run.run_dir}\n  log      {summary['log']}")
    print("config:")
    print("  " + yaml.safe_dump(config, sort_keys=False).replace("\n", "\n  ").rstrip())
    return 0


def _print_depth(h, run: RunRecord) -> None:
    """Per-class F1 baseline → final, the final confusion matrix, and the probes step by step."""
    reports = h.class_report(run.id)
    if reports:
        final = next((r for p, _, r in reversed(reports) if p == "final"), reports[-1][2])
        rows = [[lab, f"{final[lab]['precision']:.3f}", f"{final[lab]['recall']:.3f}", fmt_change(b, a), sup]
                for lab, b, a, sup in f1_changes(reports)]
        print("per class (precision, recall at the end; F1 baseline → end):")
        print("  " + _table(rows, ["label", "precision", "recall", "F1", "support"]).replace("\n", "\n  "))
    for phase in ("final", "test"):
        cm = h.confusion(run.id, phase)
        if cm:
            labels = [short(lab, 10) for lab in cm["labels"]]
            rows = [[lab] + [str(v) for v in row] for lab, row in zip(labels, cm["matrix"])]
            print(f"confusion matrix, {phase} @ step {cm['step']} (rows: true, columns: predicted):")
            print("  " + _table(rows, ["true \\ pred"] + labels).replace("\n", "\n  "))
            if phase == "final":
                n = len(h.errors(run.id))
                print(f"  {n} misclassified rows stored: `tuitune errors {run.id}`")
    for text, answers in probe_timeline(h.probes(run.id)):
        print(f"probe {short(text, 60)!r}:")
        for phase, step, answer in answers:
            print(f"  {phase:8s} @{step:<6d} {short(answer.replace(chr(10), ' '), 60)}")


def cmd_errors(args, h) -> int:
    run = h.get_run(args.run)
    from tuitune.tasks import TASKS

    spec = TASKS.get(run.task or "")
    if spec is None or not spec.class_report:
        raise TuituneError(f"run {run.id} is a {run.task} run: errors are kept for classification runs "
                           "(true vs predicted labels); `tuitune show` has its probes")
    cm = h.confusion(run.id, "final")
    if cm is None:
        raise TuituneError(f"run {run.id} ({run.status}) has no final evaluation yet: errors are stored after it")
    for given in (args.true_label, args.pred_label):
        if given is not None and given not in cm["labels"]:
            raise TuituneError(f"label {given!r} is not one of run {run.id}'s: {', '.join(cm['labels'])}")
    rows = h.errors(run.id, true_label=args.true_label, pred_label=args.pred_label)
    if args.json:
        _print_json([{k: r[k] for k in ("row", "true_label", "pred_label", "confidence", "text")} for r in rows])
        return 0
    if not rows:
        print("no misclassified rows" + (" in that cell" if args.true_label or args.pred_label else ""))
        return 0
    shown = rows[:max(1, args.limit)]
    print(_table([[r["row"], short(r["true_label"], 14), short(r["pred_label"], 14), f"{r['confidence']:.3f}",
                   (r["text"] or "").replace("\n", " ")[:70]] for r in shown],
                 ["row", "true", "predicted", "conf", "text"]))
    if len(rows) > len(shown):
        print(f"… {len(rows) - len(shown)} more (--limit, --json)")
    return 0


def _shown_config(stored: dict) -> dict:
    """A stored config in today's shape (renamed keys upgraded); as stored when it cannot be read."""
    from tuitune.config import stored_config

    try:
        return stored_config(stored).model_dump(mode="json")
    except TuituneError:
        return stored


def cmd_stop(args, h) -> int:
    from tuitune import launcher

    run = launcher.stop_run(h, int(args.run) if str(args.run).isdigit() else args.run)
    if args.json:
        _print_json({"id": run.id, "status": "stopping"})
    else:
        print(f"run {run.id}: stop requested; it saves a checkpoint and ends as stopped")
    return 0


def cmd_delete(args, h) -> int:
    run = h.get_run(args.run)
    if not args.yes and not args.json:
        if not sys.stdin.isatty():
            raise TuituneError("delete needs --yes when not run from a terminal")
        ans = input(f"delete run {run.id} ({run.name}, {run.status}) and its files? [y/N] ")
        if ans.strip().lower() not in ("y", "yes"):
            print("kept")
            return 0
    from tuitune import launcher

    launcher.delete_run(h, run.id)
    if args.json:
        _print_json({"id": run.id, "deleted": True})
    else:
        print(f"deleted run {run.id}")
    return 0


def _engine(args_list: list[str], what: str) -> dict:
    """An engine subcommand's answer (`launcher.call_engine`); `what` names it in a failure line."""
    from tuitune import launcher

    return launcher.call_engine(args_list, error_prefix=f"{what} failed")


def cmd_predict(args, h) -> int:
    run = h.get_run(args.run)
    if args.text is not None and args.file:
        raise TuituneError("give TEXT or --file, not both")
    if args.text is None:
        return _predict_many(args, run)
    if not args.text.strip():
        raise TuituneError("text is empty: type a sentence")
    cmd = ["predict", str(run.id), args.text] + (["--top-k", str(args.top_k)] if args.top_k is not None else [])
    cmd += ["--base"] if args.base else []
    cmd += generation_argv(args)
    out = _engine(cmd, "predict")
    if args.json:
        _print_json(out)
        return 0
    _print_answer(out)
    return 0


def _print_answer(out: dict) -> None:
    if "generated" in out:
        print(out["generated"])
        return
    for i, p in enumerate(out["predictions"], 1):
        name = p.get("token_str", p.get("label"))
        bar = "█" * int(round(p["score"] * 30))
        print(f"{i:2d}. {name:<20s} {p['score']:.4f} {bar}")


def _inputs(args):
    """The inputs of `predict` without TEXT: the lines of --file, or of stdin (with a `> ` prompt on a terminal)."""
    if args.file:
        try:
            with open(args.file, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as err:
            raise TuituneError(f"cannot read --file {args.file}: {err.strerror or err}") from None
        yield from lines
        return
    tty = sys.stdin.isatty()
    while True:
        if tty:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            if tty:
                sys.stderr.write("\n")
            return
        yield line.rstrip("\n")


def _predict_many(args, run: RunRecord) -> int:
    """Answer inputs one by one from a single engine process (`serve`), so the model loads once.
    A bad line gets its own one-line error and the rest are still answered (exit code 2 at the end)."""
    from tuitune.generation import generation_kwargs
    from tuitune.predict_client import PredictClient

    if run.model_dir is None or not (run.model_dir / "tuitune.json").exists():
        raise TuituneError(f"run {run.id} has no saved model (status {run.status}): predict needs a completed run")
    options = generation_kwargs(args)
    stream = not args.json and sys.stdout.isatty()
    failed = False
    client = PredictClient(run.id)
    try:
        for text in _inputs(args):
            if not text.strip():
                continue
            streamed: list[str] = []

            def on_token(piece: str) -> None:
                streamed.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()

            try:
                out = client.ask(text, top_k=args.top_k, base=args.base, on_token=on_token if stream else None,
                                 **options)
            except TuituneError as err:
                if str(err).startswith("the predict engine"):
                    raise
                failed = True
                if args.json:
                    print(json.dumps({"text": text, "error": str(err)}), flush=True)
                else:
                    print(f"tuitune: error: {err}", file=sys.stderr, flush=True)
                continue
            if args.json:
                out.pop("done", None)
                out.pop("id", None)
                print(json.dumps(out), flush=True)
            elif streamed:
                print(flush=True)
            else:
                _print_answer(out)
                sys.stdout.flush()
    finally:
        client.close()
    return EXIT_ERROR if failed else 0


def cmd_compare(args, h) -> int:
    from tuitune.compare import compare, fmt_value, format_table, table_rows

    data = compare(h, args.runs)
    if args.json:
        _print_json(data)
        return 0
    print(format_table(table_rows(data)))
    if data["config_diff"]:
        print("\nconfig differences:")
        rows = [[d["key"]] + [short(fmt_value(v), 24) for v in d["values"]] for d in data["config_diff"]]
        print(format_table([["field"] + [f"run {r['id']}" for r in data["runs"]]] + rows))
    else:
        print("\nconfigs are identical")
    return 0


def cmd_merge(args, h) -> int:
    run = h.get_run(args.run)
    out = _engine(["merge", str(run.id)] + (["--out", args.out] if args.out else []), "merge")
    if args.json:
        _print_json(out)
    else:
        print(f"merged model saved to {out['path']}")
    return 0


def cmd_export(args, h) -> int:
    from tuitune.export import export_run

    run = h.get_run(args.run)
    files = export_run(h.path, run.id, Path(args.out), args.format)
    if args.json:
        _print_json({"id": run.id, "files": [str(f) for f in files]})
    else:
        print("\n".join(str(f) for f in files))
    return 0


def cmd_run(args, h) -> int:
    from tuitune import launcher
    from tuitune.config import load_config

    cfg = load_config(args.source, args.overrides)
    run_id = launcher.start_run(h, cfg)
    return _after_start(args, h, run_id)


def cmd_resume(args, h) -> int:
    from tuitune import launcher

    run = h.get_run(args.run)
    launcher.resume_run(h, run.id)
    return _after_start(args, h, run.id)


def _after_start(args, h, run_id: int) -> int:
    if args.detach:
        run = h.get_run(run_id)
        if args.json:
            _print_json({"id": run_id, "status": run.status, "pid": run.pid, "run_dir": run.run_dir})
        else:
            print(f"run {run_id} started in the background (pid {run.pid}); "
                  f"`tuitune show {run_id}` or `tuitune` to watch it, `tuitune stop {run_id}` to stop it")
        return 0
    return follow(h, run_id, quiet=args.json, as_json=args.json, notify=args.notify)


def cmd_follow(args, h) -> int:
    run = h.get_run(args.run)
    if not run.live:
        raise TuituneError(f"run {run.id} is {run.status}, not live: `tuitune show {run.id}` shows how it ended")
    return follow(h, run.id, quiet=args.json, as_json=args.json, notify=args.notify)


def follow(h, run_id: int, *, quiet: bool = False, as_json: bool = False, poll_s: float = 0.5,
           notify: Optional[bool] = None) -> int:
    """Follow a run with a progress line until it ends, then ring the terminal (see tuitune.notify).
    Ctrl-C: stop it gracefully (twice: leave it running)."""
    from tuitune import launcher
    from tuitune import notify as notifier

    interrupts = {"n": 0}

    def on_int(signum, frame):
        interrupts["n"] += 1
        if interrupts["n"] == 1:
            try:
                launcher.stop_run(h, run_id)
            except TuituneError:
                pass
            if not quiet:
                sys.stderr.write(f"\nstopping run {run_id} gracefully (checkpoint)… Ctrl-C again to leave it running\n")
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_int)
    tty = sys.stderr.isatty()
    last_line = ""
    try:
        while True:
            run = h.get_run(run_id)
            launcher.wait_pid(run.pid)
            if not quiet:
                line = _progress_line(h, run)
                # A terminal gets one line redrawn in place; a log file gets a line per new step.
                key = line if tty else line.split(" ETA")[0]
                if key != last_line:
                    sys.stderr.write(("\r\033[K" if tty else "") + line + ("" if tty else "\n"))
                    sys.stderr.flush()
                    last_line = key
            if not run.live:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        if not quiet:
            sys.stderr.write(f"\nleft run {run_id} running in the background: `tuitune show {run_id}`\n")
        return 0
    finally:
        signal.signal(signal.SIGINT, old)
    if tty and not quiet:
        sys.stderr.write("\n")
    notifier.send(sys.stderr, notifier.run_message(run), flag=notify)
    summary = run_summary(h, run)
    if as_json:
        _print_json(summary)
    else:
        _print_final(summary)
    return 0 if run.status in ("completed", "stopped") else EXIT_RUN_FAILED


def _progress_line(h, run: RunRecord) -> str:
    if run.status == "queued":
        return f"run {run.id}: starting (loading model and data)…"
    step, total = run.step or 0, run.max_steps or 0
    width = 24
    filled = int(step / total * width) if total else 0
    s = f"run {run.id} {run.status} [{'█' * filled}{'·' * (width - filled)}] {step}/{total or '?'}"
    latest = h.latest(run.id)
    if latest.get("train/loss") is not None:
        s += f" loss {latest['train/loss']:.4f}"
    ev = latest.get(f"eval/{run.main_metric}")
    if ev is not None:
        s += f" eval {run.main_metric} {ev:.4f}"
    left = eta_seconds(run)
    return s + (f" ETA {fmt_clock(left)}" if left is not None else "")


def _metrics_label(s: dict) -> str:
    """"final" only for the final evaluation; the latest periodic one says its step."""
    return "final" if s.get("metrics_phase") == "final" else f"eval@{s.get('metrics_step')}"


def _print_final(s: dict) -> None:
    print(f"run {s['id']} {s['status']}" + (f": {s['error']}" if s["error"] else ""))
    m, b = real_metrics(s["metrics"] or {}), s["baseline"] or {}
    if m:
        rows = [[k, f"{b[k]:.4f}" if k in b else "-", f"{v:.4f}"] for k, v in m.items()]
        print(_table(rows, ["metric", "baseline", _metrics_label(s)]))
    if s["status"] == "completed":
        print(f"model saved in {s['model_dir']}")


COMMANDS = {"run": cmd_run, "runs": cmd_runs, "show": cmd_show, "stop": cmd_stop, "resume": cmd_resume,
            "delete": cmd_delete, "follow": cmd_follow, "presets": cmd_presets, "predict": cmd_predict,
            "compare": cmd_compare, "merge": cmd_merge, "config": cmd_config, "export": cmd_export,
            "errors": cmd_errors, **compress_cli.COMMANDS, **sweep_cli.COMMANDS}


def _warnings_to_stderr() -> None:
    """tuitune's warnings (e.g. an older config upgraded) as `tuitune: warning: ...` lines."""
    import logging

    log = logging.getLogger("tuitune")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tuitune: warning: %(message)s"))
        log.addHandler(handler)
        log.propagate = False


def main(argv: Optional[list[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd is None:
        from tuitune.app import run_app

        return run_app()
    _warnings_to_stderr()
    h = None
    try:
        if args.cmd not in ("presets", "config"):
            from tuitune.history import History

            h = History()
        return COMMANDS[args.cmd](args, h)
    except TuituneError as err:
        if args.debug:
            raise
        if getattr(args, "json", False):
            print(json.dumps({"error": str(err)}))
        print(f"tuitune: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tuitune runs | head`: the reader left; not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # noqa: BLE001 - one line, never a traceback (unless --debug)
        if args.debug:
            raise
        print(f"tuitune: error: {type(err).__name__}: {err} (run with --debug for details)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if h is not None:
            h.close()


if __name__ == "__main__":
    sys.exit(main())
