"""Find run directories below some folders, read each one's state (records.py), and group them by config.

A file that cannot be read never stops the report: the run is listed as unreadable, with the reason.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..identity import group_settings, split_keys
from ..records import METRIC_KEYS, RunResult, find_runs, read_run


@dataclass
class Group:
    key: tuple
    root: int
    settings: dict | None  # flattened config minus plumbing; None: no readable config
    runs: list[RunResult]
    label: str = ""
    index: int = 0

    @property
    def rows(self) -> list[str]:
        return sorted({r.row for r in self.runs if r.row})

    @property
    def metric(self) -> str | None:
        found = Counter(r.metric for r in self.runs if r.metric)
        return found.most_common(1)[0][0] if found else None

    def by_status(self, status: str) -> list[RunResult]:
        return [r for r in self.runs if r.status == status]


# ------------------------------------------------------------------------------------------------ grouping
def _hashable(settings: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=repr)) for k, v in settings.items()))


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def short_keys(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key of ``keys`` ends with."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if not any(other != key and (other == short or other.endswith("." + short)) for other in keys):
                out[key] = short
                break
        else:
            out[key] = key
    return out


def _natural(text: str) -> list:
    return [(0, float(t), "") if re.fullmatch(r"\d+(\.\d+)?", t) else (1, 0.0, t)
            for t in re.split(r"(\d+(?:\.\d+)?)", text) if t]


_FIRST = ("folder", "task.name", "model.mode", "lam", "model.p_skip")


def _priority(key: str) -> tuple:
    """Order of config keys in labels: where from, what task, which model, then the rest."""
    if key in _FIRST:
        return (0, _FIRST.index(key), key)
    return (1, ["task", "model", "trainer"].index(key.split(".")[0]) if key.split(".")[0] in ("task", "model", "trainer")
            else 3, key)


def _sort_value(value: Any) -> tuple:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))


@dataclass
class Collection:
    roots: list[str]  # the folders as given
    runs: list[RunResult]
    groups: list[Group]
    varying: list[str]  # config keys (and "folder", given several) that differ between groups
    short: dict[str, str]  # varying key -> short name for labels and columns
    shared: dict[str, Any]  # settings every group shares (a model key: every group it acts on)
    by_row: bool  # groups are labelled by their row names
    expected_seeds: dict[int, list[int]]  # per root: the seeds every group should have
    budgets: dict[str, int] = field(default_factory=dict)  # row -> the steps its table asks for (a table's report)

    @property
    def metrics(self) -> list[str]:
        """The headline metrics its groups report, in METRIC_KEYS order (one row of plots each)."""
        return [m for m in METRIC_KEYS if any(g.metric == m for g in self.groups)]


def collect(folders: Iterable[str | os.PathLike], seeds: Iterable[int] | None = None) -> Collection:
    """Every run below ``folders``, grouped: runs whose configs are equal but for the seed and plumbing keys form
    a group (separately per folder given, when several are). ``seeds``: the seeds each group should have (by
    default every seed seen in that folder), for the "missing" column."""
    roots = [str(f) for f in folders]
    seen: set[Path] = set()
    runs: list[RunResult] = []
    for index, root in enumerate(roots):
        base = Path(root)
        for path in find_runs(base):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            rel = path.relative_to(base)
            display = root if str(rel) == "." else str(Path(root) / rel)
            runs.append(read_run(path, display, index))

    buckets: dict[tuple, Group] = {}
    several = len({r.root for r in runs}) > 1
    for run in runs:
        settings = group_settings(run.config) if isinstance(run.config, dict) else None
        root = run.root if several else 0
        key = (root, _hashable(settings) if settings is not None else None)
        group = buckets.setdefault(key, Group(key=key, root=run.root, settings=settings, runs=[]))
        group.runs.append(run)
    groups = list(buckets.values())

    known = [g for g in groups if g.settings is not None]
    varying, shared = split_keys([g.settings for g in known])
    if several:
        varying = ["folder", *varying]
    short = short_keys(varying)

    def values(g: Group) -> dict[str, Any]:
        out = dict(g.settings or {})
        if several:
            out["folder"] = roots[g.root]
        return out

    def value(g: Group, k: str) -> str:
        return json.dumps(values(g).get(k, None), default=repr)

    def distinguishing(subset: list[Group]) -> list[str]:
        """A few varying keys that tell the groups of ``subset`` apart: greedily the one that splits them most
        (ties: task, model, lam first), until every group differs or no key helps."""
        def parts(chosen: list[str]) -> int:
            return len({tuple(value(g, k) for k in chosen) for g in subset})

        candidates = sorted((k for k in varying if len({value(g, k) for g in subset}) > 1), key=_priority)
        chosen: list[str] = []
        while candidates and parts(chosen) < len(subset):
            best = max(candidates, key=lambda k: parts([*chosen, k]))  # the first of equals: priority order
            if parts([*chosen, best]) == parts(chosen):
                break
            chosen.append(best)
            candidates.remove(best)
        return sorted(chosen, key=_priority)

    def pairs(g: Group, keys: list[str]) -> str:
        return ", ".join(f"{short[k]}={format_value(values(g).get(k))}" for k in keys)

    single_rows = bool(known) and all(len(g.rows) == 1 for g in known)
    rows_unique = single_rows and len({g.rows[0] for g in known}) == len(known)
    by_row: dict[str, list[Group]] = {}
    for g in known:
        if single_rows:
            by_row.setdefault(g.rows[0], []).append(g)
    label_keys = distinguishing(known) if not single_rows else []
    for g in groups:
        if g.settings is None:
            g.label = f"{roots[g.root]}: no readable config" if several else "no readable config"
        elif single_rows:
            same = by_row[g.rows[0]]
            g.label = g.rows[0] if len(same) == 1 else f"{g.rows[0]} ({pairs(g, distinguishing(same))})"
        else:
            g.label = pairs(g, label_keys) or (" / ".join(g.rows) if g.rows else "all runs")
    labels = Counter(g.label for g in groups)
    for g in groups:  # never two groups with one label (e.g. equal row names in several folders)
        if labels[g.label] > 1:
            g.label = f"{g.label} [{' / '.join(g.rows) or roots[g.root]}]"

    def order(g: Group) -> tuple:
        if g.settings is None:
            return (g.root, 1, (), [])
        if rows_unique:
            return (g.root, 0, (), _natural(g.label))
        vals = values(g)
        return (g.root, 0, tuple(_sort_value(vals.get(k)) for k in sorted(varying, key=_priority)),
                _natural(g.label))

    groups.sort(key=order)
    for i, g in enumerate(groups):
        g.index = i
        g.runs.sort(key=lambda r: (r.seed if r.seed is not None else math.inf, r.display))

    expected: dict[int, list[int]] = {}
    for index in range(len(roots)):
        if seeds is not None:
            expected[index] = sorted(set(seeds))
        else:
            expected[index] = sorted({r.seed for r in runs if r.root == index and r.seed is not None})
    return Collection(roots, runs, groups, varying, short, shared, rows_unique, expected)
