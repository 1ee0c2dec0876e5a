"""Where a run's results go. ``metrics.json`` and ``curve.jsonl`` in the run directory are the source of
truth (written atomically); Weights & Biases mirrors them, offline unless asked otherwise."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .identity import flatten

METRICS, CURVE, FAILED, CHECKPOINT = "metrics.json", "curve.jsonl", "failed.json", "checkpoint.pt"
LOCK = ".training.lock"  # held (flock) by the process training the run
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"  # the one before, kept in case the newest is damaged
WANDB_ID = "wandb_id.txt"  # the W&B run id, so that a resumed run continues the same W&B run
RECORD = ".hydra"  # config.yaml and overrides.yaml of the invocation that trained the run (Hydra's layout)


def umask() -> int:
    """The process's file-mode mask, read without changing it (os.umask can only be read by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new file beside ``path`` (descriptor, name) with the mode a plain open() would give it: mkstemp's 0600
    would hide results from the collaborators the umask lets read them."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.fchmod(fd, 0o666 & ~umask())
    return fd, tmp


def _synced_temp(path: Path, write: Callable[[IO], None], binary: bool = False) -> str:
    """A temporary file beside ``path`` holding what ``write(f)`` wrote, flushed to disk."""
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        cause = error.__context__ or error.__cause__
        if not isinstance(error, OSError) and isinstance(cause, OSError) and cause.errno is not None:
            # torch.save reports a full disk as a RuntimeError about file positions: raise the disk's own error
            raise OSError(cause.errno, os.strerror(cause.errno), str(path)) from error
        raise
    return tmp


class RunLocked(Exception):
    """Another process holds the run's lock; the message names it."""


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir``'s lock while a process trains it; raises RunLocked when another process holds it (two
    sweeps started into one folder would otherwise both train the run, and write one W&B run id twice)."""
    import fcntl

    with open(run_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunLocked(handle.read().strip() or "another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            (run_dir / LOCK).unlink(missing_ok=True)  # while still held: a finished run's folder keeps no lock file


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Write a file through ``write(f)`` so that readers see the old or the new file, never a part of one."""
    tmp = _synced_temp(path, write, binary)
    try:
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # left only if the replace failed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def atomic_write_texts(files: dict[Path, str]) -> None:
    """Several files that belong together (a table's .md and .csv): each is written and synced in full before
    any replaces its old version, so a failure while writing leaves all the old files."""
    temps = []
    try:
        for path, text in files.items():
            temps.append((path, _synced_temp(path, lambda f, text=text: f.write(text))))
        for path, tmp in temps:
            os.replace(tmp, path)
    finally:
        for _, tmp in temps:
            Path(tmp).unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_curve(run_dir: Path) -> list[dict]:
    """Every evaluation of a run so far (empty when it has none yet)."""
    path = Path(run_dir) / CURVE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_curve(run_dir: Path, curve: list[dict]) -> None:
    atomic_write_text(run_dir / CURVE, "".join(json.dumps(row, sort_keys=True) + "\n" for row in curve))


def git_commit() -> str:
    """HEAD of the source tree, with '-dirty' if it has uncommitted changes; 'unknown' outside git."""
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "conf"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def wandb_group(cfg: dict, sweep_dir: Path | None) -> str:
    """The W&B group: the table for the runs in its own results folder (results/table1), or that folder's name for
    a table's own variant beside it (results/table1_100k, PaperTable.longer); "table1 (quick)" for a table trained
    into another folder, so that a quick or variant sweep never joins the real table's group after `wandb sync`;
    the task for ad-hoc runs."""
    group = str(cfg["group"])
    if sweep_dir is None or not group.startswith("table"):
        return group
    sweep_dir = Path(sweep_dir)
    if sweep_dir.parent.name == "results" and (sweep_dir.name == group or sweep_dir.name.startswith(group + "_")):
        return sweep_dir.name
    return f"{group} ({sweep_dir.parent.name or sweep_dir.name})"


def readable_run_id(config: dict) -> str:
    """A new W&B run id that reads well in LEET's list (``offline-run-<time>-<id>``): the row, the seed and 6 random
    hex digits, e.g. ``skip_gru_lam1e-4_ts0-5-s3-9f2c1a`` (W&B ids take letters, digits, '-' and '_')."""
    row = re.sub(r"[^A-Za-z0-9_-]+", "-", str(config.get("row") or "run")).strip("-")[:48] or "run"
    return f"{row}-s{config.get('seed', 0)}-{uuid.uuid4().hex[:6]}"


class Tracker:
    """Mirrors metrics to W&B. Use as a context manager: one W&B run per training run, marked failed if it raises."""

    def __init__(self, logger_cfg: dict, run_dir: Path, name: str, group: str, config: dict, resume_id: str | None = None,
                 wandb_root: Path | None = None, metric: str = "mse", higher_is_better: bool = False):
        self.cfg, self.run_dir, self.name, self.group, self.config = logger_cfg, run_dir, name, group, config
        self.run_id = resume_id
        # A sweep's runs write into one folder, <sweep>/wandb/, so that `wandb leet <sweep>/wandb` shows them together;
        # a single run keeps its own. Each run's id stays in its own folder (wandb_id.txt) for resuming.
        self.wandb_dir = Path(wandb_root) if wandb_root is not None else run_dir
        self.metric, self.higher_is_better = metric, higher_is_better
        self._context = self._run = None
        self.stopped = False  # set on Ctrl-C: the W&B run ends as finished and tagged "stopped", not as failed

    @property
    def enabled(self) -> bool:
        return self.cfg["backend"] == "wandb" and self.cfg["mode"] != "disabled"

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        import wandb  # imported lazily: slow, and not needed with logger=none

        mode = self.cfg["mode"]
        if mode == "online" and not os.environ.get("WANDB_API_KEY") and not Path.home().joinpath(".netrc").exists():
            raise RuntimeError("logger.mode=online needs a W&B login (WANDB_API_KEY or `wandb login`); "
                               "use logger.mode=offline and `wandb sync` later")
        self.run_id = self.run_id or readable_run_id(self.config)
        self.wandb_dir.mkdir(parents=True, exist_ok=True)
        self._context = wandb.init(
            project=self.cfg["project"], entity=self.cfg.get("entity"), group=self.group, name=self.name,
            tags=[self.group, str(self.config.get("row", "")), *self.cfg.get("tags", [])], config=flatten(self.config),
            dir=str(self.wandb_dir), mode=mode, id=self.run_id, resume="allow", job_type=str(self.config.get("row", "train")),
            settings=wandb.Settings(console="off", silent=True),
        )
        self._run = self._context.__enter__()
        # Step axis and summaries, so that the web dashboard's default charts compare runs sensibly after `wandb sync`
        best = "max" if self.higher_is_better else "min"
        for key, summary in ((f"val/{self.metric}", best), (f"test/{self.metric}", best),
                             ("val/update_fraction", "last"), ("val/updates", "last"), ("train/loss", "min")):
            self._run.define_metric(key, summary=summary)
        return self

    def log(self, metrics: dict, step: int) -> None:
        if self._run is not None:
            self._run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        if self._run is not None:
            self._run.summary.update(metrics)

    def __exit__(self, *exc) -> bool:
        if self._context is not None:
            if self.stopped:  # interrupted by the user: resumable, so not a failure
                self._run.tags = (*self._run.tags, "stopped")
                exc = (None, None, None)
            self._context.__exit__(*exc)
        return False
