"""The one-time binary cache of the Charades RGB features: one float16 ``.npy`` per video plus a JSON manifest.

Layout::

    <cache_dir>/<split>/<ID>.npy        float16 (T, dim), C order; np.load(..., mmap_mode="r") maps it
    <cache_dir>/<split>/manifest.json   format, dim, and per video: id, length, T, CSV line, actions, bytes;
                                        plus the videos skipped under on_error="skip" and why

Size. A frame costs ``4096 * 2 = 8,192`` bytes (plus a 128-byte ``.npy`` header per video). With the feature counts
of ``charades.md`` §2.5 (train 7,985 videos x 179.9 frames, test 1,863 x 172.9, i.e. about 1.76 M frames in all,
178.6 per video on average) the full cache is about **14.4 GB (13.4 GiB)**: train about 11.8 GB, test about
2.6 GB, about **1.46 MB per video** on average (9.6 MB for the longest, 1,167 frames), against about 37 GB of
text. In float32 it would be twice that (28.8 GB).

Conversion (:func:`build_cache`) is resumable: each video is written to a temporary file in the same folder,
read back and compared with the parsed text, and only then moved into place with ``os.replace``; so a ``<ID>.npy``
that exists is complete and was verified when written. A rerun skips every video whose file exists with the
expected dtype and shape (and, on request, re-checks it against the text), converts the rest, and rewrites the
manifest. Values are stored as ``float16(float32(text))``; :func:`verify_cache` checks a sample or all videos
against the source text with exactly that rounding. A value beyond float16's range (65,504) is an error, never a
silent ``inf``.

Do not run two builders on the same ``<cache_dir>/<split>`` at once.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from ... import tracking
from .files import (
    FEATURE_DIM,
    NUM_CLASSES,
    RGB_FEATURES_DIR,
    CharadesFormatError,
    OnError,
    SkippedVideo,
    VideoEntry,
    check_on_error,
    frame_targets,
    frame_times,
    index_split,
    read_video_features,
    report_skipped,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
CACHE_DTYPE = np.float16
BYTES_PER_VALUE = 2
FRAMES_PER_VIDEO_MEAN = 178.6   # charades.md §2.5: (7,985 x 179.9 + 1,863 x 172.9) / 9,848
ESTIMATED_FULL_BYTES = 14.4e9   # 1.76 M frames x 4,096 x 2 bytes
_TMP = re.compile(r"\.(?P<id>.+)\.npy\.(?P<pid>\d+)\.tmp\Z")
Verify = Literal["none", "sample", "all"]


@dataclass
class CacheReport:
    """What :func:`build_cache` did for one split."""
    split: str
    cache_dir: str
    num_videos: int = 0            # videos in the cache after this run
    converted: int = 0             # written in this run
    reused: int = 0                # already there (complete, right shape)
    reconverted: int = 0           # were there but failed verification against the text, rewritten
    verified: int = 0              # compared with the source text in this run (written ones included)
    skipped: list[SkippedVideo] = field(default_factory=list)
    total_frames: int = 0
    total_bytes: int = 0
    seconds: float = 0.0

    @property
    def bytes_per_video(self) -> float:
        return self.total_bytes / self.num_videos if self.num_videos else 0.0

    def __str__(self) -> str:
        return (f"{self.split}: {self.num_videos} videos in {self.cache_dir} ({self.converted} converted, "
                f"{self.reused} reused, {self.reconverted} reconverted, {self.verified} verified against the "
                f"text, {len(self.skipped)} skipped); {self.total_frames} frames, {_human(self.total_bytes)}, "
                f"{_human(self.bytes_per_video)} per video; {self.seconds:.1f} s")


def _human(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}"
    return f"{nbytes:.0f} B"


def split_dir(cache_dir: str | os.PathLike, split: str) -> Path:
    """``<cache_dir>/<split>``."""
    return Path(cache_dir) / split


def video_file(cache_dir: str | os.PathLike, split: str, video_id: str) -> Path:
    """``<cache_dir>/<split>/<ID>.npy``."""
    return split_dir(cache_dir, split) / f"{video_id}.npy"


def _cached_ok(path: Path, num_frames: int, dim: int | None) -> bool:
    """The file exists and is a float16 (num_frames, dim) array (header check, nothing is read)."""
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):
        return False
    return arr.dtype == CACHE_DTYPE and arr.shape[0] == num_frames and arr.ndim == 2 and (dim is None or
                                                                                         arr.shape[1] == dim)


def _to_f16(feats: np.ndarray, path: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        f16 = feats.astype(CACHE_DTYPE)
    if not np.isfinite(f16).all():
        i = np.argwhere(~np.isfinite(f16))[0]
        raise CharadesFormatError(f"value {feats[tuple(i)]!r} at frame {i[0]}, index {i[1]} exceeds the float16 "
                                  f"range", path)
    return f16


def _write_atomic(target: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to a temp file beside ``target``, read it back and compare, fsync, then ``os.replace``."""
    tmp = target.with_name(f".{target.stem}.npy.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        back = np.load(tmp, mmap_mode="r")
        if back.dtype != arr.dtype or back.shape != arr.shape or not np.array_equal(back, arr):
            raise OSError(f"{tmp}: read-back differs from what was written")
        del back
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _convert_one(entry: VideoEntry, target: str, dim: int | None, check_source: bool) -> dict:
    """Convert (or reuse) one video. Returns a dict with status, frames, bytes, verified, or error fields."""
    target = Path(target)
    n = entry.num_frames
    try:
        if _cached_ok(target, n, dim):
            if not check_source:
                return {"status": "reused", "frames": n, "bytes": target.stat().st_size, "verified": False}
            f16 = _to_f16(read_video_features(entry.frames, dim), entry.frames.folder)
            if np.array_equal(np.load(target, mmap_mode="r"), f16):
                return {"status": "reused", "frames": n, "bytes": target.stat().st_size, "verified": True}
            log.warning("%s differs from the text under %s: converting it again", target, entry.frames.folder)
            status = "reconverted"
        else:
            f16 = _to_f16(read_video_features(entry.frames, dim), entry.frames.folder)
            status = "converted"
        _write_atomic(target, f16)
        return {"status": status, "frames": n, "bytes": target.stat().st_size, "verified": True}
    except CharadesFormatError as err:
        if target.exists():  # a stale file for a video that now fails must not be picked up by a loader
            target.unlink()
        return {"status": "error", "id": entry.id, "reason": err.reason, "path": err.path,
                "line": entry.record.line}


def _clean_temp_files(folder: Path) -> None:
    """Remove temp files left by an interrupted builder (one whose process is gone)."""
    for p in folder.iterdir():
        m = _TMP.match(p.name)
        if m is None:
            continue
        pid = int(m.group("pid"))
        alive = pid == os.getpid()
        if not alive:
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            log.info("removing %s left by an interrupted conversion", p)
            p.unlink(missing_ok=True)


def _write_json_atomic(path: Path, obj) -> None:
    tracking.atomic_write_text(path, json.dumps(obj, indent=1))


def build_cache(root: str | os.PathLike, cache_dir: str | os.PathLike, split: str = "train", *,
                dim: int | None = FEATURE_DIM, num_classes: int = NUM_CLASSES, on_error: OnError = "raise",
                verify: Verify = "sample", verify_sample: int = 8, seed: int = 0, workers: int = 1,
                progress: bool = True, csv_path: str | os.PathLike | None = None,
                features_dir: str = RGB_FEATURES_DIR) -> CacheReport:
    """Convert a split's text features under ``root`` to ``<cache_dir>/<split>/<ID>.npy`` (float16), resumably.

    Every video written is compared with the text it came from. Videos already in the cache (complete, float16,
    right shape) are reused; ``verify`` says which of them are first re-checked against the text: ``"none"``,
    ``"sample"`` (``verify_sample`` videos drawn with ``seed``), or ``"all"``; one that differs is converted again.
    ``on_error="skip"`` leaves bad videos (missing/empty folder, wrong value count, malformed CSV row, float16
    overflow) out, lists them in the report and the manifest, and logs them; ``"raise"`` stops at the first.
    ``workers > 1`` parses in that many processes. Returns a :class:`CacheReport` (sizes included).
    """
    check_on_error(on_error)
    if verify not in ("none", "sample", "all"):
        raise ValueError(f"verify must be 'none', 'sample' or 'all', got {verify!r}")
    t0 = time.perf_counter()
    index = index_split(root, split, csv_path=csv_path, features_dir=features_dir, num_classes=num_classes,
                        on_error=on_error)
    out = split_dir(cache_dir, split)
    out.mkdir(parents=True, exist_ok=True)
    _clean_temp_files(out)
    ids = [e.id for e in index.videos]
    if verify == "all":
        check = set(ids)
    elif verify == "sample":
        check = set(random.Random(seed).sample(ids, min(verify_sample, len(ids))))
    else:
        check = set()
    report = CacheReport(split, str(out), skipped=list(index.skipped))
    jobs = [(e, str(out / f"{e.id}.npy"), dim, e.id in check) for e in index.videos]
    done: dict[str, dict] = {}
    bar = tqdm(total=len(jobs), desc=f"charades {split} -> float16", unit="video", disable=not progress)
    try:
        for entry, result in zip(index.videos, _run(jobs, workers)):
            bar.update(1)
            if result["status"] == "error":
                err = SkippedVideo(result["id"], result["reason"], result["path"], result["line"])
                if on_error == "raise":
                    raise CharadesFormatError(f"{result['reason']} [video {result['id']}, CSV line {result['line']}]",
                                              result["path"], None, result["id"])
                report.skipped.append(err)
            else:
                done[entry.id] = result
                setattr(report, result["status"], getattr(report, result["status"]) + 1)
                report.verified += result["verified"]
                report.total_frames += result["frames"]
                report.total_bytes += result["bytes"]
            bar.set_postfix(skipped=len(report.skipped), size=_human(report.total_bytes))
    finally:
        bar.close()
    report.num_videos = len(done)
    report.seconds = time.perf_counter() - t0
    videos = [{"id": e.id, "length": e.record.length, "num_frames": e.num_frames, "line": e.record.line,
               "actions": [list(a) for a in e.record.actions], "bytes": done[e.id]["bytes"]}
              for e in index.videos if e.id in done]
    first = next(iter(done), None)
    manifest = {"format": FORMAT_VERSION, "split": split, "dtype": "float16",
                "dim": int(np.load(out / f"{first}.npy", mmap_mode="r").shape[1]) if first else dim,
                "num_classes": num_classes, "feature_fps": 6.0, "source_root": str(root),
                "csv": str(csv_path) if csv_path else None, "features_dir": features_dir,
                "videos": videos, "skipped": [asdict(s) for s in report.skipped],
                "total_frames": report.total_frames, "total_bytes": report.total_bytes}
    _write_json_atomic(out / MANIFEST, manifest)
    report_skipped(report.skipped, f"cache {out}")
    log.info("%s", report)
    return report


def _run(jobs: list[tuple], workers: int) -> Iterator[dict]:
    if workers <= 1:
        for job in jobs:
            yield _convert_one(*job)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            yield from pool.map(_convert_one, *zip(*jobs), chunksize=1) if jobs else ()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


# ------------------------------------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class CachedVideo:
    """One video read from the cache: features float16 ``(T, dim)`` (memory-mapped by default), times float64
    ``(T,)`` in seconds, targets uint8 ``(T, num_classes)``."""
    id: str
    length: float
    features: np.ndarray
    times: np.ndarray
    targets: np.ndarray


class CharadesCache:
    """A split's cache, as a map-style dataset: ``len(cache)``, ``cache[i]`` -> :class:`CachedVideo`.

    Targets are rebuilt from the manifest's actions at each feature time (``i / 6`` s) with the inclusive convention
    of :func:`files.frame_targets` (``inclusive=False``: the starter code's strict one).
    """

    def __init__(self, cache_dir: str | os.PathLike, split: str = "train", *, mmap: bool = True,
                 inclusive: bool = True):
        self.dir = split_dir(cache_dir, split)
        path = self.dir / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: build the cache first (build_cache)")
        with open(path, encoding="utf-8") as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: cache format {self.manifest.get('format')}, expected {FORMAT_VERSION}")
        self.split = split
        self.mmap = mmap
        self.inclusive = inclusive
        self.dim = self.manifest["dim"]
        self.num_classes = self.manifest["num_classes"]
        self.videos = self.manifest["videos"]
        self.ids = [v["id"] for v in self.videos]
        self.lengths = np.array([v["length"] for v in self.videos], dtype=np.float64)
        self.num_frames = np.array([v["num_frames"] for v in self.videos], dtype=np.int64)
        self.skipped = [SkippedVideo(**s) for s in self.manifest["skipped"]]
        self._pos = {vid: i for i, vid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.videos)

    def index_of(self, video_id: str) -> int:
        try:
            return self._pos[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in {self.dir / MANIFEST}") from None

    def features(self, key: int | str) -> np.ndarray:
        i = self.index_of(key) if isinstance(key, str) else key
        v = self.videos[i]
        path = self.dir / f"{v['id']}.npy"
        arr = np.load(path, mmap_mode="r" if self.mmap else None)
        if arr.dtype != CACHE_DTYPE or arr.shape != (v["num_frames"], self.dim):
            raise ValueError(f"{path}: {arr.dtype} {arr.shape}, manifest says float16 ({v['num_frames']}, "
                             f"{self.dim})")
        return arr

    def times(self, key: int | str) -> np.ndarray:
        i = self.index_of(key) if isinstance(key, str) else key
        return frame_times(range(1, 4 * self.videos[i]["num_frames"], 4))

    def actions(self, key: int | str) -> list[tuple[int, float, float]]:
        i = self.index_of(key) if isinstance(key, str) else key
        return [tuple(a) for a in self.videos[i]["actions"]]

    def targets(self, key: int | str) -> np.ndarray:
        return frame_targets(self.actions(key), self.times(key), self.num_classes, inclusive=self.inclusive)

    def __getitem__(self, key: int | str) -> CachedVideo:
        i = self.index_of(key) if isinstance(key, str) else int(key)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        v = self.videos[i]
        return CachedVideo(v["id"], v["length"], self.features(i), self.times(i), self.targets(i))

    @property
    def total_bytes(self) -> int:
        return int(self.manifest["total_bytes"])


def load_cached_video(cache_dir: str | os.PathLike, split: str, video_id: str, *, mmap: bool = True,
                      inclusive: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One video's (features float16 (T, dim), times (T,), targets uint8 (T, 157)) from the cache."""
    v = CharadesCache(cache_dir, split, mmap=mmap, inclusive=inclusive)[video_id]
    return v.features, v.times, v.targets


def verify_cache(root: str | os.PathLike, cache_dir: str | os.PathLike, split: str = "train", *,
                 ids: Sequence[str] | None = None, sample: int | None = None, seed: int = 0,
                 progress: bool = False, features_dir: str = RGB_FEATURES_DIR) -> list[SkippedVideo]:
    """Compare cached videos with the source text (``float16(float32(text))``, exactly). Checks ``ids``, or
    ``sample`` of them drawn with ``seed``, or all; returns the mismatches (empty list = all equal)."""
    from .files import feature_folder, list_feature_frames

    cache = CharadesCache(cache_dir, split)
    todo = list(ids) if ids is not None else list(cache.ids)
    if sample is not None:
        todo = random.Random(seed).sample(todo, min(sample, len(todo)))
    bad = []
    for vid in tqdm(todo, desc=f"verify {split}", unit="video", disable=not progress):
        folder = feature_folder(root, vid, features_dir)
        try:
            text = _to_f16(read_video_features(list_feature_frames(folder, vid), cache.dim), str(folder))
        except CharadesFormatError as err:
            bad.append(SkippedVideo(vid, err.reason, err.path))
            continue
        cached = cache.features(vid)
        if cached.shape != text.shape:
            bad.append(SkippedVideo(vid, f"shape {cached.shape} in the cache, {text.shape} in the text", str(folder)))
        elif not np.array_equal(cached, text):
            n = int((cached != text).sum())
            bad.append(SkippedVideo(vid, f"{n} values differ from the text", str(folder)))
    return bad


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m skiprnn.experiment.tasks.charades.cache",
                                description="Convert Charades_v1_features_rgb text files to a float16 .npy cache.")
    p.add_argument("root", help="folder with Charades_v1_{train,test}.csv and Charades_v1_features_rgb/")
    p.add_argument("cache_dir", help="where <split>/<ID>.npy and <split>/manifest.json go")
    p.add_argument("--split", nargs="+", default=["train", "test"], choices=["train", "test"])
    p.add_argument("--dim", type=int, default=FEATURE_DIM, help="values per feature file (default 4096)")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    p.add_argument("--verify", choices=["none", "sample", "all"], default="sample")
    p.add_argument("--verify-sample", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for split in args.split:
        report = build_cache(args.root, args.cache_dir, split, dim=args.dim, on_error=args.on_error,
                             verify=args.verify, verify_sample=args.verify_sample, workers=args.workers,
                             progress=not args.quiet)
        print(report)
        for s in report.skipped:
            print(f"  skipped {s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
