"""Export a run's history to plain files (CSV/JSON), for spreadsheets, notebooks or a paper.

Reads the history with sqlite-utils (imported here only: it pulls in pandas when present, which the
UI's start-up must not pay for). Files land in one folder named by the user; nothing is written
outside it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tuitune.errors import TuituneError
from tuitune.records import RunRecord
from tuitune.safety import inside

TABLES = {  # file name -> (table, order)
    "metrics": ("metrics", "rowid"),
    "evaluations": ("evaluations", "id"),
    "events": ("events", "id"),
    "system": ("system", "time"),
    "class-reports": ("class_reports", "id"),  # per-class report and confusion matrix per evaluation
    "errors": ("eval_errors", "rowid"),  # the final evaluation's misclassified rows
    "probes": ("probes", "rowid"),
}


def export_run(db_path: Path, run_id: int, out_dir: Path, fmt: str = "csv") -> list[Path]:
    import sqlite_utils

    if fmt not in ("csv", "json"):
        raise TuituneError(f"export format must be csv or json, got {fmt!r}")
    db = sqlite_utils.Database(str(db_path))
    try:
        run = RunRecord.from_row(db["runs"].get(run_id))
    except sqlite_utils.db.NotFoundError:
        raise TuituneError(f"no run {run_id} in the history: `tuitune runs` lists them") from None
    out_dir = Path(out_dir).expanduser()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TuituneError(f"cannot create export folder {out_dir}: {err.strerror}") from None
    written = []
    path = inside(out_dir, f"run-{run.id}.json")
    path.write_text(json.dumps(run.to_json(), indent=2), encoding="utf-8")
    written.append(path)
    for name, (table, order) in TABLES.items():
        rows = list(db[table].rows_where("run_id = ?", [run_id], order_by=order))
        path = inside(out_dir, f"run-{run_id}-{name}.{fmt}")
        if fmt == "json":
            path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        else:
            cols = [c.name for c in db[table].columns]
            with open(path, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=cols)
                w.writeheader()
                w.writerows(rows)
        written.append(path)
    db.close()
    return written
