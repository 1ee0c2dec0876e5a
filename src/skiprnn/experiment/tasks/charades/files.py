"""Parsing the official Charades v1 files (layout and conventions: ``shared/reference/charades.md``).

Files read, all under one dataset root (or under ``<root>/Charades/``, where ``Charades.zip`` puts them)::

    Charades_v1_train.csv / Charades_v1_test.csv   11 columns, CRLF, RFC-4180 minimal quoting; looked up by name
    Charades_v1_classes.txt                        157 lines "c000 Holding some clothes" (LF)
    Charades_v1_features_rgb/<ID>/<ID>-NNNNNN.txt  one file per stored frame: 4,096 whitespace-separated floats

Feature frames. ``NNNNNN`` is the 1-based 24 fps frame number, zero-padded to 6 digits; only every 4th frame is
stored (1, 5, 9, ...). The file of frame ``k`` is at time ``(k - 1) / 24`` s, so the i-th feature (0-based) is at
``i / 6`` s (6 fps). The number of features ``T`` is counted from the files, never derived from ``length``.

Targets. Frame i of a video is labelled with every class ``c`` that has an action ``(c, start, end)`` with
``start <= t_i <= end`` -- **inclusive at both ends**, exactly the test of the official evaluator
(``Charades_v1_localize.m`` l.141), so training targets agree with the evaluation ground truth at interval edges
(t = 0 for actions starting at ``0.00``, and every 0.5 s grid point). ``inclusive=False`` gives the strict test
``start < t_i < end`` of the official starter code instead. Intervals are used raw: ``end > length`` is neither
clipped nor dropped, ``start > end`` simply never matches, and a class repeated in one video is an OR, not a count.

Errors. Bad input raises :class:`CharadesFormatError` naming the file (and, for the CSV, its line). Functions that
work on a whole split take ``on_error``: ``"raise"`` (default) stops at the first bad video, ``"skip"`` leaves the
bad video out and records it as a :class:`SkippedVideo` (id, reason, file, line) in the returned list and in a
logged warning, so nothing is dropped silently.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

NUM_CLASSES = 157
FEATURE_DIM = 4096
VIDEO_FPS = 24            # the frame numbers in the feature file names count 24 fps frames
FEATURE_STRIDE = 4        # one feature file every 4th frame: 1, 5, 9, ...
FEATURE_FPS = VIDEO_FPS / FEATURE_STRIDE  # = 6.0
CSV_COLUMNS = ("id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
               "actions", "length")
REQUIRED_COLUMNS = ("id", "actions", "length")
SPLIT_CSV = {"train": "Charades_v1_train.csv", "test": "Charades_v1_test.csv"}
CLASSES_FILE = "Charades_v1_classes.txt"
RGB_FEATURES_DIR = "Charades_v1_features_rgb"

OnError = Literal["raise", "skip"]
_CODE = re.compile(r"c(\d{3})\Z")
_FRAME_FILE = re.compile(r"(?P<id>.+)-(?P<frame>\d{6})\.txt\Z")


class CharadesFormatError(ValueError):
    """A Charades file that does not follow the official format. ``path`` and ``line`` (1-based) say where."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, line: int | None = None,
                 video_id: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.video_id = video_id
        self.reason = message
        where = "" if path is None else f"{path}" + ("" if line is None else f", line {line}")
        super().__init__(f"{where}: {message}" if where else message)


class Action(NamedTuple):
    """One annotated action instance: 0-based class index, start and end in seconds (raw, never clipped)."""
    cls: int
    start: float
    end: float


@dataclass(frozen=True)
class VideoRecord:
    """One CSV row. ``line`` is its 1-based line number in ``csv_path`` (the header is line 1)."""
    id: str
    length: float
    actions: tuple[Action, ...]
    line: int
    csv_path: str
    fields: dict = field(default_factory=dict, compare=False, repr=False)  # every column, raw strings


@dataclass(frozen=True)
class VideoFrames:
    """The stored feature frames of one video: 1-based 24 fps frame numbers (1, 5, 9, ...) and their files."""
    id: str
    folder: str
    frame_numbers: tuple[int, ...]
    paths: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frame_numbers)

    @property
    def times(self) -> np.ndarray:
        """Time in seconds of each feature: ``(k - 1) / 24`` for frame number k, i.e. ``i / 6`` for the i-th."""
        return frame_times(self.frame_numbers)


@dataclass(frozen=True)
class VideoEntry:
    """A CSV row together with the listing of its feature folder."""
    record: VideoRecord
    frames: VideoFrames

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class SkippedVideo:
    """A video left out under ``on_error="skip"``, with the reason and where the problem is."""
    id: str | None
    reason: str
    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = "" if self.path is None else f" ({self.path}" + ("" if self.line is None else f", line {self.line}") + ")"
        return f"{self.id or '<unknown id>'}: {self.reason}{where}"

    @classmethod
    def from_error(cls, err: CharadesFormatError, video_id: str | None = None) -> SkippedVideo:
        return cls(video_id if video_id is not None else err.video_id, err.reason, err.path, err.line)


@dataclass
class SplitIndex:
    """A split's usable videos (CSV order) and the videos left out under ``on_error="skip"``."""
    split: str
    root: str
    videos: list[VideoEntry]
    skipped: list[SkippedVideo]

    def __len__(self) -> int:
        return len(self.videos)


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def report_skipped(skipped: Sequence[SkippedVideo], what: str) -> None:
    """Log one warning listing every skipped video and its reason (no-op when nothing was skipped)."""
    if skipped:
        log.warning("%s: skipped %d video(s):\n  %s", what, len(skipped), "\n  ".join(map(str, skipped)))


# --------------------------------------------------------------------------------------------------- annotations

def find_annotation(root: str | os.PathLike, name: str) -> Path:
    """``<root>/<name>``, or ``<root>/Charades/<name>`` (the layout of the extracted ``Charades.zip``)."""
    root = Path(root)
    for candidate in (root / name, root / "Charades" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} not found in {root} nor in {root / 'Charades'}")


def parse_actions(text: str, num_classes: int = NUM_CLASSES, *, path: str | os.PathLike | None = None,
                  line: int | None = None, video_id: str | None = None) -> tuple[Action, ...]:
    """Parse an ``actions`` field, e.g. ``"c092 11.90 21.20;c147 0.00 12.60"`` -> ((92, 11.9, 21.2), (147, 0.0, 12.6)).

    The empty string means no action. Each ``;``-separated triplet must be ``cDDD START END`` separated by single
    spaces, with ``DDD < num_classes`` and finite decimal times. Times are not checked against each other or
    against the video length (``end > length`` and ``start > end`` occur in the official files and are kept).
    """
    if text == "":
        return ()
    out = []
    for k, triplet in enumerate(text.split(";")):
        parts = triplet.split(" ")
        bad = f"malformed actions field: triplet {k + 1} {triplet!r} (expected 'cNNN start end') in {text!r}"
        if len(parts) != 3:
            raise CharadesFormatError(bad, path, line, video_id)
        m = _CODE.match(parts[0])
        if m is None:
            raise CharadesFormatError(bad, path, line, video_id)
        cls = int(m.group(1))
        if cls >= num_classes:
            raise CharadesFormatError(f"class {parts[0]} out of range (0..{num_classes - 1}) in actions {text!r}",
                                      path, line, video_id)
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise CharadesFormatError(bad, path, line, video_id) from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise CharadesFormatError(bad, path, line, video_id)
        out.append(Action(cls, start, end))
    return tuple(out)


def _well_formed_actions(text: str, num_classes: int) -> tuple[Action, ...]:
    """The triplets of an ``actions`` field that parse on their own, the others left out."""
    out = []
    for triplet in text.split(";") if text else ():
        try:
            out += parse_actions(triplet, num_classes)
        except CharadesFormatError:
            continue
    return tuple(out)


def read_video_csv(path: str | os.PathLike, num_classes: int = NUM_CLASSES, *, on_error: OnError = "raise",
                   keep_partial: bool = False) -> tuple[list[VideoRecord], list[SkippedVideo]]:
    """Read ``Charades_v1_{train,test}.csv``: the rows in file order, and the rows skipped under ``on_error="skip"``.

    Columns are looked up by header name (``id``, ``actions`` and ``length`` are required; all 11 are kept in
    ``VideoRecord.fields``). Rows with an empty ``actions`` field are kept with no actions. A malformed ``actions``
    or ``length`` field, an empty or duplicate ``id``, or a row with the wrong number of fields raises
    :class:`CharadesFormatError` with the file and line, or is skipped and reported.

    ``keep_partial`` (the evaluation's ground truth): a skipped row whose id and length are sound stays among the
    records with its well-formed actions, so that the video is scored (as missing, since no model sees it) rather
    than dropped from the ground truth, as the official evaluator keeps every row of the CSV.
    """
    check_on_error(on_error)
    path = Path(path)
    records: list[VideoRecord] = []
    skipped: list[SkippedVideo] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="ascii", errors="strict") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise CharadesFormatError("empty file (no header)", path, 1) from None
        except UnicodeDecodeError as e:
            raise CharadesFormatError(f"not ASCII: {e}", path, 1) from None
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CharadesFormatError(f"header lacks column(s) {missing}; header is {header}", path, 1)
        col = {name: header.index(name) for name in header}
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                raise CharadesFormatError(f"unreadable CSV: {e}", path, reader.line_num) from None
            line = reader.line_num  # fields never contain newlines, so this is the row's own line
            if not row:  # a blank line
                continue
            video_id = row[col["id"]] if len(row) > col["id"] else None
            try:
                if len(row) != len(header):
                    raise CharadesFormatError(f"{len(row)} fields, header has {len(header)}", path, line, video_id)
                if not video_id:
                    raise CharadesFormatError("empty id", path, line)
                if video_id in seen:
                    raise CharadesFormatError(f"duplicate id {video_id!r} (first on line {seen[video_id]})",
                                              path, line, video_id)
                try:
                    length = float(row[col["length"]])
                except ValueError:
                    raise CharadesFormatError(f"malformed length {row[col['length']]!r}", path, line,
                                              video_id) from None
                if not (math.isfinite(length) and length > 0):
                    raise CharadesFormatError(f"length must be positive, got {row[col['length']]!r}",
                                              path, line, video_id)
                try:
                    actions = parse_actions(row[col["actions"]], num_classes, path=path, line=line,
                                            video_id=video_id)
                except CharadesFormatError as err:
                    if on_error == "raise" or not keep_partial:
                        raise
                    skipped.append(SkippedVideo.from_error(err, video_id))
                    actions = _well_formed_actions(row[col["actions"]], num_classes)
            except CharadesFormatError as err:
                if on_error == "raise":
                    raise
                skipped.append(SkippedVideo.from_error(err, video_id))
                continue
            seen[video_id] = line
            records.append(VideoRecord(video_id, length, actions, line, str(path), dict(zip(header, row))))
    report_skipped(skipped, str(path))
    return records, skipped


def read_classes(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> list[str]:
    """Read ``Charades_v1_classes.txt``: the class names, index = class id (line ``cNNN Name``, in order c000...)."""
    path = Path(path)
    names = []
    with open(path, encoding="ascii", newline="") as f:
        for n, raw in enumerate(f, start=1):
            text = raw.rstrip("\n").rstrip("\r")
            if text == "" and n > num_classes:
                continue
            code, _, name = text.partition(" ")
            m = _CODE.match(code)
            if m is None or not name:
                raise CharadesFormatError(f"expected 'cNNN Name', got {text!r}", path, n)
            if int(m.group(1)) != len(names):
                raise CharadesFormatError(f"expected class c{len(names):03d}, got {code}", path, n)
            names.append(name)
    if len(names) != num_classes:
        raise CharadesFormatError(f"{len(names)} classes, expected {num_classes}", path)
    return names


# ------------------------------------------------------------------------------------------------------ features

def frame_times(frame_numbers: Iterable[int]) -> np.ndarray:
    """Times in seconds (float64) of 1-based 24 fps frame numbers: ``(k - 1) / 24`` (frame 1 -> 0 s, 5 -> 1/6 s)."""
    return (np.asarray(list(frame_numbers), dtype=np.float64) - 1.0) / VIDEO_FPS


def feature_folder(root: str | os.PathLike, video_id: str, features_dir: str = RGB_FEATURES_DIR) -> Path:
    """``<root>/Charades_v1_features_rgb/<id>``."""
    return Path(root) / features_dir / video_id


def list_feature_frames(folder: str | os.PathLike, video_id: str) -> VideoFrames:
    """List ``<folder>/<id>-NNNNNN.txt``, sorted by the parsed frame number, and check it is 1, 5, 9, ... without gaps.

    Hidden entries (names starting with ``.``) are ignored; any other unexpected name is an error, as are a missing
    or empty folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CharadesFormatError("feature folder missing (the video is in the CSV but has no features)", folder,
                                  video_id=video_id)
    frames = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        m = _FRAME_FILE.match(entry.name)
        if m is None or m.group("id") != video_id or not entry.is_file():
            raise CharadesFormatError(f"unexpected entry {entry.name!r} (expected {video_id}-NNNNNN.txt)", folder,
                                      video_id=video_id)
        frames.append((int(m.group("frame")), entry.path))
    if not frames:
        raise CharadesFormatError("feature folder is empty", folder, video_id=video_id)
    frames.sort()
    numbers = tuple(k for k, _ in frames)
    expected = range(1, FEATURE_STRIDE * len(numbers), FEATURE_STRIDE)
    if numbers != tuple(expected):
        bad = next(i for i, (a, b) in enumerate(zip(numbers, expected)) if a != b)
        raise CharadesFormatError(f"feature frames must be 1, 5, 9, ... without gaps; frame #{bad} is "
                                  f"{numbers[bad]:06d}, expected {expected[bad]:06d}", folder, video_id=video_id)
    return VideoFrames(video_id, str(folder), numbers, tuple(p for _, p in frames))


def read_feature_file(path: str | os.PathLike, dim: int | None = FEATURE_DIM) -> np.ndarray:
    """One feature file as float32 ``(dim,)``: whitespace-separated decimal numbers (one line, ``%.6g`` in the
    official files; a final newline is optional). ``dim=None`` accepts any non-zero count."""
    with open(path, "rb") as f:
        text = f.read()
    tokens = text.split()
    if (dim is not None and len(tokens) != dim) or not tokens:
        raise CharadesFormatError(f"{len(tokens)} values, expected {dim}", path)
    try:
        values = np.array(tokens, dtype=np.float64)  # parse as Python floats (correctly rounded), then narrow
    except ValueError as e:
        raise CharadesFormatError(f"non-numeric value: {e}", path) from None
    if not np.isfinite(values).all():
        raise CharadesFormatError(f"non-finite value at index {int(np.argmin(np.isfinite(values)))}", path)
    return values.astype(np.float32)


def read_video_features(frames: VideoFrames, dim: int | None = FEATURE_DIM) -> np.ndarray:
    """All feature files of one video as float32 ``(T, dim)``; errors name the file. With ``dim=None`` the first
    file fixes the dimension and the others must match it. A file without the final newline its siblings end with
    was cut short, possibly mid-number (``0.00704641`` -> ``0.00704`` would still parse): an error, not a value."""
    out = None
    endings = []
    for i, p in enumerate(frames.paths):
        try:
            v = read_feature_file(p, dim)
        except CharadesFormatError as err:
            err.video_id = frames.id
            raise
        if out is None:
            dim = v.shape[0]
            out = np.empty((len(frames), dim), dtype=np.float32)
        out[i] = v
        endings.append(_ends_with_newline(p))
    if any(endings) and not all(endings):
        cut = frames.paths[endings.index(False)]
        err = CharadesFormatError("no final newline, while the video's other feature files end with one: the file "
                                  "was cut short (its last number may be truncated); fetch it again", cut)
        err.video_id = frames.id
        raise err
    return out


def _ends_with_newline(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def frame_targets(actions: Iterable[Action | tuple[int, float, float]], times: np.ndarray,
                  num_classes: int = NUM_CLASSES, *, inclusive: bool = True, dtype=np.uint8) -> np.ndarray:
    """Per-frame multi-hot targets ``(T, num_classes)``: 1 where some action of that class covers the frame's time.

    Convention: ``start <= t <= end`` (inclusive at both ends, as the official evaluator) by default;
    ``inclusive=False`` uses the starter code's strict ``start < t < end``. Raw intervals, OR over repeats.
    """
    times = np.asarray(times, dtype=np.float64)
    out = np.zeros((times.shape[0], num_classes), dtype=dtype)
    for cls, start, end in actions:
        hit = (start <= times) & (times <= end) if inclusive else (start < times) & (times < end)
        out[hit, cls] = 1
    return out


# --------------------------------------------------------------------------------------------------------- split

def index_split(root: str | os.PathLike, split: str = "train", *, csv_path: str | os.PathLike | None = None,
                features_dir: str = RGB_FEATURES_DIR, num_classes: int = NUM_CLASSES,
                on_error: OnError = "raise") -> SplitIndex:
    """Read a split's CSV and list every video's feature folder (the feature files themselves are not read).

    ``split`` is ``"train"`` or ``"test"`` (the paper's "validation" set). A video of the CSV whose feature folder
    is missing, empty or badly named raises, or (``on_error="skip"``) is skipped and listed in ``.skipped``.
    Malformed values inside the files are only found when they are read (:func:`load_video`, the cache builder).
    """
    check_on_error(on_error)
    if csv_path is None:
        if split not in SPLIT_CSV:
            raise ValueError(f"split must be one of {sorted(SPLIT_CSV)}, got {split!r}")
        csv_path = find_annotation(root, SPLIT_CSV[split])
    records, skipped = read_video_csv(csv_path, num_classes, on_error=on_error)
    videos = []
    bad = []
    for rec in records:
        try:
            frames = list_feature_frames(feature_folder(root, rec.id, features_dir), rec.id)
        except CharadesFormatError as err:
            if on_error == "raise":
                raise CharadesFormatError(f"{err.reason} [video {rec.id}, {rec.csv_path} line {rec.line}]",
                                          err.path, None, rec.id) from None
            bad.append(SkippedVideo(rec.id, err.reason, err.path, rec.line))
            continue
        videos.append(VideoEntry(rec, frames))
    report_skipped(bad, f"{split} features under {Path(root) / features_dir}")
    return SplitIndex(split, str(root), videos, skipped + bad)


def load_video(entry: VideoEntry, dim: int | None = FEATURE_DIM, num_classes: int = NUM_CLASSES, *,
               inclusive: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one video from the text files: features float32 ``(T, dim)``, times float64 ``(T,)`` in seconds and
    targets uint8 ``(T, num_classes)`` (see :func:`frame_targets` for the interval convention)."""
    feats = read_video_features(entry.frames, dim)
    times = entry.frames.times
    return feats, times, frame_targets(entry.record.actions, times, num_classes, inclusive=inclusive)
