"""End-to-end runs through the real CLI: metrics, curves, W&B offline files, sweeps with failures, resume."""
import json
import os
import re
import shutil
import subprocess

import pytest
import torch

from skiprnn.experiment.tasks.adding import AddingTask

TINY = ["trainer.batch_size=16", "task.eval_batches=1", "model.hidden_size=8", "trainer.progress=false", "threads=1"]


def read_curve(run_dir):
    return [json.loads(line) for line in (run_dir / "curve.jsonl").read_text().splitlines()]


@pytest.mark.slow  # W&B's own reader (`wandb leet inspect`, a real process) checks the offline run it wrote
def test_tiny_run_writes_metrics_curve_and_offline_wandb_run(cli, tmp_path):
    run_dir = tmp_path / "run"
    cli("task=adding", "model=skip_gru", "lam=1e-5", "seed=3", "trainer.max_steps=6", "trainer.eval_every=3",
        f"hydra.run.dir={run_dir}", *TINY)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["step"] == 6 and metrics["seed"] == 3
    assert metrics["config"]["model"]["mode"] == "skip_gru" and metrics["config"]["lam"] == 1e-5
    final = metrics["final"]
    assert 0 < final["val_mse"] < 1 and 0 < final["val_update_fraction"] <= 1
    assert final["val_solved"] is False and final["stable_window"] == 2
    curve = read_curve(run_dir)
    assert [row["step"] for row in curve] == [3, 6]
    assert curve[-1]["val_mse"] == final["val_mse"]
    assert not list(run_dir.glob("*.tmp"))  # atomic writes leave nothing behind

    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    assert re.fullmatch(r"offline-run-\d{8}_\d{6}-skip_gru-s3-[0-9a-f]{6}", wandb_runs[0].name)  # reads well in LEET
    wandb_exe = shutil.which("wandb") or str(__import__("pathlib").Path(__import__("sys").executable).with_name("wandb"))
    inspect = subprocess.run([wandb_exe, "leet", "inspect", "--summary", "--json", str(wandb_runs[0])],
                             capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 0, inspect.stderr
    record = json.loads(inspect.stdout)
    assert record["state"] == "finished" and record["name"] == "skip_gru-seed3 (run)"  # the folder names it
    assert record["config"]["model.mode"] == "skip_gru"  # flat: one column per key in W&B's run table
    assert record["summary"]["val/mse"]["min"] == pytest.approx(min(row["val_mse"] for row in curve))


def test_finished_run_is_not_trained_again_and_conflicts_are_refused(cli, tmp_path):
    run_dir = tmp_path / "run"
    args = ["trainer.max_steps=2", "trainer.eval_every=1", f"hydra.run.dir={run_dir}", "logger=none", *TINY]
    cli(*args)
    before = (run_dir / "metrics.json").read_text()
    record = {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()}
    assert set(record) == {"config.yaml", "overrides.yaml"} and "trainer.max_steps=2" in record["overrides.yaml"]
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "checkpoint.prev.pt", "checkpoint.pt", "curve.jsonl",
                                                         "metrics.json"]  # two evaluations: the one before is kept
    assert json.loads(before)["overrides"] == [a for a in args if not a.startswith("hydra.")]  # stored with the result
    again = cli(*args[1:], "trainer.max_steps=1", "trainer.progress=false")  # a smaller budget: nothing to train
    assert "not training again" in again.stdout
    assert (run_dir / "metrics.json").read_text() == before
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == record
    clash = cli(*args, "lam=0.1", check=False)
    assert clash.returncode != 0 and "differs in: lam" in clash.stderr
    assert (run_dir / "metrics.json").read_text() == before  # a finished result is never overwritten
    # ... nor the record of the invocation that trained it
    assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == record


def test_resumed_run_ends_like_an_uninterrupted_one(cli, tmp_path):
    common = ["model=skip_lstm", "lam=1e-3", "model.p_skip=0.3", "trainer.max_steps=8", "trainer.eval_every=2",
              "logger=none", *TINY]
    cli(*common, f"hydra.run.dir={tmp_path / 'whole'}")
    halted = cli(*common, "trainer.halt_after_steps=3", f"hydra.run.dir={tmp_path / 'split'}")
    assert "halting at step 4" in halted.stdout  # at the first evaluation (and checkpoint) after 3 steps
    assert not (tmp_path / "split" / "metrics.json").exists()
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=False)["step"] == 4
    again = cli(*common, "trainer.halt_after_steps=2", f"hydra.run.dir={tmp_path / 'split'}")
    assert "resuming from step 4" in again.stdout and "halting at step 6" in again.stdout  # 2 more steps
    resumed = cli(*common, f"hydra.run.dir={tmp_path / 'split'}")
    assert "resuming from step 6" in resumed.stdout

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds_per_step"} for r in rows]

    assert strip(read_curve(tmp_path / "split")) == strip(read_curve(tmp_path / "whole"))
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())["final"]
    split = json.loads((tmp_path / "split" / "metrics.json").read_text())["final"]
    whole.pop("seconds_per_step"), split.pop("seconds_per_step")
    assert split == whole
    # each invocation that trained the run is a leg, with the commit it ran and the step it started from
    legs = json.loads((tmp_path / "split" / "metrics.json").read_text())["legs"]
    assert [leg["from_step"] for leg in legs] == [0, 4, 6]
    assert [leg["from_step"] for leg in json.loads((tmp_path / "whole" / "metrics.json").read_text())["legs"]] == [0]


def test_a_checkpoint_of_another_config_is_refused_and_left_as_it_was(cli, tmp_path):
    run_dir = tmp_path / "run"
    common = ["model=skip_gru", "trainer.max_steps=4", "trainer.eval_every=2", "logger=none", *TINY,
              f"hydra.run.dir={run_dir}"]
    cli(*common, "trainer.halt_after_steps=2")
    before = (run_dir / "checkpoint.pt").read_bytes()
    record = (run_dir / ".hydra" / "config.yaml").read_text()
    clash = cli(*common, "lam=0.1", check=False)
    assert clash.returncode != 0 and "differs in: lam" in clash.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert (run_dir / ".hydra" / "config.yaml").read_text() == record
    assert not (run_dir / "failed.json").exists()  # the other run is unfinished, not failed


def test_a_checkpoint_past_a_smaller_budget_is_left_alone(cli, tmp_path):
    run_dir = tmp_path / "run"
    common = ["trainer.eval_every=2", "logger=none", *TINY, f"hydra.run.dir={run_dir}"]
    cli(*common, "trainer.max_steps=10", "trainer.halt_after_steps=4")
    record = (run_dir / ".hydra" / "overrides.yaml").read_text()
    smaller = cli(*common, "trainer.max_steps=2")
    assert "is at step 4, past trainer.max_steps=2; nothing to train" in smaller.stdout
    assert not (run_dir / "metrics.json").exists()  # no result claiming 2 steps for a model trained for 4
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == record


def test_table_overrides_come_from_the_finished_result(tmp_path):
    """A later attempt that rewrote .hydra/ and then failed must not relabel the finished result."""
    from skiprnn.experiment import records, tracking
    from skiprnn.experiment.tables.load import shown_overrides

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- trainer.max_steps=50000\n- seed=0\n")
    # an unfinished run: its last invocation's
    assert shown_overrides(records.read_run(run).overrides) == ("trainer.max_steps=50000",)
    tracking.write_json(run / tracking.METRICS, {"step": 2, "final": {}, "overrides": ["seed=0", "trainer.max_steps=2", "force=true"]})
    assert records.read_run(run).overrides == ["seed=0", "trainer.max_steps=2", "force=true"]
    assert shown_overrides(records.read_run(run).overrides) == ("trainer.max_steps=2",)


def test_epochs_on_a_task_without_epochs_is_a_clear_error(cli, tmp_path):
    proc = cli("task=adding", "trainer.max_epochs=2", "logger=none", *TINY, f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "trainer.max_epochs=2 is not allowed" in proc.stderr and "max_steps" in proc.stderr
    assert "Traceback" not in proc.stderr  # the message alone: it names the key and what is allowed


def test_a_task_refusing_its_config_says_why_without_a_traceback(cli, tmp_path):
    proc = cli("task=frequency", "task.sampling_period=0.3", "logger=none", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: task.sampling_period must be > 0 and divide task.duration" in proc.stderr


def test_sweep_with_a_failed_job_exits_nonzero_and_the_table_shows_it(cli, tmp_path):
    sweep = tmp_path / "table1"
    broken = sweep / "skip_gru_lam1e-5" / "seed=0"
    broken.mkdir(parents=True)
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")  # this job fails when it tries to resume
    proc = cli("-m", "table=table1", "seed=0", f"hydra.sweep.dir={sweep}",
               "experiment=table1/lstm,table1/skip_gru_lam1e-5", "hydra.launcher.n_jobs=2",
               "trainer.max_steps=2", "trainer.eval_every=2", "logger=none", *TINY, check=False)
    assert proc.returncode != 0
    assert (sweep / "lstm" / "seed=0" / "metrics.json").exists()
    assert (broken / "failed.json").exists()

    cli("table1", "--seeds", "0", "--results", str(tmp_path), "trainer.max_steps=2", "trainer.eval_every=2", *TINY,
        module="skiprnn.tables")
    table = (tmp_path / "table1.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "1 completed" in lines["LSTM"]
    assert "1 failed" in lines["Skip GRU, λ = 1e-5"]
    assert "1 missing" in lines["GRU"]
    assert "| 2.46e6 |" in lines["LSTM"]  # the paper column stands beside ours
    assert "**Seeds asked for:** 0" in table and "**Steps of the finished runs:** 2 steps" in table

    compared = cli(str(sweep), module="skiprnn.compare").stdout  # the same runs, grouped by their recorded configs
    rows = {line.split("|")[2].strip(): line for line in compared.splitlines() if line.startswith("| ") and "---" not in line}
    assert compared.splitlines()[6].startswith("| lam | model.mode | finished (seeds)")
    assert "| 1/1 (0) |" in rows["lstm"] and "| 0/1 (none) |" in rows["skip_gru"] and "seed 0 failed" in rows["skip_gru"]
    csv_text = (tmp_path / "table1.csv").read_text()
    assert csv_text.count("\n") == 11  # header + 10 rows, none dropped


def test_table_flags_mixed_budgets_survives_a_broken_record_and_keeps_its_note(cli, tmp_path):
    from skiprnn.experiment import tracking

    def finished(row, seed, steps):
        run = tmp_path / "table1" / row / f"seed={seed}"
        run.mkdir(parents=True)
        final = {"val_mse": 1e-4, "val_updates": 50.0, "val_update_fraction": 1.0, "val_solved": True,
                 "inference_flops": 2.46e6, "stable_mse": 1e-4, "stable_update_fraction": 1.0, "stable_window": 1,
                 "stable_updates": 50.0}
        tracking.write_json(run / tracking.METRICS, {"step": steps, "commit": "abc", "final": final})
        return run

    finished("lstm", 0, 50000)
    finished("lstm", 1, 2000)
    finished("gru", 0, 50000)
    finished("gru", 2, 50000)  # a seed the table is not asked for
    (finished("skip_lstm_lam0", 0, 50000) / tracking.METRICS).write_text('{"step": 5')  # cut off mid-write
    older = finished("skip_gru_lam0", 0, 50000)  # a record without the update counts the table prints
    tracking.write_json(older / tracking.METRICS, {"step": 50000, "commit": "abc", "final": {"val_mse": 1e-4, "stable_window": 1}})
    cli("table1", "--seeds", "0,1", "--results", str(tmp_path), "--note", "Seed 1 is a smoke run.",
        module="skiprnn.tables")
    rebuild = cli("table1", "--seeds", "0,1", "--results", str(tmp_path), module="skiprnn.tables")  # no --note
    assert "leaves out finished runs of seed(s) 2" in rebuild.stderr
    table = (tmp_path / "table1.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "2 completed (2,000 and 50,000 steps, mixed budgets)" in lines["LSTM"]
    assert "1 completed, 1 missing (50,000 steps) |" in lines["GRU"]
    assert "1 unreadable, 1 missing" in lines["Skip LSTM, λ = 0"]
    assert "1 unreadable, 1 missing" in lines["Skip GRU, λ = 0"]
    assert "has no usable 'val_solved' for column 'solved'" in table
    assert "**Note:** Seed 1 is a smoke run." in table
    assert "**Left out by --seeds:** finished runs of seed 2 (1 row)" in table
    assert "**Seeds asked for:** 0, 1; finished per row: 0–2." in table
    cli("table1", "--seeds", "0,1,2", "--results", str(tmp_path), "--note", "", module="skiprnn.tables")
    table = (tmp_path / "table1.md").read_text()
    assert "**Note:**" not in table and "Left out" not in table and not (tmp_path / "table1_note.md").exists()
    assert "2 completed, 1 missing (50,000 steps)" in table
    twice = cli("table1", "--seeds", "0,0", "--results", str(tmp_path), module="skiprnn.tables", check=False)
    assert twice.returncode != 0 and "listed twice" in twice.stderr


def test_table_lists_every_leg_of_a_run_resumed_across_commits_and_a_late_collapse(tmp_path):
    from skiprnn.experiment import tables, tracking
    from skiprnn.experiment.tasks.frequency import TABLE4

    run = tmp_path / "table4" / "lstm_ts1" / "seed=0"
    run.mkdir(parents=True)
    final = {"val_accuracy": 0.995, "val_updates": 100.0, "val_update_fraction": 1.0, "val_solved": True,
             "stable_accuracy": 0.99, "stable_updates": 100.0, "stable_window": 5}
    legs = [{"commit": "aaa", "from_step": 0}, {"commit": "bbb", "from_step": 3900}]
    tracking.write_json(run / tracking.METRICS, {"step": 8, "commit": "bbb", "legs": legs, "final": final})
    curve = [(2, 0.999, True), (4, 0.999, True), (6, 0.999, True), (7, 0.6, False), (8, 0.995, True)]
    (run / tracking.CURVE).write_text("".join(json.dumps({"step": s, "max_steps": 8, "val_accuracy": a, "val_solved": ok})
                                              + "\n" for s, a, ok in curve))
    text, _ = tables.build(TABLE4, tmp_path, [0])
    assert "**Code commit(s) of the finished runs:** aaa, bbb" in text
    # the last quarter of 8 steps is steps 6-8: the dip at step 7 shows although the run ends solved
    assert "| accuracy 0.6 at 7; 1 of 3 evals unsolved |" in text
    assert "| aaa (from 0) → bbb (from 3,900) |" in text
    with pytest.raises(TypeError, match="list of KEY=VALUE strings, not the string 'trainer.max_steps=8'"):
        tables.build(TABLE4, tmp_path, [0], overrides="trainer.max_steps=8")


def test_table_of_a_folder_without_runs_is_a_clear_error(cli, tmp_path):
    proc = cli("table1", "--results", str(tmp_path / "typo"), module="skiprnn.tables", check=False)
    assert proc.returncode != 0 and "no runs in" in proc.stderr and "--results" in proc.stderr
    assert not (tmp_path / "typo").exists()


def test_table_counts_a_run_resumed_with_a_larger_budget_as_unfinished(tmp_path):
    """metrics.json of an earlier, smaller budget must not pass for the result of the run now going further."""
    from skiprnn.experiment import records, tables, tracking

    run = tmp_path / "run"
    run.mkdir()
    tracking.write_json(run / tracking.METRICS, {"step": 300, "commit": "abc", "final": {"val_mse": 0.5, "stable_window": 1,
                                                                                     "stable_updates": 50.0}})
    rows = [{"step": s, "max_steps": 300 if s <= 300 else 900, "val_mse": 1.0 / s, "val_updates": 50.0} for s in (300, 600)]
    (run / tracking.CURVE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    resumed = tables.load_run(run, 0)
    assert (resumed.status, resumed.step, resumed.max_steps) == ("unfinished", 600, 900)
    assert resumed.final["val_mse"] == 1.0 / 600
    assert records.read_run(run).status == "unfinished"  # the HTML report reads the same record the same way
    (run / tracking.CURVE).write_text(json.dumps(rows[0]) + "\n")  # the curve ends where metrics.json does
    assert tables.load_run(run, 0).status == records.read_run(run).status == "completed"
    (run / tracking.CURVE).write_text('{"step": 300, "val_')  # a cut-off record is listed, not fatal
    broken = tables.load_run(run, 0)
    assert broken.status == "unreadable" and str(run) in broken.error and "curve.jsonl" in broken.error
    # the report still shows the finished result, with the broken line among the run's problems
    assert records.read_run(run).status == "completed" and records.read_run(run).problems


def test_adding_task_markers_and_targets():
    task = AddingTask()
    x, y = task.train_batch(step=0, batch_size=4096, seed=0)
    assert x.shape == (50, 4096, 2) and y.shape == (4096, 1)
    values, markers = x[..., 0], x[..., 1]
    assert torch.all(markers.sum(0) == 2)
    first = markers[:5].argmax(0)
    second = markers[25:].argmax(0) + 25
    assert torch.all(markers[5:25] == 0)  # nothing between the first 10% and the second half
    assert set(first.tolist()) == set(range(5)) and set(second.tolist()) == set(range(25, 50))
    cols = torch.arange(4096)
    torch.testing.assert_close(y[:, 0], values[first, cols] + values[second, cols])
    assert values.min() >= -0.5 and values.max() < 0.5
    assert abs(y.var().item() - 1 / 6) < 0.01  # the sum of two U(-0.5, 0.5)
    again, _ = task.train_batch(step=0, batch_size=4096, seed=0)
    other, _ = task.train_batch(step=1, batch_size=4096, seed=0)
    assert torch.equal(again, x) and not torch.equal(other, x)
    val = list(task.eval_batches("val", 0, seed=0))
    assert len(val) == 15 and not torch.equal(val[0][0][:, :16], x[:, :16])
    assert task.loss(torch.zeros(2, 1), torch.tensor([[1.0], [3.0]])).item() == pytest.approx(0.5 * (1 + 9) / 2)
    assert task.solved({"mse": 1 / 600}) and not task.solved({"mse": 0.002})


def test_fingerprint_tolerates_options_added_later_at_their_neutral_default():
    from skiprnn.experiment.trainer import differences, fingerprint

    current = {"lam": 0.0, "seed": 0, "row": "r", "model": {"mode": "gru", "original_stack_bug": False},
               "trainer": {"lr": 1e-4, "max_steps": 10}, "task": {"name": "adding", "data_root": "x"}, "threads": 1}
    stored = fingerprint({**current, "model": {"mode": "gru"}, "task": {"name": "adding"}})
    assert differences(stored, fingerprint(current)) == []
    assert differences(stored, fingerprint({**current, "lam": 1e-5})) == ["lam"]
    stacked = {**current, "model": {"mode": "gru", "original_stack_bug": True}}
    assert differences(stored, fingerprint(stacked)) == ["model.original_stack_bug"]
    # a key removed since (MNIST's no-op task.report) does not stop older runs from resuming
    older = {**stored, "task": {"name": "adding", "report": "last"}}
    assert differences(older, fingerprint(current)) == []


def test_progress_lines_tell_an_ad_hoc_sweeps_runs_apart(tmp_path):
    from skiprnn.experiment.trainer import run_label

    cfg = {"row": "skip_lstm", "seed": 0}
    assert run_label(cfg, tmp_path / "table1" / "skip_lstm" / "seed=0") == "skip_lstm-seed0"
    assert run_label(cfg, tmp_path / "lam=0.0001,model=skip_lstm,seed=0") == "skip_lstm-seed0 (lam=0.0001,model=skip_lstm,seed=0)"
    assert run_label(cfg, tmp_path / "lam=0,model=skip_lstm,seed=0") != run_label(cfg, tmp_path / "lam=0.0001,model=skip_lstm,seed=0")


def test_progress_lines_say_how_long_the_run_has_left(capsys):
    from skiprnn.experiment.trainer import Progress, duration

    assert [duration(s) for s in (0.4, 40, 432, 7500, 7199.6)] == ["0s", "40s", "7m12s", "2h05m", "2h00m"]
    now = [100.0]
    progress = Progress(total=1000, start=200, name="gru-seed0", enabled=False, clock=lambda: now[0])
    row = {"step": 500, "train_loss": 0.5, "val_accuracy": 0.75, "val_update_fraction": 0.5}
    now[0] += 60.0  # 300 steps of this invocation in a minute: 0.2 s each, 500 steps to go
    progress.evaluation(row, "accuracy", 1000)
    assert capsys.readouterr().out == ("gru-seed0 step 500/1000 loss 0.5 val accuracy 0.75 updates 50.0%, "
                                       "0.2 s/step, 1m40s left\n")
    progress.evaluation({**row, "step": 1000}, "accuracy", 1000)  # the last evaluation has nothing left to time
    assert capsys.readouterr().out.endswith("updates 50.0%\n")


def test_records_made_before_the_fidelity_fixes_are_told_apart_from_runs_after_them():
    """A record without model.gate_init / model.p_skip_keep_first was trained with torch's gate init and a kept
    first step: it conflicts with today's defaults where those act (Skip cells, p_skip > 0), nowhere else."""
    from skiprnn.experiment.trainer import differences, fingerprint

    def cfg(mode, p_skip=0.0, **model):
        return {"lam": 0.0, "seed": 0, "row": "r", "trainer": {"lr": 1e-4}, "task": {"name": "adding"},
                "model": {"mode": mode, "hidden_size": 110, "num_layers": 1, "p_skip": p_skip, **model}}

    new = {"gate_init": "glorot", "p_skip_keep_first": False, "original_stack_bug": False}
    assert differences(cfg("skip_lstm"), fingerprint(cfg("skip_lstm", **new))) == ["model.gate_init"]
    assert differences(cfg("lstm", 0.5), fingerprint(cfg("lstm", 0.5, **new))) == ["model.p_skip_keep_first"]
    assert differences(cfg("gru"), fingerprint(cfg("gru", **new))) == []  # plain cells: neither key acts
    assert differences(cfg("skip_gru"), fingerprint(cfg("skip_gru", **{**new, "gate_init": "torch"}))) == []
    assert differences(cfg("gru", 0.5), fingerprint(cfg("gru", 0.5, **{**new, "p_skip_keep_first": True}))) == []


def test_a_longer_budget_goes_on_from_the_tables_run_and_gets_a_section_of_its_own(cli, tmp_path, capsys):
    """`python -m skiprnn.longer`: each run resumes from its finished table run's checkpoint, or, where there is none,
    trains from step 0 to the table's budget first, so both evaluate at the same steps; the table gets a section."""
    from dataclasses import replace

    from skiprnn.experiment import longer, tables
    from skiprnn.experiment.numbers import mean_std
    from skiprnn.experiment.tables.sections import longer_section
    from skiprnn.experiment.tasks import adding
    from skiprnn.experiment.tasks.base import LongerBudget

    row = "skip_lstm_lam1e-5"
    table = replace(adding.TABLE1, longer=LongerBudget((row,), from_steps=4, max_steps=10, why="Where do they settle?"))
    tiny = ["trainer.eval_every=3", *TINY]  # 3 does not divide 4: a run from step 0 must still evaluate at 4
    sweep = ["-m", "table=table1", f"experiment=table1/{row}", "logger=none", "hydra/launcher=basic", *tiny]
    cli(*sweep, "seed=0,1", "trainer.max_steps=4", f"hydra.sweep.dir={tmp_path / 'table1'}")
    (tmp_path / "table1" / row / "seed=1" / "checkpoint.pt").unlink()  # seed 1 has to start over
    assert longer_section(table, tmp_path, [0, 1], {}) == []  # no section before its folder exists

    def run_dir(folder, seed=0):
        return tmp_path / folder / row / f"seed={seed}"

    run_dir("table1", 2).mkdir()  # a table run still training: refused, and nothing is copied
    (run_dir("table1", 2) / "curve.jsonl").write_text(json.dumps({"step": 3, "val_update_fraction": 1.0}) + "\n")
    with pytest.raises(longer.TableRunUnfinished, match=r"seed=2 \(step 3 of 4\)"):
        longer.start_from_finished_runs(table, tmp_path, [0, 1, 2], tiny)
    assert not (tmp_path / "table1_10steps").exists()
    other = longer.start_from_finished_runs(table, tmp_path, [0])  # asked without the tiny model: not its run
    assert other[row, 0].text.startswith("from step 0 (the table's run differs in ") and other[row, 0].first_leg
    assert "model.hidden_size" in other[row, 0].text
    assert not (tmp_path / "table1_10steps").exists()

    starts = longer.start_from_finished_runs(table, tmp_path, [0, 1], tiny)
    assert starts == {(row, 0): ("from step 4 (the table's run)", False), (row, 1): ("from step 0", True)}
    launch = ["logger=none", "hydra/launcher=basic", *tiny]
    plan = longer.sweeps(table, tmp_path, [0, 1], launch, starts)
    folder = longer.hydra_quoted(str(tmp_path / "table1_10steps"))
    assert [args[:6] for args in plan] == [  # the first leg only for the run from step 0
        ["-m", "table=table1", f"experiment=table1/{row}", seeds, f"trainer.max_steps={n}", f"hydra.sweep.dir={folder}"]
        for seeds, n in (("seed=1", 4), ("seed=0,1", 10))]
    for args in plan:
        cli(*args)
    # a run stopped in its own first leg (seed 3, halted at step 3) must finish that leg first when run again
    cli(*longer.sweeps(table, tmp_path, [3], launch, {(row, 3): longer.Start("from step 0", True)})[0],
        "trainer.halt_after_steps=3")
    again = longer.start_from_finished_runs(table, tmp_path, [0, 1, 3], tiny)
    assert again == {(row, 0): ("finished", False), (row, 1): ("finished", False),
                     (row, 3): ("goes on from its own checkpoint at step 3, first to 4", True)}
    assert [args[3:5] for args in longer.sweeps(table, tmp_path, [0, 1, 3], launch, again)] == [
        ["seed=3", "trainer.max_steps=4"], ["seed=0,1,3", "trainer.max_steps=10"]]
    # seed 1's two legs by hand, in one folder: what its run from step 0 must equal
    cli(*sweep, "seed=1", "trainer.max_steps=4", f"hydra.sweep.dir={tmp_path / 'legs'}")
    cli(*sweep, "seed=1", "trainer.max_steps=10", f"hydra.sweep.dir={tmp_path / 'legs'}")

    def strip(rows):  # the budget each evaluation was made under, and the timing, differ
        return [{k: v for k, v in r.items() if k not in ("seconds_per_step", "max_steps")} for r in rows]

    went_on = {seed: read_curve(run_dir("table1_10steps", seed)) for seed in (0, 1)}
    # the 4-step table leg holds fewer than two evaluations, so both paths evaluate at step 0 too
    assert [r["step"] for r in went_on[0]] == [r["step"] for r in went_on[1]] == [0, 3, 4, 6, 9, 10]
    assert strip(went_on[0][:3]) == strip(read_curve(run_dir("table1")))  # seed 0 went on from the table's run
    assert strip(went_on[1]) == strip(read_curve(run_dir("legs", 1)))

    text, _ = tables.build(table, tmp_path, [0, 1], overrides=[*tiny, "trainer.max_steps=4"])
    main, section = text.split("## Longer budget (10 steps): Skip LSTM, λ = 1e-5")
    assert "| Skip LSTM, λ = 1e-5 |" in main and "2 completed (4 steps)" in main  # the table keeps its own runs
    summary = next(line for line in section.splitlines() if line.startswith("| Skip LSTM"))
    curves = [read_curve(run_dir("table1_10steps", s)) for s in (0, 1)]
    at = {step: mean_std([next(r for r in c if r["step"] == step)["val_update_fraction"] for c in curves],
                                ".1f", 100, "%") for step in (4, 10)}
    solved = [json.loads((run_dir("table1_10steps", s) / "metrics.json").read_text())["final"]["val_solved"]
              for s in (0, 1)]
    late = [min(c, key=lambda r: r["val_update_fraction"])["step"] == 10 for c in curves]
    falling = sum(a and b for a, b in zip(late, solved))
    lost = sum(a and not b for a, b in zip(late, solved))
    assert summary.startswith(f"| Skip LSTM, λ = 1e-5 | {at[4]} | {at[10]} | ")
    assert (f"| {falling} of 2 runs{f'; {lost} more lowest there but unsolved' if lost else ''} | 53.9% ± 2.1% | "
            "2 completed (10 steps) |") in summary
    legs = {s: json.loads((run_dir("table1_10steps", s) / "metrics.json").read_text())["legs"] for s in (0, 1)}
    assert [leg["from_step"] for leg in legs[0]] == [0, 4] and [leg["from_step"] for leg in legs[1]] == [0, 4]
    assert f"(from 0) → {legs[0][1]['commit']} (from 4) |" in section  # each leg's commit, in the per-run lines

    (run_dir("table1_10steps", 0) / "curve.jsonl").unlink()  # damaged records are listed, not a crash

    metrics = run_dir("table1_10steps", 1) / "metrics.json"
    record = json.loads(metrics.read_text())
    del record["final"]["val_mse"]
    metrics.write_text(json.dumps(record))
    text, _ = tables.build(table, tmp_path, [0, 1], overrides=[*tiny, "trainer.max_steps=4"])
    section = text.split("## Longer budget")[1]
    assert "| skip_lstm_lam1e-5 | 0 | unreadable |" in section and "| skip_lstm_lam1e-5 | 1 | unreadable |" in section

    for argv, message in ((["table2"], "no longer budget is declared for 'table2'; the tables with one are table1"),
                          (["table1", "--results", str(tmp_path / "nowhere")], "no runs in"),
                          (["table1", "--results", str(tmp_path), "trainer.max_steps=20"],
                           "trainer.max_steps=20: the longer budget sets trainer.max_steps and trainer.max_epochs")):
        with pytest.raises(SystemExit):
            longer.main(argv)
        assert message in capsys.readouterr().err


def test_a_longer_budget_is_declared_consistently(tmp_path):
    """The declaration names rows of its table, goes past its start, and starts at the rows' own budget."""
    from dataclasses import replace

    from skiprnn.experiment import tables
    from skiprnn.experiment.tasks import adding
    from skiprnn.experiment.tasks.base import LongerBudget

    with pytest.raises(ValueError, match="longer.rows names no row of the table: skip_lstm_lam1e5"):
        replace(adding.TABLE1, longer=LongerBudget(("skip_lstm_lam1e5",), 4, 10, "?"))
    with pytest.raises(ValueError, match="must exceed from_steps"):
        LongerBudget(("skip_lstm_lam1e-5",), 10, 10, "?")
    declared = adding.TABLE1.longer
    asked = tables.asked_configs(adding.TABLE1, [])
    assert {asked[row]["trainer"]["max_steps"] for row in declared.rows} == {declared.from_steps}
    assert declared.folder("table1") == "table1_100k"


def test_the_longer_runs_folder_reaches_hydra_unchanged():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from skiprnn.experiment import longer

    parser = OverridesParser.create()
    for folder in (r"a\b", 'with "quotes"', r'a\"b', "ends in \\", "with space"):
        assert parser.parse_override(f"hydra.sweep.dir={longer.hydra_quoted(folder)}").value() == folder


def test_a_random_skip_checkpoint_re_evaluates_to_its_recorded_numbers(cli, tmp_path):
    """Evaluation draws the random skips from a generator seeded by (seed, split, evaluation): the recorded numbers
    come back from the checkpoint, on the same evaluation, though the global stream moved since."""
    from skiprnn.experiment.trainer import evaluate, load_trained

    run_dir = tmp_path / "run"
    cli("task=adding", "model=lstm", "model.p_skip=0.5", "seed=2", "trainer.max_steps=6", "trainer.eval_every=3",
        "logger=none", f"hydra.run.dir={run_dir}", *TINY)
    curve = read_curve(run_dir)
    cfg, model, task, step = load_trained(run_dir)
    assert step == 6
    torch.manual_seed(12345)  # wherever the global stream stands
    again = evaluate(model, task, "val", len(curve) - 1, cfg["seed"], "cpu")
    assert again["val_mse"] == curve[-1]["val_mse"] and again["val_updates"] == curve[-1]["val_updates"]
    other = evaluate(model, task, "val", len(curve), cfg["seed"], "cpu")  # another evaluation draws other skips
    assert other["val_updates"] != again["val_updates"]


def test_metrics_and_checkpoint_legs_record_where_the_run_ran(cli, tmp_path):
    run_dir = tmp_path / "run"
    cli("task=adding", "model=skip_lstm", "trainer.max_steps=3", "trainer.eval_every=3", "logger=none", "numerics=fast",
        f"hydra.run.dir={run_dir}", *TINY)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    env = metrics["environment"]
    assert env["numerics"] == "fast" and metrics["legs"][-1]["environment"] == env
    assert {"cpu", "isa", "torch", "blas", "onednn", "threads", "kernel_flags"} <= set(env)
    # a run never changes mode when it resumes: the trainer refuses, naming both
    done = cli("task=adding", "model=skip_lstm", "trainer.max_steps=6", "trainer.eval_every=3", "logger=none",
               "numerics=reproducible", f"hydra.run.dir={run_dir}", *TINY, check=False)
    assert done.returncode != 0
    assert "trained with numerics=fast" in done.stderr + done.stdout and "numerics=reproducible" in done.stderr + done.stdout


def test_a_run_being_trained_by_another_process_is_refused_untouched(cli, tmp_path):
    from skiprnn.experiment import tracking

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with tracking.run_lock(run_dir):  # as a second sweep into the same folder would find it
        done = cli("task=adding", "model=skip_gru", "trainer.max_steps=3", "trainer.eval_every=3", "logger=none",
                   f"hydra.run.dir={run_dir}", *TINY, check=False)
    assert done.returncode != 0
    assert f"is being trained by process {os.getpid()}" in done.stderr + done.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == []  # no failed.json, no curve (the lock went with its holder)
    cli("task=adding", "model=skip_gru", "trainer.max_steps=3", "trainer.eval_every=3", "logger=none",
        f"hydra.run.dir={run_dir}", *TINY)  # once the lock is free, it trains
    assert (run_dir / "metrics.json").exists()


def test_a_run_shorter_than_two_evaluations_is_evaluated_at_step_0_too(cli, tmp_path):
    run_dir = tmp_path / "run"
    cli("task=adding", "model=skip_gru", "trainer.max_steps=4", "logger=none", f"hydra.run.dir={run_dir}", *TINY)
    curve = read_curve(run_dir)
    assert [r["step"] for r in curve] == [0, 4]  # eval_every is 300: one evaluation otherwise
    assert "train_loss" not in curve[0] and curve[0]["val_update_fraction"] == 1.0  # untrained: b_p = 1
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    assert final["step"] == 4 and final["stable_window"] == 1  # the step-0 row is no result


def test_a_run_says_and_records_how_many_sequences_an_evaluation_scores(cli, tmp_path):
    run_dir = tmp_path / "run"
    done = cli("task=adding", "model=lstm", "trainer.max_steps=2", "trainer.eval_every=1", "task.eval_batches=3",
               "logger=none", f"hydra.run.dir={run_dir}", *TINY[:1], *TINY[2:])  # batch 16, 3 batches
    assert "each evaluation scores 48 val sequences" in done.stdout
    assert json.loads((run_dir / "metrics.json").read_text())["eval_size"] == {"val": 48}
