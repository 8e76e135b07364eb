"""`tuitune sweep …` and `tuitune sweeps`: hyperparameter searches from the command line.

  tuitune sweep PRESET|FILE --param KEY=SPEC … [--trials N] [--metric M] [--parallel N] …
  tuitune sweep NAME --show              the leaderboard (--json)
  tuitune sweep --join NAME [--storage URL]   run trials of an existing study (another machine)
  tuitune sweep --resume NAME            continue after the sweep process was killed
  tuitune sweep --refine NAME [--top K]  a linked study with ranges narrowed around the best K
  tuitune sweeps                         every sweep this machine knows

Parsing is light (no Optuna); the commands import `tuitune.sweep` (and Optuna) when they run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from tuitune.errors import TuituneError
from tuitune.formatting import fmt_value


def add_parsers(sub, common) -> None:
    s = sub.add_parser("sweep", parents=[common], help="search hyperparameters: every trial is a run (Optuna)")
    s.add_argument("source", nargs="?", metavar="PRESET|FILE|NAME",
                   help="a preset or YAML file to search around; a sweep's NAME with --show")
    s.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=SPEC",
                   help="a config key to search: log:1e-5..1e-3, float:0..0.3, int:4..32, choice:4,8,16 (repeatable)")
    s.add_argument("--trials", type=int, help="trial budget (default: the grid's size, else 10)")
    s.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds")
    s.add_argument("--metric", help="metric to optimise (default: the task's main metric on the eval split)")
    s.add_argument("--direction", choices=["maximize", "minimize"])
    s.add_argument("--parallel", type=int, help="trials at once on this machine (each its own GPUs)")
    s.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sweeps.db in the tuitune home)")
    s.add_argument("--name", help="the sweep's name (default: the config's name)")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config field (repeatable)")
    s.add_argument("--pruner", choices=["median", "none"], help="cut poor trials short (default median)")
    s.add_argument("--startup-trials", type=int, help="trials that finish before the pruner may prune (default 2)")
    s.add_argument("--seed", type=int, help="sampler seed (reproducible suggestions)")
    s.add_argument("--detach", action="store_true", help="run the sweep in the background")
    s.add_argument("--dry-run", action="store_true", help="check and print the search; start nothing")
    s.add_argument("--show", action="store_true", help="print the sweep NAME's leaderboard")
    s.add_argument("--join", metavar="NAME", help="run trials of an existing sweep (e.g. from another machine)")
    s.add_argument("--resume", metavar="NAME", help="continue a sweep whose process was killed")
    s.add_argument("--refine", metavar="NAME", help="a new sweep narrowed around NAME's best trials")
    s.add_argument("--top", type=int, default=3, help="with --refine: how many best trials to narrow around")
    sub.add_parser("sweeps", parents=[common], help="list the sweeps and their best trial")


# -- output ------------------------------------------------------------------------------------------

def _say(args):
    def say(line: str) -> None:
        if not args.json:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    return say


def leaderboard_table(s: dict[str, Any]) -> str:
    from tuitune.cli import _table

    keys = list(s["params"])
    rows = []
    for r in s["trials"]:
        value = r["value"] if r["value"] is not None else r.get("last")
        rows.append([str(r["trial"]), r["state"], *[fmt_value(r["params"].get(k)) for k in keys],
                     fmt_value(value) + ("" if r["value"] is not None or value is None else " (last)"),
                     f"{int(r['duration_s'])} s" if r["duration_s"] is not None else "-",
                     fmt_value(r["run_id"])])
    heads = ["trial", "status", *[k.split(".")[-1] for k in keys], s["metric"], "duration", "run"]
    return _table(rows, heads)


def print_summary(s: dict[str, Any]) -> None:
    print(f"sweep {s['name']}: {s['finished']}/{s['budget']} trials finished · {s['sampler']} sampler · "
          f"{s['direction']} {s['metric']} · storage {s['storage']}"
          + (f" · refines {s['parent']}" if s.get("parent") else ""))
    print("search: " + "  ".join(f"{k}={v}" for k, v in s["params"].items()))
    if s["trials"]:
        print(leaderboard_table(s))
    b = s["best"]
    if b:
        params = "  ".join(f"{k}={fmt_value(v)}" for k, v in b["params"].items())
        print(f"best: trial {b['trial']} (run {b['run_id']}) {s['metric']} {b['value']:.4f}  {params}")
    if s.get("importances"):
        print("importance: " + "  ".join(f"{k} {v:.2f}" for k, v in s["importances"].items()))


# -- commands ----------------------------------------------------------------------------------------

def cmd_sweeps(args, h) -> int:
    from tuitune import sweep
    from tuitune.cli import _print_json, _table

    out = []
    for row in sweep.known_sweeps(h):
        item = {"name": row["name"], "storage": row["storage"], "parent": row["parent"],
                "running": sweep.driver_alive(h, row["name"]) is not None}
        try:
            study, d = sweep.load_study(row["name"], sweep.storage_of(h, row["name"]))
            s = sweep.summary(study, d, row["storage"], with_importances=False)
            item.update(metric=s["metric"], budget=s["budget"], finished=s["finished"],
                        best=(s["best"] or {}).get("value"), best_run=(s["best"] or {}).get("run_id"))
        except TuituneError as err:
            item["error"] = str(err)
        out.append(item)
    if args.json:
        _print_json(out)
        return 0
    if not out:
        print("no sweeps yet: `tuitune sweep PRESET --param training.learning_rate=log:1e-5..1e-3` starts one")
        return 0
    rows = [[i["name"], "running" if i["running"] else "", f"{i.get('finished', '?')}/{i.get('budget', '?')}",
             i.get("metric", "?"), fmt_value(i.get("best")), fmt_value(i.get("best_run")), i["parent"] or "", i["storage"]]
            for i in out]
    print(_table(rows, ["sweep", "", "trials", "metric", "best", "run", "refines", "storage"]))
    return 0


def cmd_sweep(args, h) -> int:
    from tuitune import sweep

    modes = [m for m in ("show", "join", "resume", "refine") if getattr(args, m)]
    if len(modes) > 1:
        raise TuituneError(f"--{modes[0]} and --{modes[1]} do not go together: pick one")
    if args.show:
        if not args.source:
            raise TuituneError("--show needs the sweep's NAME: `tuitune sweep NAME --show`")
        return _show(args, h, args.source)
    if args.join or args.resume:
        name = args.join or args.resume
        url = sweep.storage_of(h, name, args.storage)
        return _work(args, h, name, url, resume=bool(args.resume))
    if args.refine:
        return _refine(args, h)
    if not args.source:
        raise TuituneError("give a preset or YAML file to search around: `tuitune sweep PRESET --param KEY=SPEC`")
    data, section, default = sweep.read_source(args.source, args.overrides)
    specs = [sweep.parse_param(p) for p in args.params]
    for key, spec in (section.get("params") or {}).items():
        if key not in {p.key for p in specs}:
            specs.append(sweep.parse_spec(key, spec))
    url = args.storage or sweep.default_storage()
    explicit = args.name or section.get("name")
    d = sweep.build_definition(
        data, specs, name=explicit or sweep.default_name(data.get("name") or default),
        metric=args.metric or section.get("metric"), direction=args.direction or section.get("direction"),
        trials=args.trials if args.trials is not None else section.get("trials"), timeout_s=args.timeout or section.get("timeout"),
        pruner=args.pruner or section.get("pruner", "median"),
        startup_trials=args.startup_trials or section.get("startup_trials", 2),
        warmup_steps=section.get("warmup_steps", 0), seed=args.seed if args.seed is not None else section.get("seed"),
        source=args.source)
    args.parallel = args.parallel or section.get("parallel") or 1
    return _launch(args, h, d, url, rename=not explicit)


def _launch(args, h, d, url: str, *, rename: bool = False) -> int:
    from tuitune import sweep
    from tuitune.cli import _print_json

    per = max(1, int(d.config.get("training", {}).get("processes", 1)))
    slots = sweep.device_slots(sweep.visible_gpus(), args.parallel or 1, per)  # checked before anything starts
    if args.dry_run:
        plan = {"name": d.name, "metric": d.metric, "direction": d.direction, "trials": d.trials,
                "sampler": "grid" if d.grid else "tpe", "pruner": d.pruner, "parallel": len(slots),
                "devices": slots, "params": {p.key: p.spec for p in d.params}, "parent": d.parent}
        if args.json:
            _print_json(plan)
        else:
            print(f"sweep {d.name}: {d.trials} trials, {plan['sampler']} sampler, {d.direction} {d.metric}, "
                  f"{len(slots)} at once" + (f", refines {d.parent}" if d.parent else ""))
            for p in d.params:
                print(f"  {p.key} = {p.spec}")
        return 0
    if rename:  # a default name never collides with an earlier sweep: -2, -3 …
        d.name = sweep.unique_name(d.name, url)
    sweep.create_study(d, url)
    sweep.remember(h, d.name, url, parent=d.parent)
    return _work(args, h, d.name, url, slots=slots)


def _work(args, h, name: str, url: str, *, resume: bool = False, slots=None) -> int:
    """Run trials of the study `name` here (or, with --detach, in a background process)."""
    from tuitune import sweep

    study, d = sweep.load_study(name, url)
    other = sweep.driver_alive(h, name)
    if resume and other:
        raise TuituneError(f"sweep {name} is still running (pid {other}): nothing to resume")
    sweep.remember(h, name, url, parent=d.parent)
    if args.detach:
        pid, log = sweep.spawn_driver(h, name, url, args.parallel or 1)
        if args.json:
            from tuitune.cli import _print_json

            _print_json({"name": name, "pid": pid, "log": str(log), "storage": sweep.public_url(url)})
        else:
            print(f"sweep {name} runs in the background (pid {pid}, log {log}); "
                  f"`tuitune sweep {name} --show` for its leaderboard")
        return 0
    say = _say(args)
    driver = sweep.Driver(h, study, d, url, parallel=args.parallel or 1, say=say, slots=slots)
    driver.recover()
    if sweep.used(study) >= d.trials:
        say(f"sweep {name} has used its budget of {d.trials} trials")
    sweep.mark_driver(h, name, os.getpid())
    restore = sweep.install_signals(driver)
    try:
        driver.run()
    except KeyboardInterrupt:
        say(f"left sweep {name}; its trials were asked to stop. `tuitune sweep --resume {name}` continues it")
        return 130
    finally:
        restore()
        sweep.mark_driver(h, name, None)
    return _show(args, h, name, url)


def _show(args, h, name: str, url: str | None = None) -> int:
    from tuitune import sweep
    from tuitune.cli import _print_json

    url = url or sweep.storage_of(h, name, args.storage)
    study, d = sweep.load_study(name, url)
    s = sweep.summary(study, d, url)
    s["running"] = sweep.driver_alive(h, name) is not None
    if args.json:
        _print_json(s)
    else:
        print_summary(s)
    return 0


def _refine(args, h) -> int:
    from tuitune import sweep

    parent = args.refine
    url = sweep.storage_of(h, parent, args.storage)
    study, d = sweep.load_study(parent, url)
    if args.top < 1:
        raise TuituneError(f"--top must be 1 or more, got {args.top}")
    params = sweep.refine_params(d, study, args.top)
    config = d.config
    if args.overrides:
        from tuitune.config import apply_overrides

        config = apply_overrides(json.loads(json.dumps(config)), args.overrides)
    name = args.name or sweep.unique_name(f"{parent}-refine", url)
    new = sweep.build_definition(config, params, name=name, metric=d.metric, direction=d.direction,
                                 trials=args.trials or d.trials, timeout_s=args.timeout or d.timeout_s,
                                 pruner=args.pruner or d.pruner, startup_trials=args.startup_trials or d.startup_trials,
                                 warmup_steps=d.warmup_steps, seed=args.seed if args.seed is not None else d.seed,
                                 parent=parent, source=d.source)
    args.parallel = args.parallel or 1
    return _launch(args, h, new, url)


def wait_for_study(name: str, url: str, timeout_s: float = 60.0) -> None:
    """For scripts and tests: wait until a study exists (another process is creating it)."""
    from tuitune import sweep

    deadline = time.time() + timeout_s
    while True:
        try:
            sweep.load_study(name, url)
            return
        except TuituneError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


COMMANDS = {"sweep": cmd_sweep, "sweeps": cmd_sweeps}
