"""What the shared trainer needs from a task."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table, declared once: its name, what the paper prints for it, and its config.

    The row is the Hydra experiment ``<table>/<row>`` (skiprnn.experiment.rows makes it from this declaration), its
    runs' folder ``results/<table>/<row>/`` and one point of the table's sweep.
    """

    row: str  # e.g. skip_lstm_lam1e-5
    label: str  # as printed in the paper
    paper: dict  # column -> printed value (strings, exactly as printed)
    model: str  # conf/model/<model>.yaml
    lam: float = 0.0
    p_skip: float = 0.0
    changes: dict = field(default_factory=dict)  # other keys, nested as in the config: {"trainer": {"max_steps": 30000}}


@dataclass(frozen=True)
class LongerBudget:
    """Rows of a table trained on past its budget, to show how far their numbers had settled: each run goes on from
    its finished run's checkpoint (``python -m skiprnn.longer``) in a folder of its own, so the table's own runs
    stay as they were trained. The table then adds a section beside them (skiprnn.experiment.tables)."""

    rows: tuple[str, ...]  # PaperRow.row names
    from_steps: int  # the rows' budget in the table
    max_steps: int  # how far they go on
    why: str  # one sentence for the table: what the longer budget asks

    def __post_init__(self):
        if not 0 < self.from_steps < self.max_steps:
            raise ValueError(f"LongerBudget: max_steps ({self.max_steps}) must exceed from_steps ({self.from_steps}), "
                             "and both be positive")

    def folder(self, table: str) -> str:
        """The runs' folder beside the table's: ``table1_100k`` (``table1_100500steps`` for an uneven budget)."""
        return f"{table}_{self.max_steps // 1000}k" if self.max_steps % 1000 == 0 else f"{table}_{self.max_steps}steps"


@dataclass(frozen=True)
class PaperTable:
    """A paper table to reproduce: its rows and which of our columns stand beside the paper's.

    ``columns`` are (our column key in skiprnn.tables.COLUMNS, paper key in PaperRow.paper or None, header).
    """

    name: str  # e.g. "table1": results/<name>/<row>/seed=<k>/ and results/<name>.md
    title: str
    caption: str  # the paper's caption
    task: str  # conf/task/<task>.yaml: the task every row trains on
    rows: tuple[PaperRow, ...]
    columns: tuple[tuple[str, str | None, str], ...]
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    changes: dict = field(default_factory=dict)  # config changes every row of the table shares (before its own)
    # Rows whose update counts the paper compares: (label, row, other row), e.g. one model at two sequence lengths.
    pairs: tuple[tuple[str, str, str], ...] = ()
    pairs_title: str = ""
    longer: LongerBudget | None = None

    def __post_init__(self):
        if self.longer is None:
            return
        names = [row.row for row in self.rows]
        unknown = [row for row in self.longer.rows if row not in names]
        if unknown:
            raise ValueError(f"{self.name}: longer.rows names no row of the table: {', '.join(unknown)} "
                             f"(the rows: {', '.join(names)})")
        ours = [column for column, _, _ in self.columns]
        if "update_pct" not in ours:  # the longer section compares update fractions with the paper's
            raise ValueError(f"{self.name}: a longer budget needs the column 'update_pct' (the table has "
                             f"{', '.join(ours)})")


class Batch(NamedTuple):
    """A batch of padded sequences: inputs (T, B, input_size), targets, and the lengths (B,) of the sequences
    (None: every sequence has all T steps). A task may return a plain ``(x, y)`` pair instead."""

    x: Tensor
    y: Tensor
    lengths: Tensor | None = None


def as_batch(batch: tuple) -> Batch:
    """A task's ``(x, y)`` or ``(x, y, lengths)`` as a :class:`Batch`."""
    return batch if isinstance(batch, Batch) else Batch(*batch)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator that is a pure function of (seed, step, stream): resumed runs see the same data."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 4 + stream)


class EpochOrder:
    """The order of a data set's ``n`` training examples in each epoch: a pure function of (seed, epoch), so that a
    resumed run sees the same batches. The latest epoch's order is kept."""

    def __init__(self, n: int, stream: int):
        self.n, self.stream = n, stream  # stream: step_generator's, apart from the task's other draws
        self._key, self._order = None, None

    def batch(self, step: int, batch_size: int, per_epoch: int, seed: int) -> Tensor:
        """Indices of the examples of global step ``step`` (0-based), ``per_epoch`` batches to an epoch."""
        epoch, within = divmod(step, per_epoch)
        if self._key != (seed, epoch):
            self._order = torch.randperm(self.n, generator=step_generator(seed, epoch, stream=self.stream))
            self._key = (seed, epoch)
        return self._order[within * batch_size:(within + 1) * batch_size]


class Task:
    """A supervised sequence task. Subclasses define the data, the loss and the metric.

    Batches are ``(x, y)`` or a :class:`Batch` with lengths; with lengths, the model masks the padding and the
    trainer calls ``loss(prediction, target, lengths)`` and counts only the real steps. A task may also define
    ``evaluate(model, split, evaluation, seed, device) -> dict`` (the keys of ``trainer.evaluate``: the
    ``<split>_<metric>`` scores and ``<split>_updates``, ``_updates_std``, ``_update_fraction``,
    ``_update_fraction_std``, optionally ``<split>_solved``) where its metric needs more than ``score`` over the
    concatenated predictions, e.g. per-video predictions at evaluation points.
    """

    name: str
    input_size: int
    output_size: int
    metric: str  # name of the headline metric, e.g. "mse" or "accuracy"
    higher_is_better: bool
    steps_per_epoch: int | None = None  # finite data sets only
    has_test = False  # a test split, scored at every evaluation beside validation
    readout = "last"  # the model's prediction: "last" (from the final state) or "every_step" (T, B, output_size)
    feature_flops = 0.0  # per-frame cost of the feature extractor, counted in the inference FLOPs (video tasks)

    def train_batch(self, step: int, batch_size: int, seed: int) -> tuple[Tensor, Tensor]:
        """Inputs (T, B, input_size) and targets for a training step; deterministic in (seed, step)."""
        raise NotImplementedError

    def eval_batches(self, split: str, evaluation: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Held-out batches for a split ("val" or "test"), for the evaluation-th evaluation."""
        raise NotImplementedError

    def eval_size(self, split: str) -> int:
        """How many sequences (videos) an evaluation of ``split`` scores: printed when a run starts and recorded."""
        raise NotImplementedError

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def score(self, prediction: Tensor, target: Tensor) -> dict[str, float]:
        """The task metrics over all of an evaluation's predictions."""
        raise NotImplementedError

    def write_outputs(self, model, run_dir: Path, device) -> list[str]:
        """Files a finished run leaves beside its record (Charades: the submission files); their names."""
        return []

    def solved(self, metrics: dict[str, float]) -> bool:
        raise NotImplementedError


class SyntheticTask(Task):
    """A task whose data is generated on the fly: ``generate(batch_size, generator)`` is all it defines.

    Training batches are a pure function of (seed, step); each evaluation draws fresh batches from a
    stream apart from training, as the original code did.
    """

    n_eval_batches: int
    batch_size: int

    def generate(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def train_batch(self, step, batch_size, seed):
        return self.generate(batch_size, step_generator(seed, step))

    def eval_size(self, split):
        return self.n_eval_batches * self.batch_size  # task.eval_batches fresh batches of trainer.batch_size

    def eval_batches(self, split, evaluation, seed):
        stream = 1 if split == "val" else 2
        for i in range(self.n_eval_batches):
            yield self.generate(self.batch_size, step_generator(seed, evaluation * 1000 + i, stream=stream))
