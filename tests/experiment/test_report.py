"""The offline HTML report (skiprnn.experiment.report) on synthetic run folders: grouping, statuses, marks,
paper values, no network references, the two plotly.js modes, the PNG and the command line."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

pytest.importorskip("plotly")

from skiprnn.experiment.report import build_report, collect  # noqa: E402
from skiprnn.experiment.report.__main__ import main  # noqa: E402

GROUPS = {"gru": {"mode": "gru", "lam": 0.0}, "skip_gru_lam1e-4": {"mode": "skip_gru", "lam": 1e-4}}
PAPER = {"gru": {"metric": 2e-5, "updates": 1.0}, "skip_gru_lam1e-4": {"metric": None, "updates": 0.5},
         "lstm": {"metric": 1e-5, "updates": 1.0}}


def config(row: str, seed: int, max_steps: int = 3000) -> dict:
    spec = GROUPS[row]
    return {"task": {"name": "adding", "seq_len": 50, "eval_batches": 15, "solved_mse": 0.0016},
            "model": {"mode": spec["mode"], "hidden_size": 110, "num_layers": 1, "p_skip": 0.0},
            "trainer": {"max_steps": max_steps, "batch_size": 256, "lr": 1e-4, "eval_every": 300, "device": "cpu",
                        "progress": False, "halt_after_steps": None},
            "logger": {"backend": "none"}, "lam": spec["lam"], "seed": seed, "row": row, "group": "t",
            "threads": 1, "force": False}


def curve(row: str, seed: int, until: int, max_steps: int = 3000) -> list[dict]:
    target = 1.0 if GROUPS[row]["mode"] == "gru" else 0.4 + 0.05 * seed
    rows = []
    for step in [*range(300, until + 1, 300)] + ([until] if until % 300 else []):
        t = step / max_steps
        rows.append({"step": step, "max_steps": max_steps, "train_loss": 0.2 * math.exp(-4 * t),
                     "val_mse": 0.17 * math.exp(-8 * t) + 1e-5 * (seed + 1), "val_solved": t > 0.5,
                     "val_update_fraction": 1.0 - (1.0 - target) * t, "val_updates": 50 * (1.0 - (1.0 - target) * t),
                     "seconds_per_step": 0.03})
    return rows


def write_run(path: Path, row: str, seed: int, status: str, max_steps: int = 3000) -> None:
    path.mkdir(parents=True)
    cfg = config(row, seed, max_steps)
    (path / ".hydra").mkdir()
    (path / ".hydra" / "config.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    until = max_steps if status == "completed" else max_steps // 2
    rows = curve(row, seed, until, max_steps)
    (path / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status == "completed":
        (path / "metrics.json").write_text(json.dumps({
            "status": "completed", "step": max_steps, "row": row, "seed": seed, "commit": "abc123",
            "legs": [{"commit": "abc123", "from_step": 0}], "final": rows[-1], "config": cfg, "overrides": []}))
    elif status == "failed":
        (path / "failed.json").write_text(json.dumps({"error": "RuntimeError('loss is nan')", "config": cfg}))
    elif status == "corrupt":
        (path / "metrics.json").write_text('{"status": "completed", "step": 30')  # cut short


def make_runs(root: Path) -> Path:
    """Two groups (gru: seeds 0-3, skip_gru_lam1e-4: seeds 0-2) with one unfinished, one failed and one corrupt
    run; gru seed 3 trained with another step budget (plumbing: same group); gru seed 1's curve has a bad line."""
    sweep = root / "sweep"
    write_run(sweep / "gru" / "seed=0", "gru", 0, "completed")
    write_run(sweep / "gru" / "seed=1", "gru", 1, "completed")
    write_run(sweep / "gru" / "seed=2", "gru", 2, "corrupt")
    write_run(sweep / "gru" / "seed=3", "gru", 3, "completed", max_steps=2400)
    with open(sweep / "gru" / "seed=1" / "curve.jsonl", "a") as f:
        f.write("{not json\n")
    write_run(sweep / "skip_gru_lam1e-4" / "seed=0", "skip_gru_lam1e-4", 0, "completed")
    write_run(sweep / "skip_gru_lam1e-4" / "seed=1", "skip_gru_lam1e-4", 1, "unfinished")
    write_run(sweep / "skip_gru_lam1e-4" / "seed=2", "skip_gru_lam1e-4", 2, "failed")
    (sweep / "skip_gru_lam1e-4" / "seed=2" / "wandb").mkdir()  # a run's own subfolders hold no runs
    (sweep / "skip_gru_lam1e-4" / "seed=2" / "wandb" / "curve.jsonl").write_text("junk\n")
    return sweep


def script_srcs(page: str) -> list[str]:
    return re.findall(r"<script\b[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", page, flags=re.I)


def plot_specs(page: str) -> dict[str, dict]:
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(
        r'<script type="application/json" data-plot="([^"]+)">(.*?)</script>', page, flags=re.S)}


def test_collect_groups_and_statuses(tmp_path):
    coll = collect([make_runs(tmp_path)])
    assert [g.label for g in coll.groups] == ["gru", "skip_gru_lam1e-4"]
    status = {g.label: sorted((r.seed, r.status) for r in g.runs) for g in coll.groups}
    assert status == {"gru": [(0, "completed"), (1, "completed"), (2, "unreadable"), (3, "completed")],
                      "skip_gru_lam1e-4": [(0, "completed"), (1, "unfinished"), (2, "failed")]}
    gru = coll.groups[0]
    assert gru.metric == "val_mse"
    bad_curve = next(r for r in gru.runs if r.seed == 1)
    assert len(bad_curve.curve) == 10 and any("curve.jsonl" in p for p in bad_curve.problems)
    assert "metrics.json" in next(r for r in gru.runs if r.seed == 2).error
    assert set(coll.varying) == {"lam", "model.mode"}
    assert coll.expected_seeds == {0: [0, 1, 2, 3]}


def test_started_runs_and_broken_records(tmp_path):
    """A run with only its config is unfinished (no evaluation yet); a corrupt failed.json or config record is
    listed, never fatal; a folder given may itself be a run directory."""
    started = tmp_path / "started"
    (started / ".hydra").mkdir(parents=True)
    (started / ".hydra" / "config.yaml").write_text(json.dumps(config("gru", 5)))
    run = collect([started]).runs[0]
    assert (run.status, run.step, run.seed, run.metric) == ("unfinished", 0, 5, "val_mse")
    broken = tmp_path / "broken"
    (broken / ".hydra").mkdir(parents=True)
    (broken / ".hydra" / "config.yaml").write_text("model: [unclosed\n")
    (broken / "failed.json").write_bytes(b"\xff\xfe not json")
    coll = collect([tmp_path])
    bad = next(r for r in coll.runs if r.path.name == "broken")
    assert bad.status == "unreadable" and len(bad.problems) == 2
    assert [g.label for g in coll.groups] == ["gru", "no readable config"]
    page = build_report([tmp_path], tmp_path / "r.html", js="directory").read_text()
    assert "no evaluation yet" in page and "no readable config" in page


def test_labels_from_differing_keys_without_rows(tmp_path):
    for name, mode in (("a", "gru"), ("b", "lstm")):
        cfg = {"model": {"mode": mode, "hidden_size": 8}, "lam": 0.0, "seed": 0, "trainer": {"max_steps": 10}}
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"step": 10, "final": {"val_accuracy": 0.5}, "config": cfg}))
    coll = collect([tmp_path])
    assert [g.label for g in coll.groups] == ["mode=gru", "mode=lstm"]


def test_metrics_in_records_order(tmp_path):
    """A report draws one row of plots per headline metric its groups report, in records' order, each once."""
    finals = [{"val_map": 0.2}, {"val_accuracy": 0.5}, {"val_accuracy": 0.6}, {"val_mse": 0.1}]
    for size, final in enumerate(finals):
        cfg = {"model": {"mode": "gru", "hidden_size": size + 1}, "seed": 0}
        run = tmp_path / str(size)
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"step": 10, "final": final, "config": cfg}))
    coll = collect([tmp_path])
    assert len(coll.groups) == 4
    assert coll.metrics == ["val_mse", "val_accuracy", "val_map"]


def test_labels_of_rows_shared_by_groups(tmp_path):
    """A row name used by two configs (or by one config in two folders given) gets the key that tells them apart."""
    for task in ("adding", "mnist"):
        cfg = {"task": {"name": task}, "model": {"mode": "gru"}, "seed": 0, "row": "gru"}
        run = tmp_path / "all" / task / "gru" / "seed=0"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"step": 10, "final": {"val_mse": 0.1}, "config": cfg}))
    assert [g.label for g in collect([tmp_path / "all"]).groups] == ["gru (name=adding)", "gru (name=mnist)"]
    one, two = str(tmp_path / "all" / "adding"), str(tmp_path / "all" / "mnist" / ".." / "adding" / "gru")
    coll = collect([one, two])
    assert len(coll.runs) == 1  # the same run reached twice counts once
    (tmp_path / "copy").mkdir()
    import shutil

    shutil.copytree(tmp_path / "all" / "adding" / "gru", tmp_path / "copy" / "gru")
    labels = [g.label for g in collect([one, str(tmp_path / "copy")]).groups]
    assert labels == [f"gru (folder={one})", f"gru (folder={tmp_path / 'copy'})"]


def test_report_html(tmp_path):
    out = build_report([make_runs(tmp_path)], tmp_path / "out" / "report.html", paper=PAPER, title="Synthetic")
    page = out.read_text()
    # each group, in the table and as a legend entry of the plots
    for label in GROUPS:
        assert f"{label}</td>" in page
    specs = plot_specs(page)
    assert set(specs) == {"plot-curves", "plot-tradeoff"}
    legend = {t["name"] for t in specs["plot-curves"]["data"] if t.get("showlegend")}
    assert legend == set(GROUPS)
    # the table's marks: unfinished, failed, unreadable, missing, the paper's columns, unmatched paper rows
    groups_table = page.split('<table class="groups">')[1].split("</table>")[0]
    assert "◔ 1" in groups_table and "✗ 1" in groups_table and "⚠ 1" in groups_table
    assert "missing seed 3" in groups_table
    assert "paper metric" in groups_table and "2e-05" in groups_table and "50.0%" in groups_table
    assert "Paper values matching no group: lstm" in page
    assert "RuntimeError(&#x27;loss is nan&#x27;)" in page  # the failed run's error, in the runs table
    assert "Unreadable files (2)" in page and "curve.jsonl: 1 unreadable line(s) (line 11" in page
    # hover details: folder, seed, step, commit
    hovers = " ".join(t.get("hovertemplate", "") + " ".join(t.get("text", []))
                      for spec in specs.values() for t in spec["data"])
    assert "run: " + str(tmp_path / "sweep" / "gru" / "seed=0") in hovers
    assert "seed: 3" in hovers and "commit: abc123" in hovers and "step: %{x:,}" in hovers
    # trade-off: one point per finished run (and the unfinished run's latest evaluation), the paper's star
    trade = specs["plot-tradeoff"]["data"]
    finished = [t for t in trade if t.get("marker", {}).get("symbol") == "circle"]
    assert sum(len(t["x"]) for t in finished) == 4
    assert any(t.get("marker", {}).get("symbol") == "star" for t in trade)
    # offline: plotly.js inline, no script loaded from anywhere
    assert script_srcs(page) == []
    bundle = re.search(r"<script>(/\*\*\s*\* plotly\.js v.*?)</script>", page, flags=re.S)
    assert bundle and len(bundle.group(1)) > 1_000_000
    ours = page.replace(bundle.group(0), "")  # plotly.js itself holds URLs for map tiles and docs: never fetched
    assert "cdn" not in ours.lower() and "https://" not in ours and "http://" not in ours


def test_directory_mode_shares_plotly(tmp_path):
    runs = make_runs(tmp_path)
    out = build_report([runs], tmp_path / "reports" / "a.html", js="directory")
    page = out.read_text()
    shared = tmp_path / "reports" / "plotly.min.js"
    assert shared.stat().st_size > 1_000_000 and "plotly.js v" in shared.read_text()[:300]
    assert script_srcs(page) == ["plotly.min.js"]
    assert len(page.encode()) < 150_000
    assert "cdn" not in page.lower() and "https://" not in page and "http://" not in page
    before = shared.stat().st_mtime_ns
    build_report([runs], tmp_path / "reports" / "b.html", js="directory", title="second")
    assert shared.stat().st_mtime_ns == before  # written once, shared by the folder's reports
    with pytest.raises(ValueError):
        build_report([runs], tmp_path / "c.html", js="cdn")


def test_paper_file_png_and_cli(tmp_path, capsys):
    runs = make_runs(tmp_path)
    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps(PAPER))
    out, png = tmp_path / "cli.html", tmp_path / "cli.png"
    assert main([str(runs), "-o", str(out), "--paper", str(paper), "--js", "directory", "--png", str(png),
                 "--seeds", "0,1,2,3,4"]) == 0
    err = capsys.readouterr().err
    assert "7 runs in 2 groups (4 finished, 1 unfinished, 1 failed, 1 unreadable)" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "missing seeds 3, 4" in out.read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--js {inline,directory}" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main([str(runs), "-o", str(tmp_path / "x.html"), "--paper", str(bad)]) == 1


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    page = build_report([tmp_path / "empty"], tmp_path / "empty.html").read_text()
    assert "No runs found." in page
    with pytest.raises(FileNotFoundError):
        build_report([tmp_path / "nope"], tmp_path / "x.html")


def test_keys_that_did_nothing_never_split_a_group(tmp_path):
    """A plain GRU recorded before gate_init and p_skip_keep_first existed trained like one recorded after them
    (neither key acts on it): one group. A Skip GRU recorded before gate_init existed had torch's W_p: its own group."""
    sweep = tmp_path / "sweep"
    for row, seed, model in (("gru", 0, {}), ("gru", 1, {"gate_init": "glorot", "p_skip_keep_first": False}),
                             ("skip_gru_lam1e-4", 0, {}), ("skip_gru_lam1e-4", 1, {"gate_init": "glorot"})):
        path = sweep / row / f"seed={seed}"
        write_run(path, row, seed, "completed")
        record = json.loads((path / "metrics.json").read_text())
        record["config"]["model"].update(model)
        (path / "metrics.json").write_text(json.dumps(record))
    coll = collect([sweep])
    groups = {g.label: sorted(r.seed for r in g.runs) for g in coll.groups}
    assert sorted(groups.values()) == [[0], [0, 1], [1]]
    assert next(g for g in coll.groups if len(g.runs) == 2).rows == ["gru"]
    assert "model.gate_init" in coll.varying  # torch against glorot, for the Skip GRU runs only


def test_mixed_budgets_are_said_and_runs_below_the_tables_budget_flagged(tmp_path):
    """A group averaging runs of two lengths says so in its row; a table's report flags each run shorter than the
    budget its row asks for, as the table does."""
    root = tmp_path / "t"
    row = next(iter(GROUPS))
    write_run(root / row / "seed=0", row, 0, "completed", max_steps=3000)
    write_run(root / row / "seed=1", row, 1, "completed", max_steps=600)
    page = build_report([root], tmp_path / "r.html", js="directory", budgets={row: 3000}).read_text()
    assert "mixed budgets: 600; 3,000" in page
    assert page.count("below the 3,000-step budget") == 1
    plain = build_report([root], tmp_path / "plain.html", js="directory").read_text()
    assert "below the" not in plain  # a report of any folder knows no budget


def test_every_group_has_its_own_colour_and_long_seed_lists_read_as_ranges():
    from types import SimpleNamespace

    from skiprnn.experiment.report.series import color
    from skiprnn.experiment.report.text import seed_ranges

    colours = [color(SimpleNamespace(index=i)) for i in range(60)]
    assert len(set(colours)) == 60
    assert seed_ranges(range(150)) == "0–149"
    assert seed_ranges([3, 0, 1, 2, 7, 9, 10]) == "0–3, 7, 9, 10"
    assert seed_ranges([]) == ""
