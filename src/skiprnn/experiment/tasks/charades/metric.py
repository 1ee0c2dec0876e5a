"""The official Charades localisation metric (``Charades_v1_localize.m``) in numpy, and the submission file.

Rules (``shared/reference/charades.md`` §3), all kept exactly:

* Each video of the ground-truth CSV, **in file order and including videos with no actions**, is evaluated at
  ``F`` time points ``t_j = ((j - 1) / F) * L`` for ``j = 1..F`` (``L`` = the CSV ``length``; divide first,
  then multiply, in float64). ``F = 25`` is official; the Skip RNN paper uses ``F = 100``.
* Frame j's ground truth is every class with an action ``start <= t_j <= end`` (inclusive; raw intervals, no
  clipping, OR over repeats).
* Scores of (video, j) pairs without a prediction are ``-inf``: they rank after every finite score.
* Per class, all frames of all videos form one ranking, sorted by descending score with a **stable** sort (ties
  keep ground-truth row order). AP is non-interpolated: the mean of precision@k over the ranks k of the positives
  (THUMOS'15 ``THUMOSeventclspr``), no grouping of ties.
* mAP is the plain mean of the 157 APs. A class with no positive frame has AP = 0/0 = NaN, so the official mAP is
  NaN then (the official script has no special case). :attr:`LocalizationResult.map_present` is the separately
  named mean over the classes that have positives, for small synthetic sets. wAP = sum(AP * npos) / sum(npos).

Submission file (``Charades_v1_localize.m`` l.30-62): one line per (video, evaluation point)
``<ID> <j> <s_0> ... <s_156>`` with j = 1..F, whitespace-separated. The official MATLAB script hard-codes F = 25
(and cannot go beyond 50); :func:`evaluate_submission` here takes any F.

Mapping a model's per-feature outputs to the F points (:func:`scores_at_times`): by default **causal**, the latest
feature at or before ``t_j``: ``i_j = min(T - 1, floor(6 * t_j + 1e-9))`` (feature i is at ``i / 6`` s; the
``1e-9`` absorbs float error at exact grid points), which suits an online RNN. ``"nearest"`` uses
``min(T - 1, round(6 * t_j))`` instead.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ... import tracking
from .files import FEATURE_FPS, NUM_CLASSES, CharadesFormatError, VideoRecord, read_video_csv

OFFICIAL_POINTS = 25
PAPER_POINTS = 100


def evaluation_times(length: float, num_points: int = OFFICIAL_POINTS) -> np.ndarray:
    """The F evaluation times of a video of ``length`` seconds: ``((j - 1) / F) * L`` for j = 1..F, float64."""
    return (np.arange(num_points, dtype=np.float64) / num_points) * np.float64(length)


def frame_key(video_id: str, j: int) -> str:
    """The official key of evaluation point j (1-based): ``"<ID>-%03d"``."""
    return f"{video_id}-{j:03d}"


def ground_truth(videos: Iterable[VideoRecord], num_points: int = OFFICIAL_POINTS,
                 num_classes: int = NUM_CLASSES) -> tuple[list[str], np.ndarray]:
    """Evaluation-point ids (``len(videos) * F``, video-major) and bool labels ``(len(videos) * F, num_classes)``.

    ``videos`` are CSV rows in file order (anything with ``.id``, ``.length`` and ``.actions`` of
    ``(cls, start, end)``); videos without actions contribute all-negative rows.
    """
    videos = list(videos)
    labels = np.zeros((len(videos) * num_points, num_classes), dtype=bool)
    ids = []
    for v, video in enumerate(videos):
        t = evaluation_times(video.length, num_points)
        rows = labels[v * num_points:(v + 1) * num_points]
        for cls, start, end in video.actions:
            rows[(start <= t) & (t <= end), cls] = True  # inclusive at both ends
        ids.append(video.id)
    return ids, labels


def assemble_scores(video_ids: Sequence[str], predictions: Mapping[str, np.ndarray], num_points: int,
                    num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, int]:
    """The score matrix ``(len(video_ids) * F, num_classes)`` float64, -inf where a prediction is missing, and
    the number of missing evaluation points. ``predictions[id]`` is ``(F, num_classes)``; a row of NaN counts
    as missing (so a partly filled video can be passed). Ids not in ``video_ids`` are ignored, as officially."""
    scores = np.full((len(video_ids) * num_points, num_classes), -np.inf, dtype=np.float64)
    missing = 0
    for v, vid in enumerate(video_ids):
        p = predictions.get(vid)
        if p is None:
            missing += num_points
            continue
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (num_points, num_classes):
            raise ValueError(f"predictions for {vid}: shape {p.shape}, expected ({num_points}, {num_classes})")
        absent = np.isnan(p).all(axis=1)
        missing += int(absent.sum())
        block = scores[v * num_points:(v + 1) * num_points]
        block[~absent] = p[~absent]
    return scores, missing


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Official (THUMOS'15) non-interpolated AP of one class: stable descending sort, mean precision@k over the
    positives; ties keep the input order; -inf ranks after all finite scores and NaN after -inf;
    NaN when there is no positive."""
    conf = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels).astype(bool)
    order = np.argsort(-conf, kind="stable")  # numpy, like MATLAB's sort, puts NaN after +inf (i.e. last)
    hit = lab[order]
    npos = int(hit.sum())
    if npos == 0:
        return math.nan
    cum_tp = np.cumsum(hit)
    prec = cum_tp / np.arange(1, hit.size + 1)
    return float(prec[hit].sum() / npos)


@dataclass(frozen=True)
class LocalizationResult:
    """Per-class APs and positives, and the summaries. ``map`` is the official mAP (NaN if a class has no
    positive); ``map_present`` averages only classes with positives; ``wap`` is the positive-weighted AP
    (NaN too when a class has no positive, as officially: NaN * 0 = NaN). ``missing``: evaluation points
    without a prediction (scored -inf)."""
    ap: np.ndarray
    npos: np.ndarray
    map: float
    map_present: float
    wap: float
    num_points: int
    num_frames: int
    missing: int

    @property
    def classes_without_positives(self) -> np.ndarray:
        return np.flatnonzero(self.npos == 0)


def localization_map(scores: np.ndarray, labels: np.ndarray, *, num_points: int = OFFICIAL_POINTS,
                     missing: int = 0) -> LocalizationResult:
    """AP per class over the rows of ``scores``/``labels`` ``(N, C)``, then mAP, its NaN-excluding variant, wAP."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ")
    ap = np.array([average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1])])
    npos = labels.sum(axis=0).astype(np.int64)
    present = npos > 0
    m = float(np.mean(ap))
    mp = float(np.mean(ap[present])) if present.any() else math.nan
    wap = float(np.sum(ap * npos) / np.sum(npos)) if npos.sum() else math.nan
    return LocalizationResult(ap, npos, m, mp, wap, num_points, scores.shape[0], missing)


def evaluate(videos: Iterable[VideoRecord], predictions: Mapping[str, np.ndarray],
             num_points: int = OFFICIAL_POINTS, num_classes: int = NUM_CLASSES) -> LocalizationResult:
    """The official metric from in-memory predictions: ``predictions[id]`` is ``(F, num_classes)`` scores at the
    F evaluation points of that video (see :func:`scores_at_times`); missing videos score -inf."""
    ids, labels = ground_truth(videos, num_points, num_classes)
    scores, missing = assemble_scores(ids, predictions, num_points, num_classes)
    return localization_map(scores, labels, num_points=num_points, missing=missing)


# ---------------------------------------------------------------------------------------------- submission files

def read_submission(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> dict[str, np.ndarray]:
    """Read a submission file into ``{"<ID>-%03d": scores}``. Lines are ``ID j s_0 .. s_{C-1}`` separated by
    whitespace or commas; if the smallest j is 0 every j is shifted by 1 (as the official script does).
    Duplicate (ID, j) pairs and lines with a wrong score count are errors (file and line)."""
    path = Path(path)
    rows = []
    with open(path, encoding="ascii") as f:
        for n, raw in enumerate(f, start=1):
            parts = raw.split(None, 2)  # textread('%s%d%[^\n]'): id, frame number, the rest
            if not parts:
                continue
            values = parts[2].replace(",", " ").split() if len(parts) == 3 else []
            if len(values) != num_classes:
                raise CharadesFormatError(f"{len(values)} scores, expected {num_classes}", path, n)
            try:
                j = int(parts[1])
                scores = np.array(values, dtype=np.float64)
            except ValueError as e:
                raise CharadesFormatError(f"malformed line: {e}", path, n) from None
            rows.append((parts[0], j, scores, n))
    shift = 1 if rows and min(r[1] for r in rows) == 0 else 0
    out: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    for vid, j, scores, n in rows:
        key = frame_key(vid, j + shift)
        if key in out:
            raise CharadesFormatError(f"duplicate prediction for {vid} frame {j} (first on line {first_line[key]})",
                                      path, n)
        out[key] = scores
        first_line[key] = n
    return out


def write_submission(path: str | os.PathLike, predictions: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
                     *, fmt: str = "%.9g") -> int:
    """Write the official localisation submission: for each video (in the given order) and j = 1..F, the line
    ``<ID> <j> <s_0> ... <s_156>`` with single spaces and ``\\n``. ``predictions`` maps id -> ``(F, 157)`` scores
    at the evaluation points (:func:`scores_at_times`). ``%.9g`` round-trips float32 scores exactly, so the
    ranking (ties included) is the one of the in-memory float32 scores; pass ``fmt="%.17g"`` for float64 scores.
    Returns the number of lines written."""
    items = predictions.items() if isinstance(predictions, Mapping) else predictions
    lines = 0

    def write(f) -> None:
        nonlocal lines
        for vid, scores in items:
            scores = np.asarray(scores)
            if scores.ndim != 2:
                raise ValueError(f"predictions for {vid}: shape {scores.shape}, expected (F, num_classes)")
            for j, row in enumerate(scores, start=1):
                f.write(f"{vid} {j} " + " ".join(fmt % float(s) for s in row) + "\n")
                lines += 1

    tracking.atomic_write(Path(path), write)
    return lines


def evaluate_submission(csv_path: str | os.PathLike, submission_path: str | os.PathLike,
                        num_points: int = OFFICIAL_POINTS, num_classes: int = NUM_CLASSES) -> LocalizationResult:
    """``Charades_v1_localize.m`` in Python: ground truth from the CSV (every row, file order), the submission
    file, F points per video (25 official; any F here)."""
    videos, _ = read_video_csv(csv_path, num_classes, on_error="raise")
    ids, labels = ground_truth(videos, num_points, num_classes)
    preds = read_submission(submission_path, num_classes)
    scores = np.full(labels.shape, -np.inf, dtype=np.float64)
    missing = 0
    for v, vid in enumerate(ids):
        for j in range(num_points):
            p = preds.get(frame_key(vid, j + 1))
            if p is None:
                missing += 1
            else:
                scores[v * num_points + j] = p
    return localization_map(scores, labels, num_points=num_points, missing=missing)


# ------------------------------------------------------------------------------------ feature steps -> points

def feature_indices(times: np.ndarray, num_features: int, mode: Literal["causal", "nearest"] = "causal",
                    fps: float = FEATURE_FPS) -> np.ndarray:
    """The feature index used for each time: causal ``min(T-1, floor(6 t + 1e-9))`` (latest feature at or before
    t) or nearest ``min(T-1, round(6 t))``. Feature i is at ``i / fps`` seconds."""
    if num_features < 1:
        raise ValueError("num_features must be >= 1")
    pos = np.asarray(times, dtype=np.float64) * fps
    if mode == "causal":
        idx = np.floor(pos + 1e-9)
    elif mode == "nearest":
        idx = np.floor(pos + 0.5)
    else:
        raise ValueError(f"mode must be 'causal' or 'nearest', got {mode!r}")
    return np.clip(idx.astype(np.int64), 0, num_features - 1)


def scores_at_times(frame_scores: np.ndarray, length: float, num_points: int = OFFICIAL_POINTS,
                    mode: Literal["causal", "nearest"] = "causal", fps: float = FEATURE_FPS) -> np.ndarray:
    """Per-feature scores ``(T, C)`` of one video -> scores ``(F, C)`` at its F evaluation times
    (:func:`evaluation_times`), picking one feature per point with :func:`feature_indices`."""
    frame_scores = np.asarray(frame_scores)
    idx = feature_indices(evaluation_times(length, num_points), frame_scores.shape[0], mode, fps)
    return frame_scores[idx]
