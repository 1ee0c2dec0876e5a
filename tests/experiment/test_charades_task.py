"""The Charades task (Table 3) on a tiny synthetic set: padded batches, masks, targets, normalisation, the per-video
evaluation, a run through the real CLI whose folder builds Table 3, the missing-data message, and the table's
configs against the paper's rows."""
import json
import math

import numpy as np
import pytest
import torch

from skiprnn.experiment.errors import DataError
from skiprnn.experiment.model import model_from_config
from skiprnn.experiment.tasks.charades import TABLES, TASK, synth
from skiprnn.experiment.tasks.charades.task import TABLE3, CharadesTask
from skiprnn.nn.flops import VGG16_FLOPS, flops_per_update

DIM = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """<tmp>/Charades: 12 videos (9 train, 3 test) of 8-d features, 3-6 s long (19-37 frames)."""
    root = tmp_path_factory.mktemp("charades") / "Charades"
    synth.generate(root, videos=12, seed=1, dim=DIM, min_length=3.0, max_length=6.0, active_classes=4,
                   classes_per_video="1-2", test_fraction=0.25, progress=False)
    return root


@pytest.fixture(scope="module")
def task(data):
    return CharadesTask(data_root=str(data), num_points=25, batch_size=4)


def tiny_model(task, mode="gru", layers=2):
    torch.manual_seed(0)
    return model_from_config({"mode": mode, "hidden_size": 8, "num_layers": layers, "p_skip": 0.0},
                             task.input_size, task.output_size, task.readout)


def test_the_package_exposes_the_task_and_its_table():
    assert TASK is CharadesTask and TABLES == (TABLE3,)
    assert CharadesTask.readout == "every_step" and CharadesTask.feature_flops == VGG16_FLOPS


def test_padded_batches_masks_and_targets(task):
    cache = task.train_cache
    assert task.input_size == DIM and task.output_size == 157 and task.n_train == 9 and task.steps_per_epoch == 3
    seen = []
    for step in range(task.steps_per_epoch):  # one epoch: every training video once, the last batch smaller
        idx = task.train_indices(step, 4, seed=0)
        batch = task.train_batch(step, 4, seed=0)
        seen += idx.tolist()
        lengths = cache.num_frames[idx.numpy()]
        assert batch.lengths.tolist() == lengths.tolist() and batch.lengths.dtype == torch.int64
        assert batch.x.shape == (lengths.max(), len(idx), DIM) and batch.y.shape == (lengths.max(), len(idx), 157)
        for b, i in enumerate(idx.tolist()):
            n = int(lengths[b])
            assert torch.equal(batch.x[:n, b], torch.from_numpy(task.features(cache, i)))
            assert torch.equal(batch.y[:n, b], torch.from_numpy(cache.targets(i).astype(np.float32)))
            assert not batch.x[n:, b].any() and not batch.y[n:, b].any()  # padding is zero
    assert sorted(seen) == list(range(9))
    again = task.train_batch(1, 4, seed=0)  # a pure function of (seed, step): a resumed run sees the same data
    assert torch.equal(again.x, task.train_batch(1, 4, seed=0).x)
    assert sorted(task.train_indices(3, 4, 0).tolist() + task.train_indices(4, 4, 0).tolist()
                  + task.train_indices(5, 4, 0).tolist()) == list(range(9))  # the next epoch, reshuffled


def test_loss_and_budget_count_only_real_frames(task):
    batch = task.train_batch(0, 4, seed=0)
    model = tiny_model(task, "skip_gru")
    prediction, updates = model(batch.x, lengths=batch.lengths)
    assert prediction.shape == batch.y.shape and updates.shape == batch.x.shape[:2]
    valid = torch.arange(batch.x.shape[0])[:, None] < batch.lengths[None, :]
    assert not updates[~valid].any()  # padding never updates
    loss = task.loss(prediction, batch.y, batch.lengths)
    garbage = prediction.detach().clone()
    garbage[~valid] = 1e3  # whatever the model says on padding does not count
    changed = torch.where(valid[..., None], prediction, garbage)
    assert task.loss(changed, batch.y, batch.lengths).item() == pytest.approx(loss.item())
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(prediction[valid], batch.y[valid], reduction="none")
    assert loss.item() == pytest.approx(by_hand.sum(-1).mean().item(), rel=1e-6)  # sum over classes, mean over frames
    task.loss_reduction = "mean"
    try:
        assert task.loss(prediction, batch.y, batch.lengths).item() == pytest.approx(by_hand.mean().item(), rel=1e-6)
    finally:
        task.loss_reduction = "sum_classes"


def test_normalisations(data, task):
    cache = task.train_cache
    frames = np.concatenate([task.features(cache, i) for i in range(len(cache))])
    assert np.allclose(frames.mean(0), 0, atol=1e-4) and np.allclose(frames.std(0), 1, atol=1e-3)
    assert (cache.dir / "feature_stats.npz").is_file()  # computed once, kept beside the cache
    l2 = CharadesTask(data_root=str(data), normalize="l2", num_points=25, batch_size=4)
    assert np.allclose(np.linalg.norm(l2.features(cache, 0), axis=1), 1, atol=1e-5)
    raw = CharadesTask(data_root=str(data), normalize="none", num_points=25, batch_size=4)
    assert np.array_equal(raw.features(cache, 0), np.asarray(cache.features(0), dtype=np.float32))


def test_evaluation_scores_every_video_and_counts_updates_per_video(task):
    out = task.evaluate(tiny_model(task), "val", 0, 0, "cpu")
    frames = task.eval_cache.num_frames
    assert out["val_videos"] == 3 and out["val_missing_points"] == 0
    assert out["val_updates"] == pytest.approx(frames.mean()) and out["val_updates_std"] == pytest.approx(frames.std())
    assert out["val_update_fraction"] == 1.0 and out["val_update_fraction_std"] == 0.0
    assert 0 < out["val_map"] <= 1 and 0 < out["val_map_chance"] < 1 and 1 <= out["val_map_classes"] <= 4
    assert out["val_map_official"] is None  # a class of the 157 has no positive: the official mAP is NaN
    assert "val_solved" not in out  # Table 3 has no "solved" criterion


def test_missing_data_names_the_files_and_where_to_get_them(tmp_path):
    with pytest.raises(DataError) as info:
        CharadesTask(data_root=str(tmp_path / "nothing"))
    text = str(info.value)
    assert "\n" not in text  # one line, as the command line prints it
    for words in ("Charades_v1_train.csv", "Charades_v1_test.csv", "Charades_v1_classes.txt",
                  "Charades_v1_features_rgb/", "prior.allenai.org/projects/charades", "task.data_root=",
                  "SKIPRNN_DATA", "skiprnn.experiment.tasks.charades.synth"):
        assert words in text


def test_a_cli_run_yields_map_and_updates_and_builds_table3(cli, data, tmp_path, monkeypatch):
    """One Table 3 row through the CLI (the data root from SKIPRNN_DATA), then the table from its folder."""
    tiny = ["model.hidden_size=8", "trainer.batch_size=4", "trainer.max_epochs=1", "task.num_points=25"]
    run_dir = tmp_path / "results" / "table3" / "skip_gru_lam1e-2" / "seed=0"
    monkeypatch.setenv("SKIPRNN_DATA", str(data.parent))
    cli("experiment=table3/skip_gru_lam1e-2", *tiny, "logger=none", "trainer.progress=false",
        f"hydra.run.dir='{run_dir}'")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    final = metrics["final"]
    assert metrics["step"] == 3 and 0 < final["val_map"] <= 1 and final["val_updates"] > 0
    assert final["val_updates_std"] >= 0 and "stable_solved_fraction" not in final
    per_update = flops_per_update("skip_gru", DIM, 8, 2, VGG16_FLOPS)
    assert final["inference_flops"] == pytest.approx(final["val_updates"] * per_update)
    # the run's record names no folder of this machine: the data root stays as the config wrote it
    assert metrics["config"]["task"]["data_root"] == "${oc.env:SKIPRNN_DATA,data}/Charades"
    assert str(data.parent) not in (run_dir / "metrics.json").read_text() + (run_dir / ".hydra" / "config.yaml").read_text()

    # the test split's submission files, in the official format, score what the final evaluation scored
    from skiprnn.experiment.tasks.charades import metric

    assert metrics["outputs"] == ["submission_25pts.txt"]  # num_points=25: the official file only
    lines = (run_dir / "submission_25pts.txt").read_text().splitlines()
    assert len(lines) == 25 * final["val_videos"] and len(lines[0].split()) == 2 + 157
    scored = metric.evaluate_submission(data / "Charades_v1_test.csv", run_dir / "submission_25pts.txt", 25)
    assert scored.map_present == pytest.approx(final["val_map"], abs=1e-6) and scored.missing == 0

    cli("table3", "--no-report", "--results", str(tmp_path / "results"), "--note", "Synthetic data.", *tiny,
        module="skiprnn.tables")
    text = (tmp_path / "results" / "table3.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Skip GRU, λ = 1e-2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{100 * final['val_map']:.2f}" and cells[2] == "7.95"  # mAP (%): ours, the paper's
    assert cells[3] == f"{final['val_updates']:.1f} ± {final['val_updates_std']:.1f}" and cells[4] == "18.4 ± 5.1"
    assert cells[-1].startswith("1 completed")
    assert "**Note:** Synthetic data." in text and "| LSTM | – | 8.40 |" in text  # the other rows: missing
    assert "1.06e12 (sic" in text


def test_cli_reports_missing_charades_in_one_line(cli, tmp_path):
    """The command line stops with the message alone (no traceback), and the run's folder says it failed, so that
    a sweep's table lists it."""
    proc = cli("task=charades", f"task.data_root={tmp_path / 'nothing'}", "logger=none",
               f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: Charades data not found") and "task.data_root=" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert json.loads((tmp_path / "run" / "failed.json").read_text())["config"]["task"]["name"] == "charades"


def test_table3_configs_are_the_papers_rows(compose_cfg):
    from omegaconf import OmegaConf

    from skiprnn.experiment.cli import resolved

    assert len(TABLE3.rows) == 16 and TABLE3.seeds == (0,)
    sweep = compose_cfg("table=table3")
    assert str(sweep.hydra.sweeper.params.seed) == "0" and sweep.trainer.max_epochs >= 1
    for row in TABLE3.rows:
        full = compose_cfg("table=table3", f"experiment=table3/{row.row}")
        cfg = resolved(OmegaConf.masked_copy(full, [k for k in full if k != "hydra"]))
        mode, _, rest = row.row.partition("_pskip") if "pskip" in row.row else (row.row.split("_lam")[0], "", "")
        assert cfg["task"]["name"] == "charades" and cfg["row"] == row.row
        assert (cfg["model"]["hidden_size"], cfg["model"]["num_layers"]) == (256, 2)  # paper §4.3
        assert cfg["model"]["mode"] == mode
        assert cfg["model"]["p_skip"] == (float(rest) if rest else 0.0)
        assert cfg["lam"] == (float(row.row.split("_lam")[1]) if "_lam" in row.row else 0.0)
        # the paper's FLOPs column is updates x (the 2-layer cell + W_p for Skip models + VGG-16 per frame)
        updates = float(row.paper["updates"].split("±")[0])
        printed = float(row.paper["flops"].split()[0])
        formula = updates * flops_per_update(mode, 4096, 256, 2, VGG16_FLOPS)
        assert math.isclose(formula, printed, rel_tol=0.01) != (row.row == "gru_pskip0.4")  # that one's a typo


def test_a_100_point_run_also_writes_the_25_point_file_the_official_script_scores(data, tmp_path):
    """The paper's 100 points per video, and the official evaluator's 25: it reads points 1-25 of a file, so a
    100-point file fed to it would be scored at the wrong times; the 25-point file scores as a 25-point evaluation."""
    from skiprnn.experiment.tasks.charades import metric

    task100 = CharadesTask(data_root=str(data), num_points=100, batch_size=4)
    task25 = CharadesTask(data_root=str(data), num_points=25, batch_size=4)
    model = tiny_model(task100)
    assert task100.write_outputs(model, tmp_path, "cpu") == ["submission_100pts.txt", "submission_25pts.txt"]
    for points, task in ((100, task100), (25, task25)):
        scored = metric.evaluate_submission(data / "Charades_v1_test.csv", tmp_path / f"submission_{points}pts.txt",
                                            points)
        assert scored.map_present == pytest.approx(task.evaluate(model, "val", 0, 0, "cpu")["val_map"], abs=1e-6)


def test_on_error_skip_keeps_a_bad_test_video_in_the_ground_truth_as_missing(tmp_path):
    """A test row with a bad action (class c157) is left out of the model's data under on_error=skip, but stays in
    the ground truth with its sound actions: its points score as missing, as the official evaluator scores them."""
    import csv

    root = tmp_path / "Charades"
    synth.generate(root, videos=12, seed=1, dim=DIM, min_length=3.0, max_length=6.0, active_classes=4,
                   classes_per_video="1-2", test_fraction=0.25, progress=False)
    path = root / "Charades_v1_test.csv"
    with open(path, newline="", encoding="ascii") as f:
        rows = list(csv.reader(f))
    actions = rows[0].index("actions")
    rows[1][actions] = (rows[1][actions] + ";" if rows[1][actions] else "") + "c157 0.00 1.00"
    with open(path, "w", newline="", encoding="ascii") as f:
        csv.writer(f, lineterminator="\r\n").writerows(rows)
    with pytest.raises(DataError, match="c157 out of range"):
        CharadesTask(data_root=str(root), num_points=25, batch_size=4)
    task = CharadesTask(data_root=str(root), num_points=25, batch_size=4, on_error="skip")
    kept = next(r for r in task.eval_records if r.id == rows[1][0])
    assert all(a.cls < 157 for a in kept.actions) and len(task.eval_records) == len(rows) - 1
    out = task.evaluate(tiny_model(task), "val", 0, 0, "cpu")
    assert out["val_videos"] == len(rows) - 2 and out["val_missing_points"] == 25  # its 25 points, unscored
