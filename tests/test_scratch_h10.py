from conftest import tiny_config, execute_run
from tuitune.history import History

def test_explore(tiny_bert, tiny_csv):
    cfg = tiny_config(tiny_bert, tiny_csv, training={"max_steps": 30, "learning_rate": 0.9, "warmup_steps": 10,
        "save_steps": 2, "eval_steps": 100, "logging_steps": 1, "lr_scheduler_type": "constant_with_warmup"},
        evaluation={"baseline": False})
    rid, code = execute_run(cfg)
    h = History()
    print(code, h.get_run(rid)["error"])
    print([(m["step"], round(m["value"],3)) for m in h.metrics(rid, "train/loss")])
    print([(e["kind"], e["step"], e["message"]) for e in h.events(rid)])
