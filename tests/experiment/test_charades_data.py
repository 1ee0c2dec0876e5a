"""Charades data layer: official-format parsing, per-frame targets, errors, the float16 cache, the generator."""
import csv
import io
import json

import numpy as np
import pytest

from skiprnn.experiment.tasks.charades import cache, files, metric, synth
from skiprnn.experiment.tasks.charades.files import Action, CharadesFormatError

DIM = 16


def write_dataset(root, videos, dim=DIM, seed=0):
    """Write a hand-made dataset: videos = [(id, actions, length, T or None)]; T=None -> no feature folder."""
    rng = np.random.default_rng(seed)
    rows = []
    feats = {}
    for vid, actions, length, t in videos:
        rows.append([vid, "AB12", "Kitchen", "6", "", "Yes", "A person, a script.", "cup;door",
                     "One; two, three", actions, length])
        if t is None:
            continue
        folder = root / files.RGB_FEATURES_DIR / vid
        folder.mkdir(parents=True)
        x = np.maximum(rng.normal(0.2, 1.0, (t, dim)), 0) * 10 ** rng.uniform(-3, 2, (t, dim))
        for i, row in enumerate(x):
            (folder / f"{vid}-{1 + 4 * i:06d}.txt").write_text(" ".join(f"{v:.6g}" for v in row))
        feats[vid] = np.array([[float(f"{v:.6g}") for v in row] for row in x], dtype=np.float32)
    with open(root / "Charades_v1_train.csv", "w", newline="", encoding="ascii") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(files.CSV_COLUMNS)
        w.writerows(rows)
    return feats


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synth.generate(root, videos=8, seed=3, dim=DIM, min_length=3.0, max_length=9.0, active_classes=4,
                   classes_per_video="1-3", progress=False)
    return root


# ------------------------------------------------------------------------------------------------ formats

def test_synthetic_files_are_in_the_official_format(synth_root):
    raw = (synth_root / "Charades_v1_train.csv").read_bytes()
    raw.decode("ascii")
    lines = raw.split(b"\r\n")
    assert lines[0] == b"id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"
    assert lines[-1] == b"" and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF everywhere, final CRLF
    assert b'"' in raw and b",," in raw  # minimal quoting happened; an empty field (actions/quality) exists
    # csv.writer(QUOTE_MINIMAL, CRLF) reproduces the file byte for byte
    with open(synth_root / "Charades_v1_train.csv", newline="") as f:
        rows = list(csv.reader(f))
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    assert buf.getvalue().encode("ascii") == raw
    classes = (synth_root / "Charades_v1_classes.txt").read_bytes()
    assert b"\r" not in classes and classes.endswith(b"\n") and classes.count(b"\n") == 157
    names = files.read_classes(synth_root / "Charades_v1_classes.txt")
    assert len(names) == 157 and names[0].startswith("Synthetic action 000")
    recs, skipped = files.read_video_csv(synth_root / "Charades_v1_train.csv")
    assert not skipped and any(r.actions == () for r in recs)
    assert len(recs[0].fields) == 11 and recs[0].fields["actions"] == ";".join(
        f"c{a.cls:03d} {a.start:.2f} {a.end:.2f}" for a in recs[0].actions)
    assert any(a.end > r.length for r in recs for a in r.actions)      # overshoot kept, not clipped
    assert any(a.start > a.end for r in recs for a in r.actions)       # reversed triplet kept
    assert any(a.start == 0.0 for r in recs for a in r.actions)
    one = next(p for p in (synth_root / files.RGB_FEATURES_DIR).rglob("*.txt"))
    text = one.read_text()
    assert text.endswith("\n") and text.count("\n") == 1 and "  " not in text and len(text.split(" ")) == DIM


def test_frames_times_and_counts(synth_root):
    index = files.index_split(synth_root, "train")
    assert [v.id for v in index.videos] == [r.id for r in files.read_video_csv(
        synth_root / "Charades_v1_train.csv")[0]]
    for entry in index.videos:
        t = entry.num_frames
        assert entry.frames.frame_numbers == tuple(range(1, 4 * t, 4))
        np.testing.assert_array_equal(entry.frames.times, np.arange(t) / 6.0)  # (k-1)/24 == i/6 exactly
        assert t == round(24 * entry.record.length) // 4 + 1
        feats, times, y = files.load_video(entry, dim=DIM)
        assert feats.shape == (t, DIM) and feats.dtype == np.float32 and y.shape == (t, 157)
        assert (feats >= 0).all() and (feats == 0).any()


def test_labels_at_interval_edges(tmp_path):
    # length 1.50 s -> N = 36 frames at 24 fps -> T = 10 features at t = 0, 1/6, ..., 1.5
    acts = "c001 0.00 0.50;c002 0.50 1.00;c003 1.00 0.50;c001 0.33 0.40;c004 1.20 9.99"
    write_dataset(tmp_path, [("AAAAA", acts, "1.50", 10), ("BBBBB", "", "2.00", 13)])
    a, b = files.index_split(tmp_path, "train").videos
    _, times, y = files.load_video(a, dim=DIM)
    assert times[3] == 0.5 and times[6] == 1.0
    col = lambda c: list(np.flatnonzero(y[:, c]))  # noqa: E731
    assert col(1) == [0, 1, 2, 3]          # inclusive: t = 0 and t = 0.5 both labelled; the repeat is an OR
    assert col(2) == [3, 4, 5, 6]          # both edges 0.5 and 1.0 labelled
    assert col(3) == []                    # start > end never matches
    assert col(4) == [8, 9]                # end beyond the video: not clipped
    assert y.max() == 1 and y.sum() == 10
    strict = files.frame_targets(a.record.actions, times, inclusive=False)
    assert list(np.flatnonzero(strict[:, 1])) == [1, 2] and list(np.flatnonzero(strict[:, 2])) == [4, 5]
    _, _, yb = files.load_video(b, dim=DIM)  # empty actions: kept, all negative
    assert b.record.actions == () and yb.shape == (13, 157) and yb.sum() == 0


def test_columns_are_looked_up_by_name(tmp_path):
    write_dataset(tmp_path, [("AAAAA", "c092 11.90 21.20;c147 0.00 12.60", "24.83", 3)])
    path = tmp_path / "Charades_v1_train.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    order = list(reversed(range(11)))
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows([[r[i] for i in order] for r in rows])
    (rec,), _ = files.read_video_csv(path)
    assert rec.id == "AAAAA" and rec.length == 24.83 and rec.line == 2
    assert rec.actions == (Action(92, 11.9, 21.2), Action(147, 0.0, 12.6))


# --------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("bad", ["c092 11.90", "c92 1.00 2.00", "c157 0.00 1.00", "c001 a 2.00",
                                 "c001 1.00 2.00;", "c001  1.00 2.00", "x001 1.00 2.00", "c001 1.00 nan"])
def test_malformed_actions_field(tmp_path, bad):
    write_dataset(tmp_path, [("AAAAA", "c001 0.00 1.00", "3.00", 4), ("BBBBB", bad, "3.00", 4),
                             ("CCCCC", "", "3.00", 4)])
    path = tmp_path / "Charades_v1_train.csv"
    with pytest.raises(CharadesFormatError) as e:
        files.read_video_csv(path)
    assert str(path) in str(e.value) and "line 3" in str(e.value) and e.value.line == 3
    recs, skipped = files.read_video_csv(path, on_error="skip")
    assert [r.id for r in recs] == ["AAAAA", "CCCCC"]
    assert [(s.id, s.line) for s in skipped] == [("BBBBB", 3)] and s_path(skipped[0]) == str(path)
    index = files.index_split(tmp_path, "train", on_error="skip")
    assert [v.id for v in index.videos] == ["AAAAA", "CCCCC"] and [s.id for s in index.skipped] == ["BBBBB"]


def s_path(s):
    return s.path


def test_other_csv_errors(tmp_path):
    write_dataset(tmp_path, [("AAAAA", "", "3.00", 4), ("AAAAA", "", "3.00", None)])
    with pytest.raises(CharadesFormatError, match="line 3.*duplicate id"):
        files.read_video_csv(tmp_path / "Charades_v1_train.csv")
    (tmp_path / "x.csv").write_text("id,actions\r\nA,\r\n")
    with pytest.raises(CharadesFormatError, match=r"x\.csv, line 1: header lacks column"):
        files.read_video_csv(tmp_path / "x.csv")
    (tmp_path / "y.csv").write_text("id,actions,length\r\nA,,abc\r\n")
    with pytest.raises(CharadesFormatError, match=r"line 2: malformed length"):
        files.read_video_csv(tmp_path / "y.csv")


def test_missing_empty_and_gappy_folders(tmp_path):
    write_dataset(tmp_path, [("AAAAA", "", "3.00", 4), ("MISSN", "", "3.00", None), ("EMPTY", "", "3.00", None),
                             ("GAPPY", "", "3.00", 4)])
    (tmp_path / files.RGB_FEATURES_DIR / "EMPTY").mkdir()
    (tmp_path / files.RGB_FEATURES_DIR / "GAPPY" / "GAPPY-000005.txt").unlink()
    with pytest.raises(CharadesFormatError) as e:
        files.index_split(tmp_path, "train")
    assert "MISSN" in str(e.value) and "missing" in str(e.value) and "line 3" in str(e.value)
    index = files.index_split(tmp_path, "train", on_error="skip")
    assert [v.id for v in index.videos] == ["AAAAA"]
    reasons = {s.id: (s.reason, s.line) for s in index.skipped}
    assert set(reasons) == {"MISSN", "EMPTY", "GAPPY"}
    assert "missing" in reasons["MISSN"][0] and reasons["MISSN"][1] == 3
    assert "empty" in reasons["EMPTY"][0] and "000009, expected 000005" in reasons["GAPPY"][0]
    with pytest.raises(ValueError, match="on_error"):
        files.index_split(tmp_path, "train", on_error="ignore")


def test_wrong_value_count_and_bad_values(tmp_path):
    write_dataset(tmp_path, [("AAAAA", "", "3.00", 4), ("BADDD", "", "3.00", 4), ("CCCCC", "", "3.00", 3)])
    bad = tmp_path / files.RGB_FEATURES_DIR / "BADDD" / "BADDD-000009.txt"
    bad.write_text(" ".join(["1"] * (DIM - 1)) + "\n")
    index = files.index_split(tmp_path, "train")  # listing does not read values
    with pytest.raises(CharadesFormatError, match=rf"BADDD-000009\.txt: {DIM - 1} values, expected {DIM}"):
        files.load_video(index.videos[1], dim=DIM)
    with pytest.raises(CharadesFormatError, match=r"BADDD-000009\.txt"):
        cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, progress=False)
    report = cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, on_error="skip", progress=False)
    assert report.num_videos == 2 and [(s.id, s.path) for s in report.skipped] == [("BADDD", str(bad))]
    c = cache.CharadesCache(tmp_path / "cache", "train")
    assert c.ids == ["AAAAA", "CCCCC"] and c.skipped[0].id == "BADDD"
    bad.write_text(" ".join(["1"] * (DIM - 1) + ["x"]))
    with pytest.raises(CharadesFormatError, match="non-numeric"):
        files.read_feature_file(bad, DIM)
    bad.write_text(" ".join(["1"] * (DIM - 1) + ["1e5"]))  # beyond float16
    report = cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, on_error="skip", progress=False)
    assert "float16" in report.skipped[0].reason


def test_a_feature_file_cut_short_mid_number_is_detected(tmp_path):
    """A file that lost its last bytes still parses (0.00704641 -> 0.00704): its missing final newline, where the
    video's other files have one, gives it away."""
    write_dataset(tmp_path, [("AAAAA", "", "3.00", 4), ("CUTTT", "", "3.00", 4)])
    for path in (tmp_path / files.RGB_FEATURES_DIR).glob("*/*.txt"):
        path.write_text(path.read_text() + "\n")
    cut = tmp_path / files.RGB_FEATURES_DIR / "CUTTT" / "CUTTT-000009.txt"
    cut.write_text(cut.read_text()[:-4])  # the newline and the last three characters
    index = files.index_split(tmp_path, "train")
    assert files.load_video(index.videos[0], dim=DIM) is not None  # the intact video reads
    with pytest.raises(CharadesFormatError, match=r"CUTTT-000009\.txt: no final newline.*cut short"):
        files.load_video(index.videos[1], dim=DIM)
    report = cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, on_error="skip", progress=False)
    assert [s.id for s in report.skipped] == ["CUTTT"] and "cut short" in report.skipped[0].reason


# ---------------------------------------------------------------------------------------------------- cache

def test_cache_equals_text(tmp_path):
    acts = "c001 0.00 0.50;c002 0.50 1.00"
    feats = write_dataset(tmp_path, [("AAAAA", acts, "1.50", 10), ("BBBBB", "", "2.00", 13),
                                     ("CCCCC", "c156 0.40 0.90", "1.00", 7)])
    report = cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, verify="all", progress=False)
    assert (report.converted, report.reused, report.verified, report.num_videos) == (3, 0, 3, 3)
    assert report.total_frames == 30 and report.total_bytes == sum(
        (tmp_path / "cache" / "train" / f"{v}.npy").stat().st_size for v in feats)
    assert report.bytes_per_video == report.total_bytes / 3 and "per video" in str(report)
    c = cache.CharadesCache(tmp_path / "cache", "train")
    assert c.ids == ["AAAAA", "BBBBB", "CCCCC"] and list(c.num_frames) == [10, 13, 7] and c.dim == DIM
    for entry in files.index_split(tmp_path, "train").videos:
        text, times, y = files.load_video(entry, dim=DIM)
        np.testing.assert_array_equal(text, feats[entry.id])
        v = c[entry.id]
        assert isinstance(v.features, np.memmap) and v.features.dtype == np.float16
        np.testing.assert_array_equal(v.features, text.astype(np.float16))
        np.testing.assert_allclose(v.features, text, rtol=2.0 ** -11, atol=2.0 ** -24)  # float16 rounding only
        np.testing.assert_array_equal(v.times, times)
        np.testing.assert_array_equal(v.targets, y)
    f, t, y = cache.load_cached_video(tmp_path / "cache", "train", "AAAAA")
    assert list(np.flatnonzero(y[:, 1])) == [0, 1, 2, 3]
    assert cache.verify_cache(tmp_path, tmp_path / "cache", "train") == []


def test_cache_resumes_after_interruption(tmp_path, monkeypatch):
    vids = [(f"V{i:04d}", "c003 0.00 1.00", "2.00", 5 + i) for i in range(5)]
    write_dataset(tmp_path, vids)
    out = tmp_path / "cache" / "train"
    real_write = cache._write_atomic
    calls = []

    def interrupted(target, arr):
        calls.append(target)
        if len(calls) == 3:  # dies while writing the third file: the temp file is there, the target is not
            tmp = target.with_name(f".{target.stem}.npy.{2 ** 22 + 12345}.tmp")
            tmp.write_bytes(b"\x93NUMPY partial")
            raise KeyboardInterrupt
        real_write(target, arr)

    monkeypatch.setattr(cache, "_write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, progress=False)
    monkeypatch.setattr(cache, "_write_atomic", real_write)
    assert sorted(p.name for p in out.glob("*.npy")) == ["V0000.npy", "V0001.npy"]
    assert not (out / cache.MANIFEST).exists()
    (out / "V0001.npy").write_bytes((out / "V0001.npy").read_bytes()[:150])  # also a damaged file
    before = (out / "V0000.npy").stat().st_mtime_ns
    report = cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, verify="none", progress=False)
    assert (report.reused, report.converted, report.num_videos) == (1, 4, 5)
    assert (out / "V0000.npy").stat().st_mtime_ns == before  # not rewritten
    assert not list(out.glob(".*.tmp"))                       # the dead builder's temp file is gone
    assert cache.verify_cache(tmp_path, tmp_path / "cache", "train") == []
    # a cached file that no longer matches the text is found by verification and converted again
    arr = np.load(out / "V0002.npy")
    np.save(out / "V0002.npy", arr + np.float16(1))
    assert [s.id for s in cache.verify_cache(tmp_path, tmp_path / "cache", "train")] == ["V0002"]
    report = cache.build_cache(tmp_path, tmp_path / "cache", dim=DIM, verify="all", progress=False)
    assert (report.reused, report.reconverted, report.verified) == (4, 1, 5)
    assert cache.verify_cache(tmp_path, tmp_path / "cache", "train", sample=2) == []
    manifest = json.loads((out / cache.MANIFEST).read_text())
    assert [v["id"] for v in manifest["videos"]] == [v[0] for v in vids]
    assert manifest["videos"][0]["actions"] == [[3, 0.0, 1.0]] and manifest["dtype"] == "float16"


# ------------------------------------------------------------------------------------------------ generator

def test_generator_is_deterministic_and_goes_through_the_loader(tmp_path):
    kw = dict(videos=5, dim=8, min_length=3.0, max_length=5.0, progress=False, missing_features=1)
    a = synth.generate(tmp_path / "a", seed=7, **kw)
    synth.generate(tmp_path / "b", seed=7, **kw)
    synth.generate(tmp_path / "c", seed=8, **kw)
    for name in ("Charades_v1_train.csv", "Charades_v1_test.csv", "Charades_v1_classes.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "Charades_v1_train.csv").read_bytes() != (tmp_path / "c" / "Charades_v1_train.csv"
                                                                      ).read_bytes()
    fa = sorted((tmp_path / "a" / files.RGB_FEATURES_DIR).rglob("*.txt"))
    fb = sorted((tmp_path / "b" / files.RGB_FEATURES_DIR).rglob("*.txt"))
    assert [p.relative_to(tmp_path / "a") for p in fa] == [p.relative_to(tmp_path / "b") for p in fb]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))
    assert (len(a.train_ids), len(a.test_ids), a.missing_features) == (4, 1, a.test_ids)
    with pytest.raises(CharadesFormatError, match="missing"):
        files.index_split(tmp_path / "a", "test")
    assert [s.id for s in files.index_split(tmp_path / "a", "test", on_error="skip").skipped] == a.test_ids
    with pytest.raises(FileExistsError):
        synth.generate(tmp_path / "a", seed=7, **kw)
    synth.main([str(tmp_path / "a"), "--videos", "3", "--dim", "8", "--seed", "1", "--overwrite", "--quiet",
                "--min-length", "3", "--max-length", "4"])
    assert len(files.index_split(tmp_path / "a", "train").videos) == 2
    with pytest.raises(SystemExit) as e:
        synth.main(["--help"])
    assert e.value.code == 0


def test_synthetic_signal_is_learnable(tmp_path):
    """A least-squares probe trained on the synthetic train split beats chance on the test split's metric."""
    synth.generate(tmp_path, videos=24, seed=0, dim=DIM, min_length=6.0, max_length=12.0, active_classes=3,
                   classes_per_video="1-2", test_fraction=0.25, progress=False)
    train = files.index_split(tmp_path, "train").videos
    x, y = zip(*[files.load_video(e, dim=DIM)[::2] for e in train])
    x, y = np.concatenate(x), np.concatenate(y).astype(np.float64)
    x1 = np.c_[x, np.ones(len(x))]
    w = np.linalg.lstsq(x1, y, rcond=None)[0]
    test = files.index_split(tmp_path, "test").videos
    preds = {}
    for e in test:
        feats, _, _ = files.load_video(e, dim=DIM)
        preds[e.id] = metric.scores_at_times(np.c_[feats, np.ones(len(feats))] @ w, e.record.length, 100)
    res = metric.evaluate([e.record for e in test], preds, 100)
    present = res.npos > 0
    chance = res.npos[present] / res.num_frames
    assert present.sum() >= 2 and np.all(res.ap[present] > chance + 0.2), (res.ap[present], chance)
    assert np.isnan(res.map) and res.map_present > 0.7
