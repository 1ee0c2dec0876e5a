"""Compare sweeps: every run below some folders, grouped by config, as one markdown table.

    python -m skiprnn.compare runs/frequency [results/table4 ...] [--out comparison.md]

Any folder of run directories works: an ad-hoc sweep (``runs/<task>/...``), a table's ``results/tableN``, or a
table trained elsewhere (``RESULTS=...``). Runs whose configs differ only in the seed or the budget form one group. The columns
are the config keys that differ between groups (and the folder, given several), then the finished runs with
their seeds, the task metric and the state updates as mean ± std over the seeds. Unfinished and failed runs are
listed in their group, never averaged, and a seed trained twice with the same config counts once.
"""
from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from . import tracking
from .identity import group_settings, split_keys
from .metrics import METRICS
from .numbers import mean_std
from .records import MARKERS, RunResult, find_runs, metric_key, read_run
from .tables import load_run


def _sort_key(value) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def collect(roots: list[Path]) -> tuple[dict, list[str], dict, list[str]]:
    """{(root, settings): [(run directory, RunResult)]}, the keys that vary between groups, the settings every run
    shares, and the runs that no group can hold (every record damaged, or a result without its config)."""
    groups: dict[tuple, list[tuple[Path, RunResult]]] = {}
    unreadable: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        for path in find_runs(root):
            if path.resolve() in seen:  # nested or repeated folders: each run once
                continue
            seen.add(path.resolve())
            record = read_run(path)
            if record.config is None:
                if record.problems:  # every record of the run is damaged: listed apart, the rest still shown
                    unreadable.append(f"{path}: unreadable: {'; '.join(record.problems)}")
                elif (path / tracking.METRICS).exists():  # a result without its config: named, never dropped
                    unreadable.append(f"{path}: {tracking.METRICS} holds no config record, and {tracking.RECORD}/ has none")
                continue  # a curve alone without any config record (not written by this trainer)
            settings = tuple(sorted(group_settings(record.config).items()))
            groups.setdefault((str(root), settings), []).append((path, load_run(path, record.seed or 0, record)))
    varying, shared = split_keys([dict(settings) for _, settings in groups])
    return groups, varying, shared, unreadable


def _counted(runs: list[tuple[Path, RunResult]]) -> tuple[list[RunResult], list[str]]:
    """The finished runs to average, one per seed, and a note for each other finished run of the same seed (the
    same config trained twice, e.g. into folders named ``lam=1e-4`` and ``lam=0.0001``): the longest-trained counts."""
    best: dict[int, RunResult] = {}
    for _, r in sorted(((p, r) for p, r in runs if r.status == "completed"), key=lambda pr: (-pr[1].step, pr[0])):
        best.setdefault(r.seed, r)
    extra = [f"seed {r.seed} also in {p} (not counted)" for p, r in runs if r.status == "completed" and best[r.seed] is not r]
    return sorted(best.values(), key=lambda r: r.seed), extra


def _steps(done: list[RunResult]) -> str:
    """The budgets of a group's finished runs, flagged when they differ (the means then mix them)."""
    steps = sorted({r.step for r in done})
    return ", ".join(f"{n:,}" for n in steps) + (" (mixed budgets)" if len(steps) > 1 else "") if steps else "–"


def _not_finished(runs: list[RunResult]) -> list[str]:
    """Each unfinished run with how far it got and its latest evaluation; each failed or unreadable one."""
    parts = []
    for r in sorted(runs, key=lambda r: r.seed):
        if r.status == "unfinished":
            key = metric_key(r.final)
            latest = f": {key.removeprefix('val_')} {r.final[key]:.4g}, {r.final['val_updates']:.1f} updates" if key else ""
            parts.append(f"seed {r.seed} at {r.step:,}/{r.max_steps:,}{latest}")
        elif r.status != "completed":
            parts.append(f"seed {r.seed} {r.status}")
    return parts


def build(roots: list[Path], argv: list[str]) -> str:
    groups, varying, shared, unreadable = collect(roots)
    several = len(roots) > 1
    header = (["sweep"] if several else []) + varying + ["finished (seeds)", "metric", "solved", "state updates",
                                                         "updates %", "steps", "not counted"]
    rows = []
    for (root, settings), runs in groups.items():
        s = dict(settings)
        done, duplicates = _counted(runs)
        key = metric_key(done[0].final) if done else None
        fmt = METRICS[key].fmt if key else ""
        metric = f"{key.removeprefix('val_')} {mean_std([r.final[key] for r in done], fmt)}" if key else "–"
        solved = f"{sum(bool(r.final.get('val_solved')) for r in done)}/{len(done)}" if done else "–"
        cells = ([root] if several else []) + [str(s.get(k, "–")) for k in varying] + [
            f"{len(done)}/{len(runs) - len(duplicates)} ({', '.join(str(r.seed) for r in done) or 'none'})", metric, solved,
            mean_std([r.final["val_updates"] for r in done], ".1f"),
            mean_std([r.final["val_update_fraction"] for r in done], ".1f", 100, "%"),
            _steps(done),
            "; ".join(_not_finished([r for _, r in runs]) + duplicates) or "–"]
        rows.append((([_sort_key(root)] if several else []) + [_sort_key(s.get(k, "")) for k in varying], cells))
    rows.sort(key=lambda row: row[0])
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Comparison: {', '.join(str(r) for r in roots)}", "",
             f"- **Aggregated** {now} by `python -m skiprnn.compare {' '.join(argv)}`; "
             f"{sum(len(r) for r in groups.values())} runs in {len(groups)} groups (runs that differ only in the seed or the budget).",
             "- Mean ± population std over the finished seeds of each run's final evaluation (validation); "
             "one run shows its value alone.",
             "- **Shared by every run (a model key by every run it acts on):** " + ", ".join(f"`{k}={v}`" for k, v in shared.items()), "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in rows]
    if unreadable:
        lines += ["", "**Unreadable runs** (not in any group; fix or remove the files named, or retrain with force=true):", ""]
        lines += [f"- {entry}" for entry in unreadable]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m skiprnn.compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("folders", nargs="+", type=Path, help="folders holding run directories (searched recursively)")
    parser.add_argument("--out", type=Path, help="write the table to this file as well (markdown)")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
        if not find_runs(folder):
            parser.error(f"no run directories below {folder} (none holds {', '.join(MARKERS)})")
    text = build(args.folders, argv)
    print(text, end="")
    if args.out:
        tracking.atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
