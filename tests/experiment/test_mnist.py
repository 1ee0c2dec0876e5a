"""Sequential MNIST without a network: tiny IDX files in torchvision's layout, written here.

Image i of the tiny training set has pixel (0, 0) = i (its identity) and one bright pixel (255) at a
known (row, col); test images are numbered from 100. Labels are i % 10.
"""
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from skiprnn.experiment.tasks.mnist import RAW_FILES, TABLE2, MnistDataError, MnistTask, to_sequence

ROOT = Path(__file__).resolve().parents[2]
REAL_DATA = ROOT.parent / "shared" / "data"
N_TRAIN, N_TEST = 60, 20


def bright(i):
    return 1 + i % 27, (5 * i) % 28  # never (0, 0), which holds the identity


def write_idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim  # unsigned byte data
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


def make_images(ids):
    images = np.zeros((len(ids), 28, 28), np.uint8)
    for k, i in enumerate(ids):
        images[k, 0, 0] = i
        images[k][bright(i)] = 255
    return images


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_ids, test_ids = np.arange(N_TRAIN), np.arange(100, 100 + N_TEST)
    write_idx(raw / "train-images-idx3-ubyte", make_images(train_ids))
    write_idx(raw / "train-labels-idx1-ubyte", train_ids % 10)
    write_idx(raw / "t10k-images-idx3-ubyte", make_images(test_ids))
    write_idx(raw / "t10k-labels-idx1-ubyte", test_ids % 10)
    return root


def ids_of(x):
    """The identity pixel (step 0) of each sequence in a (784, B, 1) batch."""
    return [round(v * 255) for v in x[0, :, 0].tolist()]


def test_split_scaling_and_row_major_order(tiny_root):
    task = MnistTask(data_root=str(tiny_root), download=False, validation_size=20, batch_size=8)
    assert (task.input_size, task.output_size, task.metric, task.has_test) == (1, 10, "accuracy", True)
    assert task.steps_per_epoch == 40 // 8
    val = list(task.eval_batches("val", 0, 0))
    test = list(task.eval_batches("test", 0, 0))
    x_val = torch.cat([x for x, _ in val], 1)
    assert ids_of(x_val) == list(range(20)), "the FIRST validation_size training images are the validation set"
    assert torch.cat([y for _, y in val]).tolist() == [i % 10 for i in range(20)]
    assert ids_of(torch.cat([x for x, _ in test], 1)) == list(range(100, 120))
    x, y = task.train_batch(0, 8, seed=0)
    assert x.shape == (784, 8, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0, "pixels are divided by 255"
    for b, i in enumerate(ids_of(x)):
        assert 20 <= i < 60 and y[b] == i % 10
        r, c = bright(i)
        assert x[28 * r + c, b, 0] == 1.0, "pixel (r, c) is step 28 r + c"
        assert x[:, b, 0].sum() == pytest.approx(1.0 + i / 255)  # nothing else is lit
    assert to_sequence(torch.arange(4, dtype=torch.uint8).reshape(1, 2, 2).repeat(1, 14, 14))[:4, 0, 0].mul(255).round().tolist() \
        == [0, 1, 0, 1]


def test_eval_keeps_the_last_partial_batch(tiny_root):
    task = MnistTask(data_root=str(tiny_root), download=False, validation_size=20, batch_size=8)
    assert [x.shape[1] for x, _ in task.eval_batches("test", 0, 0)] == [8, 8, 4]


def test_epochs_reshuffle_deterministically(tiny_root):
    task = MnistTask(data_root=str(tiny_root), download=False, validation_size=20, batch_size=8)
    other = MnistTask(data_root=str(tiny_root), download=False, validation_size=20, batch_size=8)

    def epoch(t, e, seed=0):
        return [i for s in range(5 * e, 5 * e + 5) for i in ids_of(t.train_batch(s, 8, seed)[0])]

    first, second = epoch(task, 0), epoch(task, 1)
    assert sorted(first) == sorted(second) == list(range(20, 60)), "each epoch sees every training image once"
    assert first != second, "reshuffled every epoch"
    assert epoch(other, 1) == second and epoch(other, 0) == first, "a pure function of (seed, step): resume-safe"
    assert ids_of(other.train_batch(7, 8, 0)[0]) == ids_of(task.train_batch(7, 8, 0)[0])
    assert epoch(task, 0, seed=1) != first
    limited = MnistTask(data_root=str(tiny_root), download=False, validation_size=20, batch_size=8, train_limit=16)
    assert limited.steps_per_epoch == 2 and sorted(epoch(limited, 0)[:16]) == list(range(20, 36))


def test_missing_or_corrupt_data_raises_a_clear_error(tmp_path, tiny_root):
    empty = tmp_path / "nowhere"
    with pytest.raises(MnistDataError) as info:
        MnistTask(data_root=str(empty), download=False)
    message = str(info.value)
    assert str((empty / "MNIST" / "raw").resolve()) in message
    assert all(name in message for name in RAW_FILES) and "SKIPRNN_DATA" in message

    broken = tmp_path / "broken"
    (broken / "MNIST" / "raw").mkdir(parents=True)
    for name in RAW_FILES:
        data = (tiny_root / "MNIST" / "raw" / name).read_bytes()
        (broken / "MNIST" / "raw" / name).write_bytes(data[:100] if name.startswith("train-images") else data)
    with pytest.raises(MnistDataError, match="train-images-idx3-ubyte is damaged: its header says 60 x 28 x 28") as info:
        MnistTask(data_root=str(broken), download=False)
    assert "train-images-idx3-ubyte" in str(info.value) and str(broken.resolve()) in str(info.value)


def test_loss_score_and_solved(tiny_root):
    task = MnistTask(data_root=str(tiny_root), download=False, validation_size=20, batch_size=8)
    logits, target = torch.eye(10)[[1, 2, 3, 4]] * 5, torch.tensor([1, 2, 3, 0])
    assert task.score(logits, target)["accuracy"] == 0.75
    assert task.loss(logits, target).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, target).item())
    assert task.solved({"accuracy": 0.91}) and not task.solved({"accuracy": 0.89})


def test_table2_sweep_composes_and_covers_every_row(compose_cfg):
    cfg = compose_cfg("table=table2")
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweep.dir == "results/table2"
    assert cfg.group == "table2" and cfg.threads == 1 and cfg.trainer.max_epochs == 600
    swept = cfg.hydra.sweeper.params.experiment.split(",")
    assert swept == [f"table2/{r.row}" for r in TABLE2.rows] and len(swept) == 6
    assert cfg.hydra.sweeper.params.seed == "0,1,2,3"
    expected = {"lstm": ("lstm", 0.0, 0.0), "lstm_pskip0.5": ("lstm", 0.5, 0.0), "skip_lstm_lam1e-4": ("skip_lstm", 0.0, 1e-4),
                "gru": ("gru", 0.0, 0.0), "gru_pskip0.5": ("gru", 0.5, 0.0), "skip_gru_lam1e-4": ("skip_gru", 0.0, 1e-4)}
    for row, (mode, p_skip, lam) in expected.items():
        job = compose_cfg(f"experiment=table2/{row}")
        plain = OmegaConf.to_container(OmegaConf.masked_copy(job, [k for k in job if k != "hydra"]), resolve=True,
                                       enum_to_str=True)
        assert (plain["row"], plain["model"]["mode"], plain["model"]["p_skip"], plain["lam"]) == (row, mode, p_skip, lam)
        assert plain["task"]["name"] == "mnist" and plain["task"]["validation_size"] == 5000
        assert plain["model"]["hidden_size"] == 110 and plain["trainer"]["batch_size"] == 256


def test_data_root_follows_the_environment(compose_cfg, monkeypatch):
    monkeypatch.setenv("SKIPRNN_DATA", "/somewhere/else")
    cfg = compose_cfg("task=mnist")
    assert cfg.task.data_root == "/somewhere/else"
    monkeypatch.delenv("SKIPRNN_DATA")
    assert compose_cfg("task=mnist").task.data_root == "data"


def test_tiny_training_run_and_figure(cli, tiny_root, tmp_path):
    from skiprnn.experiment.figures import mnist_pixels

    run = tmp_path / "run"
    cli("task=mnist", "model=skip_lstm", "lam=1e-4", f"task.data_root={tiny_root}", "task.download=false",
        "task.validation_size=20", "trainer.batch_size=8", "trainer.max_epochs=1", "model.hidden_size=8", "logger=none",
        "threads=1", "trainer.progress=false", f"hydra.run.dir={run}")
    metrics = json.loads((run / "metrics.json").read_text())
    final = metrics["final"]
    assert metrics["step"] == 5, "1 epoch = 40 training images // batch 8"
    for key in ("val_accuracy", "test_accuracy", "best_val_test_accuracy"):
        assert 0.0 <= final[key] <= 1.0
    assert 1 <= final["test_updates"] <= 784

    out = tmp_path / "figure.png"
    assert mnist_pixels.main([str(run), "--n", "4", "--out", str(out), "--data-root", str(tiny_root)]) in (0, None)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_update_rates_on_ink_and_blank_pixels():
    """The figure's statistic against a hand count: a model that updates on the first 14 rows only."""
    from skiprnn.experiment.figures import mnist_pixels as script

    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[:, 10, 5:9] = 255  # 4 ink pixels in the top half of each digit
    images[:, 20, 5:7] = 200  # 2 in the bottom half
    images[:, 21, 5] = 100  # neither ink (< 128) nor blank

    def top_half_model(x):
        updates = (torch.arange(784) < 14 * 28).float()[:, None].expand(784, x.shape[1])
        return None, updates

    rates = script.update_rates(top_half_model, images, chunk=2)
    assert rates["digits"] == 3
    assert rates["ink"] == pytest.approx(4 / 6)
    blank_top, blank_all = 14 * 28 - 4, 784 - 7
    assert rates["blank"] == pytest.approx(blank_top / blank_all)
    # The border frame outside the central 20x20 box: rows 0-3 whole, then 8 pixels in each of rows 4-13.
    assert rates["border"] == pytest.approx((4 * 28 + 10 * 8) / (784 - 20 * 20))


@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason="the real MNIST files are not on this machine")
def test_real_mnist_sizes():
    task = MnistTask(data_root=str(REAL_DATA), download=False)
    sizes = {split: (t[0].shape[0], t[1].shape[0]) for split, t in task.splits.items()}
    assert sizes == {"train": (55000, 55000), "val": (5000, 5000), "test": (10000, 10000)}
    assert task.steps_per_epoch == 214
    x, y = task.train_batch(0, 256, 0)
    assert x.shape == (784, 256, 1) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and set(y.tolist()) <= set(range(10))


def test_a_truncated_or_foreign_idx_file_is_named_with_what_is_wrong(tmp_path):
    from skiprnn.experiment.tasks.mnist import check_idx

    good = tmp_path / "images"
    good.write_bytes(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(2 * 784))
    check_idx(good)
    cut = tmp_path / "cut"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(MnistDataError, match=rf"{cut} is damaged: its header says 2 x 28 x 28 .* the file has 1574"):
        check_idx(cut)
    foreign = tmp_path / "foreign"
    foreign.write_text("<html>not found</html>")
    with pytest.raises(MnistDataError, match=rf"{foreign} is damaged: its header is not an IDX"):
        check_idx(foreign)
