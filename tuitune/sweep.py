"""Hyperparameter sweeps: Optuna studies whose every trial is an ordinary tuitune run.

A sweep is an Optuna study (its samplers, pruner and storage: we write no search of our own).
Its definition — the base config, the searched keys with their SPECs, the metric, the direction
and the trial budget — lives in the study's user attributes, so a worker on another machine
(`tuitune sweep --join NAME --storage URL`) needs nothing else. Each trial is started through
`tuitune.launcher` like any run (own process session, history rows), and the run row knows its
sweep, trial number and parameters: monitor, replay, compare, predict and resume work on it.

The driver (`Driver`) asks the study for trials, starts them, reads their evaluations from the
history, reports them to Optuna and stops a trial the median pruner gives up on (it ends as
`pruned`). Engines of a sweep watch their driver: when it is killed they end `crashed`, and
`--resume NAME` continues the study up to its budget. Optuna is imported only here, lazily.

SPEC forms: `log:1e-5..1e-3`, `float:0..0.3`, `int:4..32`, `choice:4,8,16`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlsplit, urlunsplit

from tuitune.errors import TuituneError
from tuitune.formatting import fmt_value

if TYPE_CHECKING:
    from pathlib import Path

    import optuna

    from tuitune.history import History

KINDS = ("log", "float", "int", "choice")
SPEC_HELP = "use log:A..B, float:A..B, int:A..B or choice:A,B,C"

STATE_NAMES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
               "WAITING": "waiting"}


def _optuna():
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# -- parameters ------------------------------------------------------------------------------------

def _number(text: str, kind: str, key: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise TuituneError(f"--param {key}: {text!r} is not a number ({SPEC_HELP})") from None
    if kind == "int":
        if v != int(v):
            raise TuituneError(f"--param {key}: int ranges take whole numbers, got {text!r}")
        return int(v)
    return v


@dataclass
class Param:
    """One searched config key and its range or choices."""

    key: str
    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: list[Any] = field(default_factory=list)

    @property
    def spec(self) -> str:
        if self.kind == "choice":
            return "choice:" + ",".join(str(c) for c in self.choices)
        return f"{self.kind}:{self.low:g}..{self.high:g}"

    def values_to_check(self) -> list[Any]:
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.kind == "log")


def parse_spec(key: str, spec: str) -> Param:
    """`log:1e-5..1e-3` and friends; every mistake is one line that says what to write."""
    from tuitune.config import parse_override

    spec = str(spec).strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise TuituneError(f"--param {key}: bad SPEC {spec!r}: {SPEC_HELP}")
    rest = rest.strip()
    if kind == "choice":
        items = [x.strip() for x in rest.split(",") if x.strip()]
        if len(items) < 2:
            raise TuituneError(f"--param {key}: choice needs two or more values, e.g. choice:4,8,16 (got {spec!r})")
        values = [parse_override(f"x={x}")[1] for x in items]
        if len(set(map(str, values))) != len(values):
            raise TuituneError(f"--param {key}: choice lists a value twice ({spec!r})")
        return Param(key, kind, choices=values)
    lo, dots, hi = rest.partition("..")
    if not dots or not lo.strip() or not hi.strip():
        raise TuituneError(f"--param {key}: {kind} needs a range LOW..HIGH, e.g. {kind}:{_EXAMPLE[kind]} (got {spec!r})")
    low, high = _number(lo.strip(), kind, key), _number(hi.strip(), kind, key)
    if not low < high:
        raise TuituneError(f"--param {key}: empty range {rest} (LOW must be below HIGH)")
    if kind == "log" and low <= 0:
        raise TuituneError(f"--param {key}: a log range must be above 0 (got {rest}); use float: for ranges from 0")
    return Param(key, kind, low=low, high=high)


_EXAMPLE = {"log": "1e-5..1e-3", "float": "0..0.3", "int": "4..32"}


def parse_param(text: str) -> Param:
    key, sep, spec = str(text).partition("=")
    if not sep or not key.strip():
        raise TuituneError(f"--param needs KEY=SPEC, e.g. training.learning_rate=log:1e-5..1e-3 (got {text!r})")
    return parse_spec(key.strip(), spec)


def check_key(key: str) -> None:
    """The key names a field of the run config (not a section, not a typo)."""
    from pydantic import BaseModel

    from tuitune.config import RunConfig

    node: Any = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = node.model_fields if isinstance(node, type) and issubclass(node, BaseModel) else None
        if fields is None or part not in fields:
            raise TuituneError(f"--param: unknown config key '{key}' (check its spelling and section; "
                               "`tuitune config PRESET` shows every key)")
        ann = fields[part].annotation
        node = ann
    if isinstance(node, type) and issubclass(node, BaseModel):
        raise TuituneError(f"--param: '{key}' is a section; search one of its fields, e.g. {key}."
                           f"{next(iter(node.model_fields))}")


def set_key(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def normalise_metric(name: str) -> str:
    for prefix in ("eval_", "eval/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# -- the sweep definition -------------------------------------------------------------------------

@dataclass
class SweepDef:
    """What a study searches; stored in the study so every worker reads the same thing."""

    name: str
    config: dict[str, Any]
    params: list[Param]
    metric: str
    direction: str
    trials: int
    timeout_s: Optional[float] = None
    pruner: str = "median"
    startup_trials: int = 2
    warmup_steps: int = 0
    seed: Optional[int] = None
    parent: Optional[str] = None
    source: Optional[str] = None

    @property
    def grid(self) -> Optional[dict[str, list[Any]]]:
        if self.params and all(p.kind == "choice" for p in self.params):
            return {p.key: list(p.choices) for p in self.params}
        return None

    def to_attrs(self) -> dict[str, Any]:
        return {"config": self.config, "params": {p.key: p.spec for p in self.params}, "metric": self.metric,
                "direction": self.direction, "trials": self.trials, "timeout_s": self.timeout_s,
                "pruner": self.pruner, "startup_trials": self.startup_trials, "warmup_steps": self.warmup_steps,
                "seed": self.seed, "parent": self.parent, "source": self.source}

    @classmethod
    def from_attrs(cls, name: str, a: dict[str, Any]) -> "SweepDef":
        return cls(name=name, config=a["config"], params=[parse_spec(k, s) for k, s in a["params"].items()],
                   metric=a["metric"], direction=a["direction"], trials=int(a["trials"]),
                   timeout_s=a.get("timeout_s"), pruner=a.get("pruner", "median"),
                   startup_trials=int(a.get("startup_trials", 2)), warmup_steps=int(a.get("warmup_steps", 0)),
                   seed=a.get("seed"), parent=a.get("parent"), source=a.get("source"))

    def trial_config(self, values: dict[str, Any], number: int) -> dict[str, Any]:
        data = copy.deepcopy(self.config)
        for key, value in values.items():
            set_key(data, key, value)
        data["name"] = f"{self.name}-t{number}"
        return data


def build_definition(config: dict[str, Any], params: list[Param], *, name: str, metric: Optional[str] = None,
                     direction: Optional[str] = None, trials: Optional[int] = None,
                     timeout_s: Optional[float] = None, pruner: str = "median", startup_trials: int = 2,
                     warmup_steps: int = 0, seed: Optional[int] = None, parent: Optional[str] = None,
                     source: Optional[str] = None) -> SweepDef:
    """Check everything that can be checked before a trial starts; one line per mistake."""
    from tuitune.config import validate_config

    if not params:
        raise TuituneError("a sweep needs at least one --param KEY=SPEC (or a `sweep: params:` section)")
    seen = set()
    for p in params:
        if p.key in seen:
            raise TuituneError(f"--param {p.key} is given twice")
        seen.add(p.key)
        check_key(p.key)
        for value in p.values_to_check():
            data = copy.deepcopy(config)
            set_key(data, p.key, value)
            try:
                validate_config(data)
            except TuituneError as err:
                raise TuituneError(f"--param {p.key}: the value {value!r} is not valid ({err})") from None
    base = validate_config(config)
    spec = base.spec  # the task registry: what the task reports on its evaluation split, and which way is better
    metric = normalise_metric(metric or base.main_metric)
    if metric not in spec.metrics:
        raise TuituneError(f"--metric {metric}: a {base.task} run does not report it; "
                           f"choose one of {', '.join(spec.metrics)}")
    if direction is None:
        direction = spec.direction(metric)
    if direction not in ("maximize", "minimize"):
        raise TuituneError(f"--direction must be maximize or minimize, got {direction!r}")
    if pruner not in ("median", "none"):
        raise TuituneError(f"--pruner must be median or none, got {pruner!r}")
    d = SweepDef(name=name, config=base.model_dump(mode="json"), params=params, metric=metric, direction=direction,
                 trials=0, timeout_s=timeout_s, pruner=pruner, startup_trials=startup_trials,
                 warmup_steps=warmup_steps, seed=seed, parent=parent, source=source)
    grid = d.grid
    size = math.prod(len(v) for v in grid.values()) if grid else None
    if trials is not None and trials < 1:
        raise TuituneError(f"--trials must be 1 or more, got {trials}")
    d.trials = min(trials, size) if (trials and size) else (trials or size or 10)
    return d


def read_source(source: str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A preset or YAML file: (base config dict with --set applied, its `sweep:` section, default name)."""
    from pathlib import Path

    from tuitune import presets
    from tuitune.config import apply_overrides, read_yaml

    path = Path(source).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        data, default = read_yaml(path), path.stem
    else:
        data, default = read_yaml(presets.preset_path(source)), source
    section = data.pop("sweep", None) or {}
    if not isinstance(section, dict):
        raise TuituneError(f"{source}: `sweep:` must be a mapping (params:, trials:, metric: …)")
    unknown = set(section) - {"params", "trials", "metric", "direction", "parallel", "timeout", "pruner",
                              "startup_trials", "warmup_steps", "seed", "name"}
    if unknown:
        raise TuituneError(f"{source}: unknown key 'sweep.{sorted(unknown)[0]}' (sweep takes params, trials, "
                           "metric, direction, parallel, timeout, pruner, startup_trials, warmup_steps, seed, name)")
    data = apply_overrides(data, list(overrides or []))
    data.setdefault("name", default)
    return data, section, default


# -- storage and studies ----------------------------------------------------------------------------

def default_storage() -> str:
    from tuitune import paths

    return f"sqlite:///{paths.home() / 'sweeps.db'}"


def public_url(url: str) -> str:
    """The storage URL without its password (for the history and for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str):
    optuna = _optuna()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith(("postgresql", "mysql")):
        kwargs = {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError as err:
            raise TuituneError(f"sweep storage {public_url(url)} needs a database driver: {err}") from None
        except Exception as err:  # noqa: BLE001 - sqlalchemy's errors are many; the user needs one line
            # Two workers opening a new, empty database at once race to create Optuna's tables:
            # the loser finds them made and succeeds on a second look.
            if attempt < 2:
                time.sleep(1.0 + attempt)
                continue
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise TuituneError(f"cannot open the sweep storage {public_url(url)}: {first[:200]}") from None


def make_sampler(d: SweepDef):
    optuna = _optuna()
    grid = d.grid
    if grid:
        return optuna.samplers.GridSampler(grid, seed=d.seed)
    return optuna.samplers.TPESampler(seed=d.seed, n_startup_trials=max(2, min(10, d.trials // 3)))


def make_pruner(d: SweepDef):
    optuna = _optuna()
    if d.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=d.startup_trials, n_warmup_steps=d.warmup_steps)


def create_study(d: SweepDef, storage_url: str):
    optuna = _optuna()
    storage = open_storage(storage_url)
    try:
        study = optuna.create_study(study_name=d.name, storage=storage, direction=d.direction,
                                    sampler=make_sampler(d), pruner=make_pruner(d))
    except optuna.exceptions.DuplicatedStudyError:
        raise TuituneError(f"a sweep named {d.name!r} already exists in {public_url(storage_url)}: "
                           f"pick another --name, or `tuitune sweep --join {d.name}` to add trials to it") from None
    study.set_user_attr("tuitune", d.to_attrs())
    return study


def load_study(name: str, storage_url: str):
    """(study, definition) of an existing sweep."""
    optuna = _optuna()
    storage = open_storage(storage_url)
    try:
        probe = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise TuituneError(f"no sweep named {name!r} in {public_url(storage_url)}: `tuitune sweeps` lists them") from None
    attrs = probe.user_attrs.get("tuitune")
    if not attrs:
        raise TuituneError(f"study {name!r} in {public_url(storage_url)} was not made by tuitune sweep")
    d = SweepDef.from_attrs(name, attrs)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(d), pruner=make_pruner(d))
    return study, d


def unique_name(base: str, storage_url: str) -> str:
    optuna = _optuna()
    try:
        taken = set(optuna.get_all_study_names(open_storage(storage_url)))
    except Exception:  # noqa: BLE001
        taken = set()
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def default_name(config_name: str) -> str:
    return config_name if config_name.endswith("sweep") else f"{config_name}-sweep"


def spawn_driver(h: "History", name: str, url: str, parallel: int = 1) -> tuple[int, "Path"]:
    """Run the sweep's trials from a background process (own session, log under the tuitune home):
    the CLI's --detach and the UI's launch. Returns (pid, log file)."""
    import subprocess
    import sys

    from tuitune import paths

    log_dir = paths.home() / "sweeps"
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = log_dir / f"{name}.log"
    cmd = [sys.executable, "-m", "tuitune.cli", "sweep", "--join", name, "--storage", url, "--parallel", str(parallel)]
    env = dict(os.environ)
    env["TUITUNE_HOME"] = str(paths.home())
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, close_fds=True)
    mark_driver(h, name, proc.pid)
    return proc.pid, log


# -- the sweeps this machine knows (history) --------------------------------------------------------

def remember(h: "History", name: str, storage_url: str, parent: Optional[str] = None) -> None:
    from tuitune.history import now_ms

    h.conn.execute("INSERT INTO sweeps (name, storage, parent, created_at, pid, host) VALUES (?,?,?,?,?,?) "
                   "ON CONFLICT(name) DO UPDATE SET storage=excluded.storage",
                   (name, public_url(storage_url), parent, now_ms(), None, socket.gethostname()))


def mark_driver(h: "History", name: str, pid: Optional[int]) -> None:
    h.conn.execute("UPDATE sweeps SET pid=?, host=? WHERE name=?", (pid, socket.gethostname(), name))


def known_sweeps(h: "History") -> list[dict[str, Any]]:
    return [dict(r) for r in h.conn.execute("SELECT * FROM sweeps ORDER BY created_at DESC")]


def storage_of(h: "History", name: str, given: Optional[str] = None) -> str:
    if given:
        return given
    row = h.conn.execute("SELECT storage FROM sweeps WHERE name=?", (name,)).fetchone()
    if row is None:
        return default_storage()
    if ":***@" in row["storage"]:
        raise TuituneError(f"sweep {name} lives in {row['storage']}: give --storage URL with its password")
    return row["storage"]


def driver_alive(h: "History", name: str) -> Optional[int]:
    from tuitune.history import pid_alive

    row = h.conn.execute("SELECT pid, host FROM sweeps WHERE name=?", (name,)).fetchone()
    if row and row["pid"] and row["host"] == socket.gethostname() and pid_alive(row["pid"]) \
            and row["pid"] != os.getpid():
        return int(row["pid"])
    return None


# -- budget, leaderboard, refine ---------------------------------------------------------------------

def _counts(t) -> bool:
    """Does this trial use up the budget? Trials cut off by a killed sweep and surplus asks do not."""
    name = t.state.name
    if name == "FAIL":
        return not (t.user_attrs.get("interrupted") or t.user_attrs.get("surplus"))
    return name in ("COMPLETE", "PRUNED", "RUNNING")  # WAITING: enqueued, not started


def used(study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if _counts(t))


def trial_state(t) -> str:
    if t.state.name == "FAIL" and t.user_attrs.get("interrupted"):
        return "crashed"
    return STATE_NAMES.get(t.state.name, t.state.name.lower())


def leaderboard(study, d: SweepDef) -> list[dict[str, Any]]:
    """Every trial (best first, then the rest by number)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus") or t.state.name == "WAITING":  # not started (queued values)
            continue
        value = t.value if t.state.name == "COMPLETE" else None
        dur = None
        if t.datetime_start and t.datetime_complete:
            dur = (t.datetime_complete - t.datetime_start).total_seconds()
        elif t.datetime_start and t.state.name == "RUNNING":
            dur = time.time() - t.datetime_start.timestamp()
        rows.append({"trial": t.number, "state": trial_state(t), "params": dict(t.params), "value": value,
                     "last": t.user_attrs.get("last_value"), "duration_s": dur,
                     "run_id": t.user_attrs.get("run_id"), "host": t.user_attrs.get("host"),
                     "error": t.user_attrs.get("error")})
    sign = -1 if d.direction == "maximize" else 1
    rows.sort(key=lambda r: (r["value"] is None, sign * (r["value"] or 0), r["trial"]))
    return rows


def best_so_far(study, d: SweepDef) -> list[tuple[int, float]]:
    out, best = [], None
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state.name != "COMPLETE" or t.value is None:
            continue
        if best is None or (t.value > best if d.direction == "maximize" else t.value < best):
            best = t.value
        out.append((t.number, best))
    return out


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances (empty before three trials have completed: fewer say nothing)."""
    import warnings

    optuna = _optuna()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 3:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(study))
    except Exception:  # noqa: BLE001 - too few or identical trials: nothing to say yet
        return {}


def summary(study, d: SweepDef, storage_url: str, *, with_importances: bool = True) -> dict[str, Any]:
    board = leaderboard(study, d)
    done = [r for r in board if r["state"] in ("completed", "pruned", "failed")]
    best = next((r for r in board if r["value"] is not None), None)
    return {"name": d.name, "storage": public_url(storage_url), "metric": d.metric, "direction": d.direction,
            "budget": d.trials, "finished": len(done), "parent": d.parent,
            "sampler": "grid" if d.grid else "tpe", "pruner": d.pruner,
            "params": {p.key: p.spec for p in d.params}, "best": best, "trials": board,
            "best_so_far": best_so_far(study, d),
            "importances": importances(study) if with_importances else {}}


def refine_params(d: SweepDef, study, top: int) -> list[Param]:
    """Numeric ranges narrowed around the best `top` completed trials (a 10% margin of the old
    width, clipped to the old range; at most half the old width); choices cut to those used."""
    good = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    if not good:
        raise TuituneError(f"sweep {d.name} has no completed trial yet: nothing to refine around")
    good.sort(key=lambda t: t.value, reverse=d.direction == "maximize")
    best = good[:max(1, top)]
    out = []
    for p in d.params:
        vals = [t.params[p.key] for t in best if p.key in t.params]
        if not vals:
            out.append(p)
            continue
        if p.kind == "choice":
            kept = [c for c in p.choices if c in vals]
            out.append(Param(p.key, "choice", choices=kept) if len(kept) >= 2 else
                       Param(p.key, "choice", choices=kept + [c for c in p.choices if c not in kept][:1]))
            continue
        log = p.kind == "log"
        f = math.log10 if log else (lambda x: x)
        inv = (lambda x: 10 ** x) if log else (lambda x: x)
        lo, hi = f(p.low), f(p.high)
        width = hi - lo
        a, b = min(f(v) for v in vals), max(f(v) for v in vals)
        a, b = max(lo, a - 0.1 * width), min(hi, b + 0.1 * width)
        if b - a > width / 2:  # the best trials are spread out: centre half the width on the best one
            centre = f(best[0].params[p.key])
            a = max(lo, min(centre - width / 4, hi - width / 2))
            b = a + width / 2
        low, high = inv(a), inv(b)
        if p.kind == "int":
            low, high = int(math.floor(low)), int(math.ceil(high))
            if high <= low:
                high = low + 1
        out.append(Param(p.key, p.kind, low=float(f"{low:.6g}") if p.kind != "int" else low,
                         high=float(f"{high:.6g}") if p.kind != "int" else high))
    return out


# -- GPUs ------------------------------------------------------------------------------------------

def visible_gpus() -> list[str]:
    """GPU ids a trial may be given: CUDA_VISIBLE_DEVICES when set, else every GPU NVML sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [x.strip() for x in env.split(",") if x.strip() and x.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no GPU: CPU trials
        return []


def device_slots(gpus: list[str], parallel: int, per_trial: int = 1) -> list[Optional[str]]:
    """CUDA_VISIBLE_DEVICES for each of `parallel` trial slots: each trial its own GPUs
    (`per_trial`, e.g. its DDP processes). No GPU: None for every slot (CPU trials)."""
    if parallel < 1:
        raise TuituneError(f"--parallel must be 1 or more, got {parallel}")
    if not gpus:
        return [None] * parallel
    per_trial = max(1, per_trial)
    if parallel * per_trial > len(gpus):
        fit = len(gpus) // per_trial
        raise TuituneError(f"--parallel {parallel} needs {parallel * per_trial} GPUs ({per_trial} per trial) "
                           f"but {len(gpus)} are visible: use --parallel {max(1, fit)}")
    return [",".join(gpus[i * per_trial:(i + 1) * per_trial]) for i in range(parallel)]


# -- the driver --------------------------------------------------------------------------------------

@dataclass
class _Active:
    trial: Any
    run_id: int
    slot: int
    reported: set = field(default_factory=set)
    pruned_at: Optional[tuple[int, float]] = None


class Driver:
    """Runs trials of one study from this process until the budget (or timeout) is used up."""

    def __init__(self, h: "History", study, d: SweepDef, storage_url: str, *, parallel: int = 1,
                 say: Callable[[str], None] = lambda s: None, poll_s: float = 0.5,
                 slots: Optional[list[Optional[str]]] = None):
        self.h, self.study, self.d, self.storage_url = h, study, d, storage_url
        self.say = say
        self.poll_s = poll_s
        per = max(1, int(d.config.get("training", {}).get("processes", 1)))
        self.slots = slots if slots is not None else device_slots(visible_gpus(), parallel, per)
        self.active: dict[int, _Active] = {}
        self.stopping: Optional[str] = None
        self.worker = uuid.uuid4().hex[:8]
        self.host = socket.gethostname()

    # -- recovery of trials a killed driver left behind
    def recover(self) -> list[int]:
        """Trials started on this host by a driver that is gone end as crashed (they do not use up
        the budget); their runs are stopped if still alive and marked crashed."""
        from tuitune import launcher
        from tuitune.history import LIVE, pid_alive

        optuna = _optuna()
        found = []
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            a = t.user_attrs
            if a.get("host") != self.host or not a.get("pid") or a["pid"] == os.getpid() or pid_alive(a["pid"]):
                continue
            run_id = a.get("run_id")
            if run_id is not None:
                try:
                    run = self.h.get_run(run_id)
                except TuituneError:
                    run = None  # this worker's history does not hold it: another home on this host
                if run is not None:
                    if run.status in LIVE:
                        launcher.stop_run(self.h, run_id)
                        deadline = time.time() + 120
                        while self.h.get_run(run_id).status in LIVE and time.time() < deadline:
                            time.sleep(0.5)
                    run = self.h.get_run(run_id)
                    if run.status not in LIVE and run.status != "crashed" and run.status != "completed":
                        self.h.set_status(run_id, "crashed", error=f"crashed: the sweep process running trial "
                                          f"{t.number} of {self.d.name} was killed")
            self.study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            self.study._storage.set_trial_user_attr(t._trial_id, "error", "the sweep process was killed")
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            self._retry_later(t.params)
            found.append(t.number)
            self.say(f"trial {t.number}" + (f" (run {run_id})" if run_id else "") + ": crashed with its sweep process")
        return found

    def _retry_later(self, params: dict[str, Any]) -> None:
        """An interrupted trial's values are tried again (a grid would otherwise lose its point)."""
        if params and len(params) == len(self.d.params):
            self.study.enqueue_trial(dict(params))

    # -- the loop
    def run(self) -> None:
        from tuitune import launcher

        start = time.monotonic()
        try:
            while True:
                for slot, a in list(self.active.items()):
                    if self._poll(a):
                        del self.active[slot]
                timed_out = self.d.timeout_s is not None and time.monotonic() - start > self.d.timeout_s
                if timed_out and not self.stopping:
                    self.stopping = "timeout"
                    self.say(f"sweep {self.d.name}: --timeout reached; no new trials")
                while not self.stopping and len(self.active) < len(self.slots) and used(self.study) < self.d.trials:
                    slot = next(i for i in range(len(self.slots)) if i not in self.active)
                    if not self._start(slot):
                        break
                if not self.active:
                    break
                time.sleep(self.poll_s)
        finally:
            for a in self.active.values():  # interrupted: the trials stop with a checkpoint
                try:
                    launcher.stop_run(self.h, a.run_id)
                except TuituneError:
                    pass

    def interrupt(self, reason: str) -> None:
        """Start no more trials; stop the running ones (they end stopped, with a checkpoint)."""
        from tuitune import launcher

        if self.stopping == reason:
            return
        self.stopping = reason
        for a in self.active.values():
            try:
                launcher.stop_run(self.h, a.run_id)
            except TuituneError:
                pass

    def _start(self, slot: int) -> bool:
        from tuitune import launcher
        from tuitune.config import validate_config

        optuna = _optuna()
        trial = self.study.ask()
        trial.set_user_attr("host", self.host)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("worker", self.worker)
        # Several workers may ask at once: a trial numbered past the budget gives its place back.
        before = [t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number and _counts(t)]
        if len(before) >= self.d.trials:
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return False
        values = {p.key: p.suggest(trial) for p in self.d.params}
        shown = " ".join(f"{k}={fmt_value(v)}" for k, v in values.items())
        try:
            cfg = validate_config(self.d.trial_config(values, trial.number))
        except TuituneError as err:
            trial.set_user_attr("error", str(err))
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.say(f"trial {trial.number} failed before it started ({shown}): {err}")
            return True
        env = {"TUITUNE_SWEEP_PID": str(os.getpid())}
        if self.slots[slot] is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.slots[slot]
        run_id = launcher.start_run(self.h, cfg, env=env, fields={
            "sweep": self.d.name, "trial": trial.number, "params": json.dumps(values)})
        trial.set_user_attr("run_id", run_id)
        self.active[slot] = _Active(trial, run_id, slot)
        gpu = f" on GPU {self.slots[slot]}" if self.slots[slot] is not None else ""
        self.say(f"trial {trial.number} (run {run_id}) started{gpu}: {shown}")
        return True

    def _poll(self, a: _Active) -> bool:
        """Report new evaluations, prune, and finish the trial once its run has ended."""
        from tuitune import launcher
        from tuitune.history import LIVE

        optuna = _optuna()
        run = self.h.get_run(a.run_id)
        launcher.wait_pid(run.pid)
        key = f"eval_{self.d.metric}"
        for e in self.h.evaluations(a.run_id, phase="eval"):
            value = e.metrics.get(key)
            if e.step in a.reported or not isinstance(value, (int, float)) or math.isnan(value):
                continue
            a.reported.add(e.step)
            a.trial.report(float(value), e.step)
            a.trial.set_user_attr("last_value", float(value))
            if a.pruned_at is None and run.status in LIVE and a.trial.should_prune():
                a.pruned_at = (e.step, float(value))
                try:
                    launcher.stop_run(self.h, a.run_id)
                except TuituneError:
                    pass
        if run.status in LIVE:
            return False
        n = a.trial.number
        if run.status == "completed":
            final = {}
            for e in self.h.evaluations(a.run_id, phase="final"):
                final = e.metrics
            value = final.get(key)
            if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
                a.trial.set_user_attr("error", f"{self.d.metric} is {value} at the end")
                self.study.tell(a.trial, state=optuna.trial.TrialState.FAIL)
                self.say(f"trial {n} (run {a.run_id}) failed: {self.d.metric} is {value}")
                return True
            self.study.tell(a.trial, float(value))
            best = self.study.best_trial.number == n
            self.say(f"trial {n} (run {a.run_id}) completed: {self.d.metric} {value:.4f}"
                     + (" (best so far)" if best else ""))
            return True
        if run.status == "stopped" and a.pruned_at is not None:
            step, value = a.pruned_at
            why = (f"pruned at step {step}: {self.d.metric} {value:.4g} was worse than the median of earlier "
                   f"trials at that step")
            self.h.set_status(a.run_id, "pruned", error=why)
            self.study.tell(a.trial, state=optuna.trial.TrialState.PRUNED)
            self.say(f"trial {n} (run {a.run_id}) {why}")
            return True
        reason = run.error or run.status
        a.trial.set_user_attr("error", reason)
        interrupted = bool(self.stopping) and run.status == "stopped"
        if interrupted:
            a.trial.set_user_attr("interrupted", True)  # stopped with the sweep: resume runs it again
        self.study.tell(a.trial, state=optuna.trial.TrialState.FAIL)
        if interrupted:
            self._retry_later(a.trial.params)
        self.say(f"trial {n} (run {a.run_id}) {run['status']}: {reason}")
        return True


def install_signals(driver: Driver) -> Callable[[], None]:
    """Ctrl-C / SIGTERM: no new trials, running ones stop with a checkpoint; a second Ctrl-C leaves."""
    count = {"n": 0}

    def handler(signum, frame):
        count["n"] += 1
        if count["n"] > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        driver.say(f"sweep {driver.d.name}: stopping its running trials (checkpoints)…; "
                   f"`tuitune sweep --resume {driver.d.name}` continues it")
        driver.interrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(s, h) for s, h in old.items()]
