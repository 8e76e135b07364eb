"""A new run, step by step: Model → Dataset → Method & training → Review (YAML, save, launch).

The draft config lives on the app (`app.draft`, a plain dict in `RunConfig`'s shape); each step
fills its part. Inspection runs in workers through `tuitune.model_info` and
`tuitune.dataset_info`; bad input shows one inline message next to the field, never a crash.
Launching posts `RunLaunched`: the app takes it from there.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional, cast

from pydantic import ValidationError
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.suggester import Suggester
from textual.widgets import DataTable, Footer, Header, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from tuitune.config import METHODS, TASKS, RunConfig, describe_validation_error
from tuitune.formatting import fmt_bytes, fmt_count
from tuitune.tasks import task_spec
from tuitune.screens import messages
from tuitune.screens.base import BaseScreen
from tuitune.screens.dialogs import AskDialog, PickDialog

if TYPE_CHECKING:
    from tuitune.app import TuituneApp


class PathSuggester(Suggester):
    """Completes local paths as they are typed (→ accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> Optional[str]:
        if not value or not value.startswith(("/", ".", "~")):
            return None
        p = Path(value).expanduser()
        parent, stem = (p, "") if value.endswith("/") else (p.parent, p.name)
        try:
            names = sorted(x.name + ("/" if x.is_dir() else "") for x in parent.iterdir()
                           if x.name.startswith(stem) and not x.name.startswith("."))
        except OSError:
            return None
        if not names:
            return None
        return value + names[0][len(stem):]


def draft_of(app: "TuituneApp") -> dict[str, Any]:
    """The app's draft config, with every section present."""
    d = app.draft
    for part in ("model", "data", "method", "quantization", "training", "evaluation"):
        d.setdefault(part, {})
    return d


# -- Model ----------------------------------------------------------------------------------------

class ModelScreen(BaseScreen):
    """Step 1: which model. Hub id, local folder (→ completes paths), HF cache or demo assets."""

    BINDINGS = [Binding("ctrl+n", "next", "Next: dataset"), Binding("escape", "back", "Back"),
                Binding("ctrl+l", "pick", "Choose from list")]

    def __init__(self) -> None:
        super().__init__()
        self.info = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Model — hub id, local folder, or pick (ctrl+l); enter to inspect", classes="step")
        yield Input(placeholder="demo:minilm, bert-base-cased, /path/to/model", id="model-name",
                    suggester=PathSuggester())
        yield Static("", id="model-error", classes="error", markup=False)
        with Horizontal(classes="split"):
            yield OptionList(id="model-choices", classes="choices")
            yield Static("", id="model-info", classes="panel")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        d = draft_of(self.tuitune)
        name = d["model"].get("name_or_path", "")
        self.query_one("#model-name", Input).value = name
        self.query_one("#model-name", Input).focus()
        self._choices()
        if name:
            self.inspect(name)

    def on_screen_resume(self) -> None:
        """Back from the Dataset step: the estimate's length follows the data chosen there."""
        d = draft_of(self.tuitune)
        if self.info is not None and d["data"].get("path") != getattr(self, "_data_seen", None):
            self.inspect(self.info.name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="choices")
    def _choices(self) -> None:
        from tuitune.model_info import model_choices

        items = model_choices()
        self.app.call_from_thread(self._fill_choices, items)

    def _fill_choices(self, items: list[tuple[str, str]]) -> None:
        ol = self.query_one("#model-choices", OptionList)
        ol.clear_options()
        ol.add_options([Option(value, id=value) for _label, value in items])
        self._items = items

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#model-name", Input).value = event.option.id or ""
        self.inspect(event.option.id or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.inspect(event.value)

    def action_pick(self) -> None:
        def chosen(value: str | None) -> None:
            if value:
                self.query_one("#model-name", Input).value = value
                self.inspect(value)

        self.app.push_screen(PickDialog("Choose a model", getattr(self, "_items", [])), chosen)

    def inspect(self, name: str) -> None:
        self.query_one("#model-error", Static).update("inspecting…")
        self._inspect(name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect")
    def _inspect(self, name: str) -> None:
        from tuitune.errors import TuituneError
        from tuitune.model_info import inspect_model

        try:
            info = inspect_model(name)
        except TuituneError as err:
            self.app.call_from_thread(self._show, None, str(err))
            return
        self.app.call_from_thread(self._show, info, "", self._batch_length(info))

    def _batch_length(self, info):
        """How long the draft's data makes a batch (None: no data chosen yet, or not readable here)."""
        from tuitune.model_info import draft_batch_length

        try:
            return draft_batch_length(info, draft_of(self.tuitune))
        except Exception:  # noqa: BLE001 - an odd draft or file: the estimate falls back to max_length
            return None

    def _show(self, info, error: str, lengths=None) -> None:
        self.info = info
        self.query_one("#model-error", Static).update(error)
        panel = self.query_one("#model-info", Static)
        if info is None:
            panel.update("")
            return
        d = draft_of(self.tuitune)
        self._data_seen = d["data"].get("path")
        batch = int(d["training"].get("per_device_train_batch_size", 16))
        max_length = int(d["data"].get("max_length", 128))
        length = lengths.length if lengths is not None else max_length
        mem = info.memory(batch, length, task=d.get("task") or "classification")
        lines = [
            f"[b]{escape(info.name)}[/b]  ({info.source})",
            f"architecture  {info.architecture}",
            f"parameters    {fmt_count(info.params)}",
            f"size on disk  {fmt_bytes(info.size_bytes)}",
            f"layers×hidden {info.layers or '?'}×{info.hidden or '?'}  vocab {fmt_count(info.vocab)}",
            f"tasks         {', '.join(info.tasks)}",
            f"peak RAM on CPU (batch {batch}, length {length}):",
            f"  full {fmt_bytes(mem['full'])} · LoRA {fmt_bytes(mem['lora'])}",
            f"  QLoRA {fmt_bytes(mem['qlora'])}",
            "  libraries+weights+optimizer+activations",
        ]
        if lengths is None:
            lines += [f"  rows of max_length {max_length} (no data read", "  yet: shorter rows need less)"]
        else:
            lines += [f"  length: the typical longest of the {lengths.drawn:,}",
                      f"  rows the run draws ({escape(lengths.how)})"]
        if info.note:
            lines.append(info.note)
        panel.update("\n".join(lines))

    def action_next(self) -> None:
        name = self.query_one("#model-name", Input).value.strip()
        if self.info is None or self.info.name != name:
            self.query_one("#model-error", Static).update(
                "press enter to inspect the model first (it must be found before going on)")
            self.inspect(name)
            return
        d = draft_of(self.tuitune)
        d["model"]["name_or_path"] = name
        if d.get("task") not in self.info.tasks:
            d["task"] = self.info.tasks[0]
        self.app.push_screen(DatasetScreen(model_path=self.info.path))

    def action_back(self) -> None:
        self.app.pop_screen()


# -- Dataset --------------------------------------------------------------------------------------

def token_advice(ts: dict[str, Any]) -> list[str]:
    """What max_length does to these rows, in lines that fit the stats panel at 80 columns."""
    ml, cut = ts["max_length"], ts["truncated_share"]
    if not cut:
        return [f"  max_length {ml}: none truncated"]
    pct = lambda x: "<1%" if 0 < x < 0.01 else f"{100 * x:.0f}%"  # noqa: E731
    out = [f"  max_length {ml} truncates {pct(cut)}", f"  of rows ({pct(ts['tokens_lost'])} of tokens lost)"]
    if ts["p95"] > ml:
        out.append(f"  max_length {-(-ts['p95'] // 8) * 8} keeps p95 whole")
    return out


class DatasetScreen(BaseScreen):
    """Step 2: which data, which columns; preview, label counts, splits, token lengths."""

    BINDINGS = [Binding("ctrl+n", "next", "Next: method"), Binding("escape", "back", "Back"),
                Binding("ctrl+l", "pick", "Choose from list")]

    def __init__(self, model_path: Optional[str] = None) -> None:
        super().__init__()
        self.model_path = model_path
        self.info = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Dataset — local file or demo (ctrl+l); enter to read", classes="step")
        yield Input(placeholder="demo:bbc-news, ./data.csv", id="data-path", suggester=PathSuggester())
        yield Static("", id="data-error", classes="error", markup=False)
        with Horizontal(classes="row"):
            yield Label("text", classes="field-label")
            yield Select([], id="text-col", allow_blank=True, prompt="text column")
            yield Label("label", classes="field-label")
            yield Select([], id="label-col", allow_blank=True, prompt="label column")
        with Horizontal(classes="split"):
            yield DataTable(id="preview", cursor_type="row")
            yield Static("", id="data-stats", classes="panel")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        d = draft_of(self.tuitune)
        path = d["data"].get("path", "")
        self.query_one("#data-path", Input).value = path
        self.query_one("#data-path", Input).focus()
        if path:
            self.read(path)

    def action_pick(self) -> None:
        from tuitune.dataset_info import dataset_choices

        def chosen(value: str | None) -> None:
            if value:
                self.query_one("#data-path", Input).value = value
                self.read(value)

        self.app.push_screen(PickDialog("Choose a dataset", dataset_choices()), chosen)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.read(event.value)

    def read(self, path: str) -> None:
        d = draft_of(self.tuitune)
        self.query_one("#data-error", Static).update("reading…")
        self._read(path, d["data"].get("text_column", "text"), d["data"].get("label_column", "label"))

    def _cols(self) -> tuple[Optional[str], Optional[str]]:
        t = self.query_one("#text-col", Select).value
        lab = self.query_one("#label-col", Select).value
        return (t if isinstance(t, str) else None, lab if isinstance(lab, str) else None)

    def on_select_changed(self, event: Select.Changed) -> None:
        if self.info is not None and self._cols() != getattr(self, "_shown_cols", None):
            t, lab = self._cols()
            self._shown_cols = (t, lab)
            self._read(self.info.path, t, lab)

    @work(thread=True, exclusive=True, exit_on_error=False, group="read")
    def _read(self, path: str, text_col: Optional[str], label_col: Optional[str]) -> None:
        from tuitune.errors import TuituneError
        from tuitune.dataset_info import inspect_dataset

        d = draft_of(self.tuitune)
        kw = dict(max_length=int(d["data"].get("max_length", 128)),
                  validation_size=float(d["data"].get("validation_size", 0.1)), model_path=self.model_path,
                  eval_path=d["data"].get("eval_path"), test_path=d["data"].get("test_path"),
                  train_split=d["data"].get("train_split") or "train")
        error = ""
        try:
            base = inspect_dataset(path, **kw)
        except TuituneError as err:
            self.app.call_from_thread(self._show, None, str(err), None, None)
            return
        # Columns the user asked for but the data lacks: say so, and fall back to none.
        if text_col not in base.columns:
            if text_col and path == d["data"].get("path"):
                error = f"text column {text_col!r} not in dataset: columns are {', '.join(base.columns)}"
            text_col = "text" if "text" in base.columns else base.columns[0]
        if label_col and label_col not in base.columns:
            if path == d["data"].get("path"):
                error = error or f"label column {label_col!r} not in dataset: columns are {', '.join(base.columns)}"
            label_col = "label" if "label" in base.columns else None
        info = inspect_dataset(path, text_col, label_col, **kw)
        self.app.call_from_thread(self._show, info, error, text_col, label_col)

    def _show(self, info, error: str, text_col, label_col) -> None:
        self.info = info
        self.query_one("#data-error", Static).update(error)
        table = self.query_one("#preview", DataTable)
        table.clear(columns=True)
        stats = self.query_one("#data-stats", Static)
        if info is None:
            stats.update("")
            return
        self._shown_cols = (text_col, label_col)
        opts = [(c, c) for c in info.columns]
        for sel_id, value in (("#text-col", text_col), ("#label-col", label_col)):
            sel = self.query_one(sel_id, Select)
            sel.set_options(opts)
            sel.value = value if value else Select.NULL
        for c in info.columns:
            table.add_column(c, key=c, width=48 if c == text_col else None)
        for r in info.rows[:30]:
            table.add_row(*[str(r.get(c, ""))[:60] for c in info.columns])
        lines = [f"[b]{info.total:,} rows[/b]  train {info.splits.get('train', 0):,} · "
                 f"validation {info.splits.get('validation', 0):,}"
                 + (f" · test {info.splits['test']:,}" if "test" in info.splits else "")]
        if info.label_counts:
            lines.append(f"{len(info.label_counts)} labels:")
            for k, v in list(info.label_counts.items())[:8]:
                lines.append(f"  {k[:18]:18s} {v:6,}")
            if len(info.label_counts) > 8:
                lines.append(f"  … {len(info.label_counts) - 8} more")
        ts = info.token_stats
        if ts:
            first = f"tokens ({ts['how']}, {ts['n']:,} rows):"
            lines += [first] if len(first) <= 32 else [f"tokens ({ts['n']:,} rows,", f"  {ts['how']}):"]
            lines.append(f"  mean {ts['mean']:.0f}  p50 {ts['p50']}  p95 {ts['p95']}  max {ts['max']}")
            lines += token_advice(ts)
        stats.update("\n".join(lines))

    def action_next(self) -> None:
        path = self.query_one("#data-path", Input).value.strip()
        err = self.query_one("#data-error", Static)
        if self.info is None or self.info.path != path:
            err.update("press enter to read the dataset first")
            return
        text_col, label_col = self._cols()
        d = draft_of(self.tuitune)
        if not text_col:
            err.update(f"pick the text column: columns are {', '.join(self.info.columns)}")
            return
        if task_spec(d.get("task") or "classification").has_labels and not label_col:
            err.update(f"{d.get('task') or 'classification'} needs a label column: columns are {', '.join(self.info.columns)}")
            return
        d["data"].update(path=path, text_column=text_col, label_column=label_col)
        self.app.push_screen(MethodScreen())

    def action_back(self) -> None:
        self.app.pop_screen()


# -- Method & training ------------------------------------------------------------------------------

# (dotted key, label, kind) — kind: int, float, str, list, or a tuple of choices
FIELDS: list[tuple[str, str, Any]] = [
    ("name", "run name", "str"),
    ("task", "task", TASKS),
    ("method.name", "method", METHODS),
    ("method.lora_r", "lora_r", "int"),
    ("method.lora_alpha", "lora_alpha", "int"),
    ("method.lora_dropout", "lora_dropout", "float"),
    ("method.target_modules", "target_modules", "list"),
    ("method.freeze_layers", "freeze_layers", "int"),
    ("method.num_virtual_tokens", "virtual tokens", "int"),
    ("quantization.load_in", "quantization", ("none", "8bit", "4bit")),
    ("data.max_length", "max_length", "int"),
    ("training.num_train_epochs", "epochs", "float"),
    ("training.max_steps", "max_steps", "int"),
    ("training.per_device_train_batch_size", "batch size", "int"),
    ("training.learning_rate", "learning_rate", "float"),
    ("training.warmup_steps", "warmup_steps", "float"),
    ("training.logging_steps", "logging_steps", "int"),
    ("training.eval_steps", "eval_steps", "int"),
]


def applies(key: str, method: Optional[str]) -> bool:
    """Whether a form field belongs to the chosen method: its own `method.*` settings (the task
    registry lists them), quantization where it can train a quantized base, and the rest always."""
    from tuitune.tasks import METHODS as SPECS

    spec = SPECS.get(method or "full")
    if spec is None:
        return True
    if key.startswith("method.") and key != "method.name":
        return key.split(".", 1)[1] in spec.fields
    if key == "quantization.load_in":
        return spec.trains_quantized
    return True


def _get(d: dict, key: str) -> Any:
    node: Any = d
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(d: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = d
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def parse(raw: str, kind: Any) -> Any:
    raw = raw.strip()
    if raw == "":
        return None
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            return raw  # the schema says what is wrong with it
    if kind == "float":
        try:
            return float(raw)
        except ValueError:
            return raw
    if kind == "list":
        return [x.strip() for x in raw.split(",") if x.strip()] or None
    return raw


def _show_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return str(v)


SPEC_PREFIXES = ("log:", "float:", "int:", "choice:")


def is_spec(raw: str) -> bool:
    """A numeric field holding a sweep SPEC (log:1e-5..1e-3, int:4..32, choice:8,16) is searched."""
    return raw.strip().lower().startswith(SPEC_PREFIXES)


def check(draft: dict) -> tuple[Optional[RunConfig], dict[str, str], str]:
    """Validate a draft: (config or None, {field: message}, message for rules across fields)."""
    try:
        return RunConfig.model_validate(draft), {}, ""
    except ValidationError as err:
        per: dict[str, str] = {}
        general = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"])
            msg = describe_validation_error(SimpleNamespace(errors=lambda e=e: [e]))  # type: ignore[arg-type]
            if loc:
                per[loc] = msg
            else:
                general.append(msg)
        return None, per, "; ".join(general)


class MethodScreen(BaseScreen):
    """Step 3: task, method and options, quantization, hyperparameters; each checked as typed."""

    BINDINGS = [Binding("ctrl+n", "review", "Review"), Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("Method & training — each field is checked as you type", classes="step")
        yield Static("", id="form-error", classes="error", markup=False)
        d = draft_of(self.tuitune)
        defaults = RunConfig.model_validate({"model": {"name_or_path": "x"}, "data": {"path": "x"}}).model_dump()
        with VerticalScroll(id="form"):
            for key, label, kind in FIELDS:
                value = _get(d, key)
                if value is None:
                    value = _get(defaults, key)
                fid = "f-" + key.replace(".", "-")
                with Horizontal(classes="field", id="row-" + fid):
                    yield Label(label, classes="field-label")
                    if isinstance(kind, tuple):
                        yield Select([(c, c) for c in kind], value=value if value in kind else kind[0],
                                     allow_blank=False, id=fid)
                    else:
                        shown = self.tuitune.draft_search.get(key) or _show_value(value)
                        yield Input(shown, id=fid)
                    yield Static("", id=fid + "-msg", classes="field-msg", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._sync()
        self.query_one("#f-name").focus()

    def _read_form(self) -> dict:
        d = copy.deepcopy(draft_of(self.tuitune))
        self.searched: dict[str, str] = {}
        method = self.query_one("#f-method-name", Select).value
        for key, _label, kind in FIELDS:
            w = self.query_one("#f-" + key.replace(".", "-"))
            shown = applies(key, method if isinstance(method, str) else None)
            self.query_one("#row-f-" + key.replace(".", "-")).display = shown
            if not shown:  # another method's field: not part of this config
                _set(d, key, None)
                continue
            if isinstance(w, Select):
                v = w.value if isinstance(w.value, str) else None
            elif kind in ("int", "float") and is_spec(cast(Input, w).value):
                self.searched[key] = cast(Input, w).value.strip()  # the base keeps its value
                continue
            else:
                v = parse(cast(Input, w).value, kind)
            _set(d, key, v)
        if not d.get("name"):  # a run needs a label: model and method by default
            d["name"] = f"{Path(str(_get(d, 'model.name_or_path') or 'model')).name}-{_get(d, 'method.name') or 'full'}"
        return d

    def _sync(self) -> Optional[RunConfig]:
        from tuitune.errors import TuituneError
        from tuitune.sweep import parse_spec

        d = self._read_form()
        cfg, per, general = check(d)
        self.search_ok = True
        for key, raw in self.searched.items():
            try:
                per[key] = f"searched: {parse_spec(key, raw).spec}"
                self.query_one("#f-" + key.replace(".", "-")).set_class(False, "invalid-field")
            except TuituneError as err:
                per[key] = str(err)
                self.search_ok = False
        for key, _label, _kind in FIELDS:
            msg = per.pop(key, "")
            self.query_one("#f-" + key.replace(".", "-") + "-msg", Static).update(msg)
            w = self.query_one("#f-" + key.replace(".", "-"))
            w.set_class(bool(msg) and not msg.startswith("searched:"), "invalid-field")
        other = "; ".join(list(per.values()) + ([general] if general else []))
        self.query_one("#form-error", Static).update(other)
        self.tuitune.draft = d
        self.tuitune.draft_search = dict(self.searched)
        return cfg

    def on_input_changed(self, event: Input.Changed) -> None:
        self._sync()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "f-method-name" and event.value == "qlora":
            self.query_one("#f-quantization-load_in", Select).value = "4bit"
        self._sync()

    def action_review(self) -> None:
        cfg = self._sync()
        if cfg is None or not self.search_ok:
            self.notify("fix the marked fields first", severity="error")
            return
        self.app.push_screen(ReviewScreen(cfg, dict(self.searched)))

    def action_back(self) -> None:
        self._sync()
        self.app.pop_screen()


# -- Review ---------------------------------------------------------------------------------------

class ReviewScreen(BaseScreen):
    """Step 4: the final YAML; save it as a preset, or launch the run (a sweep when fields are searched)."""

    BINDINGS = [Binding("ctrl+l", "launch", "Launch"), Binding("ctrl+s", "save", "Save preset"),
                Binding("escape", "back", "Back")]

    def __init__(self, cfg: RunConfig, search: Optional[dict[str, str]] = None):
        super().__init__()
        self.cfg = cfg
        self.search = search or {}

    def _sweep_yaml(self) -> str:
        import yaml

        return yaml.safe_dump({"sweep": {"params": dict(self.search)}}, sort_keys=False) if self.search else ""

    def compose(self) -> ComposeResult:
        yield Header()
        if self.search:
            over = ", ".join(k.split(".")[-1] for k in self.search)
            yield Label(f"Review — ctrl+l launches a sweep over {over}, ctrl+s saves as a preset", classes="step")
        else:
            yield Label("Review — ctrl+l launches, ctrl+s saves as a preset", classes="step")
        with VerticalScroll(id="yaml-box"):
            yield Static(self.cfg.to_yaml() + self._sweep_yaml(), id="yaml", markup=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#yaml-box").focus()

    def action_save(self) -> None:
        def named(name: str | None) -> None:
            if name:
                self._save(name)

        self.app.push_screen(AskDialog("Save as preset named:", self.cfg.name or "my-preset"), named)

    @work(thread=True, exit_on_error=False, group="save")
    def _save(self, name: str) -> None:
        from tuitune.presets import save_user_preset

        path = save_user_preset(name, self.cfg)
        if self.search:  # `tuitune sweep NAME` runs the search from the CLI
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(self._sweep_yaml())
        self.app.call_from_thread(self.notify, f"saved preset {name} ({path})")

    def action_launch(self) -> None:
        if not self.search:
            self._launch()
            return

        def trials(answer: str | None) -> None:
            if answer:
                self._launch_sweep(answer)

        self.app.push_screen(AskDialog("Sweep: how many trials?", self._default_trials()), trials)

    def _default_trials(self) -> str:
        """The CLI's default: the grid's size when every searched field is a choice, else 10."""
        from tuitune import sweep

        try:
            params = [sweep.parse_spec(k, v) for k, v in self.search.items()]
            return str(sweep.build_definition(self.cfg.model_dump(mode="json"), params, name="x").trials)
        except Exception:  # noqa: BLE001 - a bad SPEC is reported when the sweep is launched
            return "10"

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch_sweep(self, trials: str) -> None:
        from tuitune import sweep
        from tuitune.errors import TuituneError

        if not trials.strip().isdigit():
            raise TuituneError(f"trials must be a whole number, got {trials!r}")
        url = sweep.default_storage()
        params = [sweep.parse_spec(k, v) for k, v in self.search.items()]
        d = sweep.build_definition(self.cfg.model_dump(mode="json"), params, trials=int(trials),
                                   name=sweep.unique_name(sweep.default_name(self.cfg.name or "run"), url))
        sweep.create_study(d, url)
        h = self.tuitune.store.h
        sweep.remember(h, d.name, url)
        sweep.spawn_driver(h, d.name, url)
        self.post_message(messages.OpenSweep(d.name, launched=True))

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch(self) -> None:
        run_id = self.tuitune.store.launch(self.cfg.model_dump(mode="json"))
        self.post_message(messages.RunLaunched(run_id))

    def action_back(self) -> None:
        self.app.pop_screen()

