"""skiprnn.compare: runs grouped by config across folders, statistics over seeds, unfinished and failed runs."""
import json
import statistics

import pytest
import yaml

from skiprnn.experiment import compare, tracking


def config(lam: float, seed: int, steps: int = 100) -> dict:
    return {"lam": lam, "seed": seed, "row": f"skip_gru-{lam}", "group": "frequency", "threads": 1, "force": False,
            "model": {"mode": "skip_gru", "hidden_size": 110, "num_layers": 1, "p_skip": 0.0},
            "task": {"name": "frequency", "sampling_period": 1.0, "variant": "original"},
            "trainer": {"max_steps": steps, "lr": 1e-4, "progress": True, "device": "cpu"},
            "logger": {"backend": "wandb", "mode": "offline", "tags": []}}


def finished(path, lam, seed, accuracy, updates, steps=100):
    path.mkdir(parents=True)
    final = {"val_accuracy": accuracy, "val_solved": accuracy > 0.99, "val_updates": updates,
             "val_update_fraction": updates / 100, "stable_window": 1, "stable_updates": updates}
    tracking.write_json(path / tracking.METRICS, {"step": steps, "commit": "abc", "config": config(lam, seed, steps),
                                                  "final": final})


def unfinished(path, lam, seed, step, accuracy, updates):
    (path / tracking.RECORD).mkdir(parents=True)
    (path / tracking.RECORD / "config.yaml").write_text(yaml.safe_dump(config(lam, seed)))
    row = {"step": step, "max_steps": 100, "val_accuracy": accuracy, "val_updates": updates,
           "val_update_fraction": updates / 100}
    (path / tracking.CURVE).write_text(json.dumps(row) + "\n")


@pytest.fixture
def sweeps(tmp_path):
    a, b = tmp_path / "original", tmp_path / "paper"
    runs = {(1e-5, 0): (0.995, 40.0), (1e-5, 1): (0.999, 52.0), (1e-5, 2): (0.98, 61.0), (1e-4, 0): (0.997, 20.0)}
    for (lam, seed), (acc, upd) in runs.items():
        finished(a / f"lam={lam}" / f"seed={seed}", lam, seed, acc, upd)
    unfinished(a / "lam=0.0001" / "seed=1", 1e-4, 1, 60, 0.9, 33.0)
    failed = a / "lam=0.0001" / "seed=2"
    failed.mkdir(parents=True)
    tracking.write_json(failed / tracking.FAILED, {"error": "RuntimeError('boom')", "config": config(1e-4, 2)})
    finished(b / "x" / "seed=0", 1e-5, 0, 0.97, 70.0)
    return a, b, runs


def table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_groups_by_config_and_averages_over_seeds(sweeps, capsys):
    a, _, runs = sweeps
    assert compare.main([str(a)]) == 0
    text = capsys.readouterr().out
    header, *rows = table_rows(text)
    assert header[:2] == ["lam", "finished (seeds)"]  # only λ differs between the groups
    assert [row[0] for row in rows] == ["1e-05", "0.0001"]  # numeric order
    small = rows[0]
    values = [runs[(1e-5, s)] for s in (0, 1, 2)]
    accuracy = f"{statistics.fmean(v[0] for v in values):.3f} ± {statistics.pstdev(v[0] for v in values):.3f}"
    updates = f"{statistics.fmean(v[1] for v in values):.1f} ± {statistics.pstdev(v[1] for v in values):.1f}"
    assert small[1:5] == ["3/3 (0, 1, 2)", f"accuracy {accuracy}", "2/3", updates]
    large = rows[1]
    assert large[1] == "1/3 (0)" and large[4] == "20.0"  # one finished run: its value alone
    assert large[-1] == "seed 1 at 60/100: accuracy 0.9, 33.0 updates; seed 2 failed"
    assert "`model.mode=skip_gru`" in text and "`task.variant=original`" in text  # shared settings, stated once
    assert "seed" not in header and "trainer.progress" not in text and "logger" not in text


def test_a_seed_trained_twice_counts_once(sweeps, capsys):
    """The same config in two folders (e.g. lam=1e-4 typed once as 0.0001): one run per seed counts, the
    longest-trained, then the first by path."""
    a, _, runs = sweeps
    duplicate = a / "zz-duplicate" / "seed=0"
    finished(duplicate, 1e-5, 0, 0.5, 99.0)
    compare.main([str(a)])
    small = table_rows(capsys.readouterr().out)[1]
    values = [runs[(1e-5, s)][1] for s in (0, 1, 2)]
    assert small[1] == "3/3 (0, 1, 2)" and small[4].startswith(f"{statistics.fmean(values):.1f} ± ")
    assert small[-1] == f"seed 0 also in {duplicate} (not counted)"


def test_several_folders_get_a_sweep_column_and_out_file(sweeps, tmp_path, capsys):
    a, b, _ = sweeps
    out = tmp_path / "comparison.md"
    compare.main([str(a), str(b), "--out", str(out)])
    text = capsys.readouterr().out
    assert out.read_text() == text
    header, *rows = table_rows(text)
    assert header[:2] == ["sweep", "lam"]
    assert [(row[0], row[1]) for row in rows] == [(str(a), "1e-05"), (str(a), "0.0001"), (str(b), "1e-05")]
    assert rows[2][2:4] == ["1/1 (0)", "accuracy 0.970"]


def test_bad_folders_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path / "absent")])
    assert "absent is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path / "empty")])
    assert "no run directories below" in capsys.readouterr().err


def test_a_key_that_did_nothing_does_not_split_a_group(tmp_path, capsys):
    """p_skip_keep_first acts only where p_skip > 0: a run recorded before the key existed and one recorded with it
    are the same config when p_skip = 0, and two configs when p_skip > 0 (the old behaviour kept step 1)."""
    def run(folder, seed, p_skip, **model):
        finished(tmp_path / folder / f"seed={seed}", 1e-5, seed, 0.995, 50.0)
        path = tmp_path / folder / f"seed={seed}" / tracking.METRICS
        record = json.loads(path.read_text())
        record["config"]["model"].update(p_skip=p_skip, **model)
        path.write_text(json.dumps(record))

    run("a", 0, 0.0)
    run("a", 1, 0.0, p_skip_keep_first=False)
    run("b", 0, 0.5)
    run("b", 1, 0.5, p_skip_keep_first=False)
    assert compare.main([str(tmp_path / "a")]) == 0
    header, *rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 1 and "2/2" in rows[0][header.index("finished (seeds)")]
    assert compare.main([str(tmp_path / "b")]) == 0
    header, *rows = table_rows(capsys.readouterr().out)
    assert header[0] == "model.p_skip_keep_first" and len(rows) == 2


def test_compare_and_the_report_find_the_same_runs(tmp_path):
    """One discovery rule (records.find_runs): symlinked row folders are followed, a run found through two given
    folders counts once, and a result without its config is listed as unreadable by both, never dropped."""
    import json
    import os

    from skiprnn.experiment import compare
    from skiprnn.experiment.report import collect

    from .test_report import write_run

    real = tmp_path / "elsewhere" / "gru"
    write_run(real / "seed=0", "gru", 0, "completed")
    write_run(real / "seed=1", "gru", 1, "completed")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    os.symlink(real, sweep / "gru")  # a row folder that is a link
    (sweep / "broken").mkdir()
    (sweep / "broken" / "metrics.json").write_text(json.dumps({"a": 1}))

    groups, _, _, unreadable = compare.collect([sweep, sweep / "gru"])
    assert sum(len(runs) for runs in groups.values()) == 2
    assert [u.split(":")[0] for u in unreadable] == [str(sweep / "broken")]
    coll = collect([sweep, sweep / "gru"])
    assert len([r for r in coll.runs if r.status == "completed"]) == 2
    assert [r.status for r in coll.runs if r.status != "completed"] == ["unreadable"]


def test_compare_groups_budgets_as_the_report_does_and_flags_them(tmp_path, capsys):
    """One grouping rule (identity.group_settings): runs that differ only in their budget form one group, whose
    steps say that the means mix budgets."""
    from skiprnn.experiment.report import collect

    finished(tmp_path / "seed=0", 1e-5, 0, 0.99, 40.0, steps=100)
    finished(tmp_path / "seed=1", 1e-5, 1, 0.98, 50.0, steps=200)
    assert compare.main([str(tmp_path)]) == 0
    header, *rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0][header.index("steps")] == "100, 200 (mixed budgets)"
    assert len(collect([tmp_path]).groups) == 1


def test_tables_compare_and_the_report_agree_on_one_folder_of_mixed_runs(tmp_path):
    """One reader (records.read_run) and one discovery (records.find_runs) behind every tool: a table's folder with a
    finished, an unfinished, a failed and a damaged run counts the same four statuses in each."""
    from collections import Counter

    from skiprnn.experiment import tables
    from skiprnn.experiment.report import collect
    from skiprnn.experiment.tasks.adding import TABLE1

    asked = tables.asked_configs(TABLE1, [], rows=("lstm", "skip_gru_lam1e-5"))
    final = {"val_mse": 0.01, "val_solved": True, "val_update_fraction": 0.5, "val_updates": 25.0,
             "inference_flops": 1e6, "stable_mse": 0.01, "stable_update_fraction": 0.5, "stable_updates": 25.0,
             "stable_window": 1}

    def run(row, seed, status):
        path = tmp_path / "table1" / row / f"seed={seed}"
        (path / tracking.RECORD).mkdir(parents=True)
        cfg = {**asked[row], "seed": seed}
        (path / tracking.RECORD / "config.yaml").write_text(yaml.safe_dump(cfg))
        rows = [{"step": 100, "max_steps": 200, **final}] + ([{"step": 200, "max_steps": 200, **final}]
                                                             if status == "completed" else [])
        (path / tracking.CURVE).write_text("".join(json.dumps(r) + "\n" for r in rows))
        if status == "completed":
            tracking.write_json(path / tracking.METRICS, {"step": 200, "commit": "abc", "config": cfg, "final": final})
        elif status == "failed":
            tracking.write_json(path / tracking.FAILED, {"error": "RuntimeError('boom')", "config": cfg})
        elif status == "unreadable":
            (path / tracking.METRICS).write_text(json.dumps({"a": 1}))

    for row, seed, status in (("lstm", 0, "completed"), ("lstm", 1, "unfinished"),
                              ("skip_gru_lam1e-5", 0, "failed"), ("skip_gru_lam1e-5", 1, "unreadable")):
        run(row, seed, status)
    want = Counter({"completed": 1, "unfinished": 1, "failed": 1, "unreadable": 1})

    text, _ = tables.build(TABLE1, tmp_path, [0, 1], overrides=["trainer.max_steps=200"])
    every = text.split("## Every run")[1].splitlines()
    in_table = Counter(line.split("|")[3].strip() for line in every if line.startswith("| lstm |")
                       or line.startswith("| skip_gru_lam1e-5 |"))
    groups, _, _, unreadable = compare.collect([tmp_path / "table1"])
    in_compare = Counter(str(r.status) for runs in groups.values() for _, r in runs) + Counter(
        {"unreadable": len(unreadable)})
    in_report = Counter(str(r.status) for r in collect([tmp_path / "table1"]).runs)
    assert in_table == in_compare == in_report == want
