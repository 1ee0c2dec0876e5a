"""The official Charades localisation mAP (Charades_v1_localize.m) and its submission file."""
import math

import numpy as np
import pytest

from skiprnn.experiment.tasks.charades import files, metric, synth
from skiprnn.experiment.tasks.charades.files import Action, CharadesFormatError, VideoRecord


def video(vid, length, *actions):
    return VideoRecord(vid, length, tuple(Action(*a) for a in actions), 0, "")


def brute_force_ap(scores, labels):
    """AP from its definition, independently of sorting: item i's rank is the number of items with a higher
    score, plus the items with an equal score that come no later in the input (stable ties); precision at a
    positive = positives ranked at or before it / its rank; AP = mean over the positives."""
    key = [(math.isnan(x), 0.0 if math.isnan(x) else -x) for x in scores]  # NaN after everything (MATLAB)
    n = len(key)
    rank = [sum(1 for k in range(n) if key[k] < key[i] or (key[k] == key[i] and k <= i)) for i in range(n)]
    pos = [i for i in range(n) if labels[i]]
    if not pos:
        return math.nan
    return sum(sum(1 for q in pos if rank[q] <= rank[p]) / rank[p] for p in pos) / len(pos)


def test_evaluation_times_follow_the_official_operation_order():
    for f in (25, 100):
        for length in (24.83, 30.25, 18.33, 7.0):
            t = metric.evaluation_times(length, f)
            assert t.dtype == np.float64 and t.shape == (f,) and t[0] == 0.0 and t[-1] < length
            assert list(t) == [(j / f) * length for j in range(f)]  # divide first, then multiply
    # j*L/F differs in the last bit for some points: the order matters
    assert any((j / 25) * length != j * length / 25 for length in (24.83, 30.25, 18.33) for j in range(25))


def test_hand_computed_ap_and_ties():
    assert metric.average_precision([3, 2, 1], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    # all scores tied: the input (ground-truth row) order decides, no grouping of ties
    assert metric.average_precision([5, 5, 5, 5], [0, 1, 1, 0]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert metric.average_precision([5, 5, 5, 5], [1, 1, 0, 0]) == 1.0
    assert metric.average_precision([1, 7, 7, 0], [0, 0, 1, 1]) == pytest.approx((1 / 2 + 2 / 4) / 2)
    # -inf ranks after every finite score; NaN after -inf (MATLAB's sort puts NaN last)
    assert metric.average_precision([np.nan, -np.inf, -1e300], [1, 0, 0]) == pytest.approx(1 / 3)
    assert metric.average_precision([np.nan, -np.inf, -1e300], [0, 1, 0]) == pytest.approx(1 / 2)
    assert math.isnan(metric.average_precision([1, 2], [0, 0]))


def test_hand_computed_map_with_missing_predictions_and_an_empty_class():
    # F = 4, L = 4.0: points at t = 0, 1, 2, 3 (exact). 3 classes; class 2 has no positive.
    videos = [video("AAAAA", 4.0, (0, 1.0, 2.0)),                 # class 0 at t = 1, 2 (inclusive)
              video("BBBBB", 4.0, (0, 3.0, 9.0), (1, 0.0, 0.0)),  # class 0 at t = 3; class 1 at t = 0 only
              video("CCCCC", 4.0)]                                 # no actions: 4 negative rows, kept
    ids, labels = metric.ground_truth(videos, 4, num_classes=3)
    assert ids == ["AAAAA", "BBBBB", "CCCCC"] and labels.shape == (12, 3)
    assert list(np.flatnonzero(labels[:, 0])) == [1, 2, 7] and list(np.flatnonzero(labels[:, 1])) == [4]
    preds = {"AAAAA": np.array([[0.1, 0, 0], [0.9, 0, 0], [0.2, 0, 0], [0.8, 0, 0]]),
             "CCCCC": np.full((4, 3), 0.5) * [1, 0, 0], "ZZZZZ": np.ones((4, 3))}  # BBBBB missing; ZZZZZ ignored
    res = metric.evaluate(videos, preds, 4, num_classes=3)
    # class 0 ranking: A2+ A4 C1 C2 C3 C4 A3+ A1 | B1 B2 B3 B4+ (missing = -inf, last, in row order)
    ap0 = (1 / 1 + 2 / 7 + 3 / 12) / 3
    # class 1: 8 tied finite zeros, then B1+ at rank 9
    ap1 = 1 / 9
    assert res.ap[0] == pytest.approx(ap0) and res.ap[1] == pytest.approx(ap1) and math.isnan(res.ap[2])
    assert list(res.npos) == [3, 1, 0] and res.missing == 4 and res.num_frames == 12
    assert math.isnan(res.map) and math.isnan(res.wap)         # official: a class without positives -> NaN
    assert res.map_present == pytest.approx((ap0 + ap1) / 2)   # the separately named variant
    assert list(res.classes_without_positives) == [2]
    res2 = metric.evaluate(videos, {k: v[:, :2] for k, v in preds.items()}, 4, num_classes=2)
    assert res2.map == pytest.approx((ap0 + ap1) / 2) and res2.wap == pytest.approx((3 * ap0 + ap1) / 4)
    # a NaN row counts as a missing prediction
    part = dict(preds, BBBBB=np.full((4, 3), np.nan))
    assert metric.evaluate(videos, part, 4, num_classes=3).missing == 4


@pytest.mark.parametrize("f,expected", [(25, list(range(12, 22))), (100, list(range(48, 86)))])
def test_points_for_25_and_100(f, expected):
    # the first official row: 46GP8, length 24.83, c092 11.90 21.20 -> t_j = (j-1)/F * 24.83
    (v,) = [video("46GP8", 24.83, (92, 11.90, 21.20), (147, 0.00, 12.60))]
    _, labels = metric.ground_truth([v], f)
    assert labels.shape == (f, 157) and list(np.flatnonzero(labels[:, 92])) == expected  # 0-based j-1
    assert labels[0, 147] and labels.sum(axis=1).max() == 2
    oracle = metric.evaluate([v], {"46GP8": labels.astype(float)}, f)
    assert oracle.map_present == 1.0 and list(oracle.classes_without_positives) != []


def test_inclusive_edges_at_exact_points():
    v = video("AAAAA", 2.0, (0, 0.5, 1.0), (1, 1.5, 1.5))  # points 0, 0.5, 1.0, 1.5
    _, labels = metric.ground_truth([v], 4, num_classes=2)
    assert labels[:, 0].tolist() == [False, True, True, False] and labels[:, 1].tolist() == [0, 0, 0, 1]


def test_against_brute_force_ap():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 4, n).astype(float)  # many ties
        scores[rng.random(n) < 0.2] = -np.inf
        scores[rng.random(n) < 0.05] = np.nan
        if trial % 3 == 0:
            scores = rng.normal(size=n)
        labels = rng.random(n) < 0.3
        ours, ref = metric.average_precision(scores, labels), brute_force_ap(scores, labels)
        assert (math.isnan(ours) and math.isnan(ref)) or ours == pytest.approx(ref, abs=1e-12)
    s = rng.integers(0, 3, (50, 6)).astype(float)
    y = rng.random((50, 6)) < 0.25
    y[:, 5] = False
    res = metric.localization_map(s, y)
    ref = [brute_force_ap(s[:, c], y[:, c]) for c in range(6)]
    np.testing.assert_allclose(res.ap, ref, rtol=0, atol=1e-12)
    assert math.isnan(res.map) and res.map_present == pytest.approx(np.mean(ref[:5]))


def test_submission_round_trip_and_official_file_rules(tmp_path):
    root = tmp_path / "data"
    synth.generate(root, videos=6, seed=1, dim=4, min_length=3.0, max_length=8.0, test_fraction=0.5,
                   active_classes=5, progress=False)
    csv_path = root / "Charades_v1_test.csv"
    videos, _ = files.read_video_csv(csv_path)
    rng = np.random.default_rng(0)
    for f in (25, 100):
        preds = {v.id: rng.random((f, 157)).astype(np.float32) for v in videos[1:]}  # first video missing
        preds[videos[1].id][:, :3] = 0.5  # ties
        sub = tmp_path / f"sub{f}.txt"
        assert metric.write_submission(sub, preds) == f * (len(videos) - 1)
        lines = sub.read_text().split("\n")
        assert lines[-1] == "" and lines[0].startswith(f"{videos[1].id} 1 ") and len(lines[0].split(" ")) == 159
        assert lines[f - 1].startswith(f"{videos[1].id} {f} ")
        read = metric.read_submission(sub)
        assert len(read) == f * (len(videos) - 1)
        # "%.9g" round-trips float32 exactly, so the file ranks (and ties) exactly as the in-memory scores
        np.testing.assert_array_equal(read[metric.frame_key(videos[1].id, 1)].astype(np.float32),
                                      preds[videos[1].id][0])
        from_file = metric.evaluate_submission(csv_path, sub, f)
        in_memory = metric.evaluate(videos, preds, f)
        np.testing.assert_array_equal(from_file.ap, in_memory.ap)
        assert from_file.missing == in_memory.missing == f
    # 0-based frame numbers are shifted when the smallest is 0
    zero = tmp_path / "zero.txt"
    zero.write_text("".join(f"{videos[0].id} {j} " + " ".join(["1"] * 157) + "\n" for j in range(25)))
    keys = metric.read_submission(zero)
    assert metric.frame_key(videos[0].id, 1) in keys and metric.frame_key(videos[0].id, 25) in keys
    dup = tmp_path / "dup.txt"
    dup.write_text(zero.read_text() + f"{videos[0].id} 3 " + " ".join(["1"] * 157) + "\n")
    with pytest.raises(CharadesFormatError, match=r"dup\.txt, line 26: duplicate"):
        metric.read_submission(dup)
    short = tmp_path / "short.txt"
    short.write_text("AAAAA 1 " + " ".join(["1"] * 156) + "\n")
    with pytest.raises(CharadesFormatError, match=r"line 1: 156 scores, expected 157"):
        metric.read_submission(short)


def test_oracle_on_synthetic_csv_and_empty_videos_are_kept(tmp_path):
    synth.generate(tmp_path, videos=8, seed=2, dim=4, min_length=3.0, max_length=6.0, test_fraction=0.0,
                   active_classes=3, classes_per_video="1-3", progress=False)
    videos, _ = files.read_video_csv(tmp_path / "Charades_v1_train.csv")
    assert any(v.actions == () for v in videos)
    ids, labels = metric.ground_truth(videos, 25)
    assert labels.shape == (25 * len(videos), 157)
    res = metric.evaluate(videos, {v: labels[i * 25:(i + 1) * 25] * 1.0 for i, v in enumerate(ids)}, 25)
    assert res.map_present == 1.0 and math.isnan(res.map) and (res.npos > 0).sum() <= 3


def test_scores_at_times_mapping():
    scores = np.arange(10)[:, None] * np.ones((1, 2))  # feature i scores i; T = 10 (t = 0 .. 1.5 s)
    # L = 1.5, F = 4: t = 0, 0.375, 0.75, 1.125 -> 6t = 0, 2.25, 4.5, 6.75
    assert metric.scores_at_times(scores, 1.5, 4)[:, 0].tolist() == [0, 2, 4, 6]
    assert metric.scores_at_times(scores, 1.5, 4, mode="nearest")[:, 0].tolist() == [0, 2, 5, 7]
    # exact grid points (L = 2.0: t = 0, 0.5, 1.0, 1.5 -> features 0, 3, 6, 9), clamped to the last feature
    assert metric.feature_indices(metric.evaluation_times(2.0, 4), 10).tolist() == [0, 3, 6, 9]
    assert metric.feature_indices(metric.evaluation_times(2.0, 4), 5).tolist() == [0, 3, 4, 4]
    # a point that float error puts a hair below a grid time still maps to that feature
    assert metric.feature_indices(np.array([0.5 - 1e-12]), 10).tolist() == [3]
    assert metric.scores_at_times(np.zeros((172, 157)), 28.71, 100).shape == (100, 157)
