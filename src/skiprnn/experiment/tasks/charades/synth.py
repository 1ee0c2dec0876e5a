"""Synthetic Charades: videos written in exactly the official formats, with a learnable, temporally correlated signal.

Writes under ``root`` (the same layout the loader reads, see ``files.py``)::

    Charades_v1_train.csv, Charades_v1_test.csv     11 columns, CRLF, csv minimal quoting, ASCII
    Charades_v1_classes.txt                         157 lines "cNNN Name", LF
    Charades_v1_features_rgb/<ID>/<ID>-NNNNNN.txt   frames 1, 5, 9, ...; one line of ``dim`` values "%.6g"
    synth_params.json                               the generator's arguments and what it wrote

Videos. ``length = N / 24`` with 2 decimals for an integer 24 fps frame count N, and ``T = N // 4 + 1`` feature
files (charades.md §2.5). Each video has ``classes_per_video`` distinct classes drawn from ``active_classes``
classes (all 157 by default; fewer gives every class positives in a small set), one action each, sometimes a
second overlapping instance of the same class. Actions start at 0.00 or on the 0.5 s grid often, ends overshoot
``length`` by up to 1.5 s sometimes; the first train videos carry the official anomalies deterministically (an
action at 0.00, an overshoot, a repeated class, a ``start > end`` triplet, an empty ``actions`` field), and some
``script``/``descriptions`` fields contain commas (forcing quotes) and ``;``, some ``quality`` fields are empty.

Signal. Class c has a random unit direction ``u_c`` in R^dim. The feature at time ``t_i = i / 6`` is
``relu(offset + snr * sum_{c active at t_i} u_c + e_i)`` where ``e_i`` is AR(1) noise over time,
``e_i = ar * e_{i-1} + sqrt(1 - ar^2) * xi_i`` with ``xi_i ~ N(0, I)``; a class is active at t_i under the same
inclusive rule the loader uses for targets (``start <= t_i <= end``). So along ``u_c`` the per-frame signal-to-noise
ratio is ``snr`` whatever ``dim`` is; neighbouring frames are strongly correlated (``ar = 0.9`` at 6 fps), which
a skipping model can exploit; and a trained model beats chance. About 30% of values are exact zeros (post-ReLU).

Deterministic in ``seed``: annotations come from one random stream and each video's features from its own, so
``dim`` changes the features but not the annotations.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .files import (
    CLASSES_FILE,
    CSV_COLUMNS,
    FEATURE_DIM,
    FEATURE_STRIDE,
    NUM_CLASSES,
    RGB_FEATURES_DIR,
    SPLIT_CSV,
    frame_targets,
    frame_times,
    parse_actions,
)

_ID_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SCENES = ["Kitchen", "Bedroom", "Living room", "Bathroom", "Hallway", "Stairs", "Dining room", "Garage",
           "Laundry room", "Closet / Walk-in closet / Spear closet", "Pantry", "Basement (A room below the ground floor)",
           "Entryway (A hall that is generally located at the entrance of a house)", "Recreation room / Man cave",
           "Home Office / Study (A room in a house used for work)", "Other"]
_OBJECTS = ["food", "stove", "window", "blanket", "broom", "floor", "book", "box", "cabinet", "shelf", "cup",
            "door", "laptop", "pillow", "towel", "phone", "chair", "table", "bag", "mirror"]
_VERBS = ["holds", "opens", "closes", "tidies", "takes", "puts down", "looks at", "throws", "washes", "fixes"]


@dataclass
class SynthSummary:
    root: str
    train_ids: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)
    missing_features: list[str] = field(default_factory=list)   # ids in a CSV whose feature folder was not written
    active_classes: list[int] = field(default_factory=list)
    frames: int = 0
    params: dict = field(default_factory=dict)


def _parse_range(text: str | int | Sequence[int]) -> tuple[int, int]:
    if isinstance(text, int):
        return text, text
    if not isinstance(text, str):
        lo, hi = text
        return int(lo), int(hi)
    lo, _, hi = text.partition("-") if "-" in text else text.partition(":")
    lo, hi = int(lo), int(hi or lo)
    return lo, hi


def _fmt_time(x: float) -> str:
    return f"{x:.2f}"


def _time(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A time in [lo, hi]: on the 0.5 s grid with probability 0.44, else any 2-decimal value."""
    x = rng.uniform(lo, max(lo, hi))
    return round(x * 2) / 2 if rng.random() < 0.44 else round(x, 2)


def _make_actions(rng: np.random.Generator, length: float, classes: Sequence[int], *, force_zero: bool = False,
                  force_overshoot: bool = False, force_repeat: bool = False, force_reversed: bool = False) -> str:
    triplets = []
    for k, c in enumerate(classes):
        start = 0.0 if (rng.random() < 0.28 or (force_zero and k == 0)) else _time(rng, 0.0, 0.8 * length)
        dur = rng.uniform(2.0, max(3.0, 0.6 * length))
        end = _time(rng, start + 1.0, min(start + dur, length))
        if rng.random() < 0.3 or (force_overshoot and k == 0):
            end = round(length + rng.uniform(0.0, 1.5), 2)  # end > length, as in 29% of the official triplets
        triplets.append((c, start, max(end, start + 0.5)))
        if rng.random() < 0.1 or (force_repeat and k == 0):  # the same class again, overlapping
            s2 = _time(rng, start, min(end, length))
            triplets.append((c, s2, _time(rng, s2 + 0.5, min(s2 + 0.5 + dur, length))))
    if force_reversed and classes:  # start > end: never matches (7 such official train triplets)
        triplets.append((classes[-1], round(length + 9.04, 2), round(max(0.0, length - 2.0), 2)))
    order = rng.permutation(len(triplets))
    return ";".join(f"c{triplets[i][0]:03d} {_fmt_time(triplets[i][1])} {_fmt_time(triplets[i][2])}" for i in order)


def _row(rng: np.random.Generator, vid: str, actions: str, length: str) -> list[str]:
    objs = list(rng.choice(_OBJECTS, size=int(rng.integers(1, 4)), replace=False))
    v1, v2 = rng.choice(_VERBS, size=2, replace=False)
    if rng.random() < 0.4:
        script = f"A person {v1} the {objs[0]}, then {v2} it."
    else:
        script = f"A person {v1} a {objs[0]} and {v2} something."
    descriptions = f"Someone {v1} the {objs[-1]}, slowly.;The person {v2} it; then leaves." if rng.random() < 0.5 \
        else f"A person {v1} the {objs[-1]}."
    return [vid,
            "".join(rng.choice(list(_ID_CHARS), size=4)),
            str(rng.choice(_SCENES)),
            "" if rng.random() < 0.05 else str(int(rng.integers(1, 8))),
            "" if rng.random() < 0.05 else str(int(rng.integers(1, 8))),
            "Yes" if rng.random() < 0.95 else "No",
            script,
            "" if rng.random() < 0.05 else ";".join(objs),
            descriptions,
            actions,
            length]


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="ascii") as f:
        w = csv.writer(f, lineterminator="\r\n")  # QUOTE_MINIMAL: reproduces the official file byte for byte
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    os.replace(tmp, path)


def _write_features(folder: Path, vid: str, feats: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob(f"{vid}-*.txt"):  # overwrite mode: no stale frames from a longer earlier video
        p.unlink()
    for i, row in enumerate(feats):
        k = 1 + FEATURE_STRIDE * i
        with open(folder / f"{vid}-{k:06d}.txt", "w", encoding="ascii", newline="\n") as f:
            f.write(" ".join(map("{:.6g}".format, row.tolist())) + "\n")


def generate(root: str | os.PathLike, *, videos: int = 100, seed: int = 0, dim: int = FEATURE_DIM,
             classes_per_video: str | int | Sequence[int] = "1-4", active_classes: int = NUM_CLASSES,
             min_length: float = 8.0, max_length: float = 45.0, test_fraction: float = 0.2, snr: float = 3.0,
             ar: float = 0.9, offset: float = 0.5, missing_features: int = 0, overwrite: bool = False,
             progress: bool = True) -> SynthSummary:
    """Write ``videos`` synthetic videos under ``root`` in the official formats (see the module docstring).

    ``classes_per_video`` is ``"LO-HI"`` (or an int, or a pair): distinct classes per video, drawn uniformly.
    ``missing_features`` videos (in the test split first) get no feature folder, to exercise the loader's
    ``on_error``. Refuses to write into a root that already holds Charades files unless ``overwrite``.
    """
    root = Path(root)
    lo, hi = _parse_range(classes_per_video)
    if not (videos >= 1 and dim >= 1 and 1 <= active_classes <= NUM_CLASSES and 0 <= lo <= hi <= active_classes):
        raise ValueError("need videos >= 1, dim >= 1, 1 <= active_classes <= 157, 0 <= LO <= HI <= active_classes")
    if not (2.5 <= min_length <= max_length):
        raise ValueError("need 2.5 <= min_length <= max_length (seconds)")
    if not (0.0 <= test_fraction <= 1.0 and 0.0 <= ar < 1.0 and 0 <= missing_features <= videos):
        raise ValueError("need 0 <= test_fraction <= 1, 0 <= ar < 1, 0 <= missing_features <= videos")
    existing = [n for n in (*SPLIT_CSV.values(), CLASSES_FILE) if (root / n).exists()]
    if (root / RGB_FEATURES_DIR).is_dir() and any((root / RGB_FEATURES_DIR).iterdir()):
        existing.append(RGB_FEATURES_DIR)
    if existing and not overwrite:
        raise FileExistsError(f"{root} already holds {', '.join(existing)}; pass overwrite=True (--overwrite)")
    params = dict(videos=videos, seed=seed, dim=dim, classes_per_video=[lo, hi], active_classes=active_classes,
                  min_length=min_length, max_length=max_length, test_fraction=test_fraction, snr=snr, ar=ar,
                  offset=offset, missing_features=missing_features)

    ann_seq, feat_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(ann_seq)
    active = sorted(int(c) for c in rng.choice(NUM_CLASSES, size=active_classes, replace=False))
    ids: list[str] = []
    while len(ids) < videos:
        vid = "".join(rng.choice(list(_ID_CHARS), size=5))
        if vid not in ids:
            ids.append(vid)
    n_test = int(round(videos * test_fraction))
    n_train = videos - n_test
    missing = set((ids[n_train:][::-1] + ids[:n_train][::-1])[:missing_features])  # test first, from the end

    rows: list[list[str]] = []
    for v, vid in enumerate(ids):
        n_frames24 = max(56, int(round(24 * rng.uniform(min_length, max_length))))
        length = f"{n_frames24 / 24:.2f}"
        in_test = v >= n_train
        first = v - n_train if in_test else v
        if first == 2:
            actions = ""  # an empty actions field (174 train, 49 test videos officially)
        else:
            k = int(rng.integers(lo, hi + 1))
            classes = [int(c) for c in rng.choice(active, size=k, replace=False)]
            actions = _make_actions(rng, float(length), classes, force_zero=first == 0, force_overshoot=first == 0,
                                    force_repeat=first == 1, force_reversed=first == 1)
        rows.append(_row(rng, vid, actions, length) + [n_frames24])

    root.mkdir(parents=True, exist_ok=True)
    with open(root / CLASSES_FILE, "w", encoding="ascii", newline="\n") as f:
        for c in range(NUM_CLASSES):
            f.write(f"c{c:03d} Synthetic action {c:03d} with object/{_VERBS[c % len(_VERBS)]}\n")
    _write_csv(root / SPLIT_CSV["train"], [r[:-1] for r in rows[:n_train]])
    _write_csv(root / SPLIT_CSV["test"], [r[:-1] for r in rows[n_train:]])

    frng = np.random.default_rng(feat_seq)
    directions = frng.standard_normal((NUM_CLASSES, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    video_seqs = feat_seq.spawn(videos)
    summary = SynthSummary(str(root), ids[:n_train], ids[n_train:], sorted(missing), active, 0, params)
    for v, row in enumerate(tqdm(rows, desc="synthetic charades", unit="video", disable=not progress)):
        vid, actions, n_frames24 = row[0], row[9], row[-1]
        folder = root / RGB_FEATURES_DIR / vid
        if vid in missing:
            if folder.is_dir():
                for p in folder.glob(f"{vid}-*.txt"):
                    p.unlink()
                folder.rmdir()
            continue
        t = n_frames24 // FEATURE_STRIDE + 1
        times = frame_times(range(1, FEATURE_STRIDE * t, FEATURE_STRIDE))
        # labels exactly as the loader will parse and evaluate them (inclusive rule)
        active_at = frame_targets(parse_actions(actions), times).astype(np.float64)
        vrng = np.random.default_rng(video_seqs[v])
        xi = vrng.standard_normal((t, dim))
        noise = np.empty_like(xi)
        noise[0] = xi[0]
        scale = math.sqrt(1.0 - ar * ar)
        for i in range(1, t):
            noise[i] = ar * noise[i - 1] + scale * xi[i]
        feats = np.maximum(offset + snr * (active_at @ directions) + noise, 0.0)
        _write_features(folder, vid, feats)
        summary.frames += t
    with open(root / "synth_params.json", "w", encoding="utf-8") as f:
        json.dump(asdict(summary), f, indent=1)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m skiprnn.experiment.tasks.charades.synth",
                                description="Write a synthetic Charades dataset in the official file formats "
                                            "(CSVs, classes file, per-frame RGB feature text files).")
    p.add_argument("root", help="output folder (gets Charades_v1_*.csv, Charades_v1_classes.txt, "
                                "Charades_v1_features_rgb/)")
    p.add_argument("--videos", type=int, default=100, help="number of videos, train + test (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=FEATURE_DIM, help="values per feature file (default 4096; "
                                                                 "smaller only for tests)")
    p.add_argument("--classes-per-video", default="1-4", help="distinct classes per video, N or LO-HI (default 1-4)")
    p.add_argument("--active-classes", type=int, default=NUM_CLASSES,
                   help="draw actions from this many of the 157 classes (default all; fewer -> every class has "
                        "positives in a small set)")
    p.add_argument("--min-length", type=float, default=8.0, help="shortest video in seconds (default 8)")
    p.add_argument("--max-length", type=float, default=45.0, help="longest video in seconds (default 45)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="fraction of videos in the test CSV")
    p.add_argument("--snr", type=float, default=3.0, help="per-frame signal/noise along a class direction")
    p.add_argument("--ar", type=float, default=0.9, help="AR(1) coefficient of the noise between frames (6 fps)")
    p.add_argument("--offset", type=float, default=0.5, help="added before the ReLU (sets the share of zeros)")
    p.add_argument("--missing-features", type=int, default=0, help="videos left without a feature folder")
    p.add_argument("--overwrite", action="store_true", help="write into a root that already has Charades files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    s = generate(a.root, videos=a.videos, seed=a.seed, dim=a.dim, classes_per_video=a.classes_per_video,
                 active_classes=a.active_classes, min_length=a.min_length, max_length=a.max_length,
                 test_fraction=a.test_fraction, snr=a.snr, ar=a.ar, offset=a.offset,
                 missing_features=a.missing_features, overwrite=a.overwrite, progress=not a.quiet)
    print(f"wrote {len(s.train_ids)} train + {len(s.test_ids)} test videos, {s.frames} feature frames of "
          f"{a.dim} values under {s.root}" + (f"; no features for {', '.join(s.missing_features)}"
                                              if s.missing_features else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
