"""Which config keys identify a run: the one declaration that run folders, the resume check, ``compare`` and
``tables`` all read. A key is named with its dots (``trainer.device``); a group name covers its keys (``logger``)."""
from __future__ import annotations

import json
from typing import Any

# How and where a run executes: never part of what it is. ``numerics`` changes rounding, not the maths: every record
# and table names it, and a run never resumes in another mode (the trainer refuses).
EXECUTION = ("threads", "numerics", "force", "group", "logger", "trainer.progress", "trainer.device", "trainer.halt_after_steps",
             "task.data_root", "task.cache_dir", "task.download", "hydra.launcher")
# How long it trains: a finished run of a larger budget serves a smaller one, and a run resumes with a larger one.
BUDGET = ("trainer.max_steps", "trainer.max_epochs")
# Where the data live: a run's record keeps them as the config wrote them (``${oc.env:SKIPRNN_DATA,data}/Charades``),
# not as they resolved on the machine that trained it, so that committed records name no local folder. A path given
# on the command line is recorded as given (and is among the recorded overrides anyway).
DATA_LOCATION = ("task.data_root", "task.cache_dir")
# Keys removed from the schema that older records still hold (MNIST's no-op task.report).
REMOVED = ("task.report",)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{"model": {"mode": "gru"}} -> {"model.mode": "gru"}, the dotted keys every tool names; lists become tuples
    (hashable, so that settings can key a group)."""
    out: dict[str, Any] = {}
    if not isinstance(cfg, dict):
        return out
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def matches(key: str, names: tuple[str, ...]) -> bool:
    """Whether the dotted ``key`` is one of ``names`` or lies inside one of them."""
    return any(key == n or key.startswith(n + ".") for n in names)


def identifies_run(key: str) -> bool:
    """Part of a run's fingerprint (the resume check) and of its folder name: not execution, budget or removed."""
    return not matches(key, EXECUTION + BUDGET + REMOVED)


# What a group of runs (compare, the report) averages over or ignores: the seed, the row name (it only repeats the
# config), Hydra's own keys, how a run executes, and its budget (a group lists its budgets, flagged when they differ).
NOT_GROUPED = ("seed", "row", "hydra", *EXECUTION, *BUDGET, *REMOVED)


def group_settings(cfg: Any) -> dict[str, Any]:
    """What a run's group is made of: its config as trained (``as_trained``), dotted, without ``NOT_GROUPED``."""
    return {k: v for k, v in flatten(as_trained(cfg)).items() if not matches(k, NOT_GROUPED)}


def not_in_run_name() -> list[str]:
    """Hydra's ``override_dirname.exclude_keys`` (conf/config.yaml reads it): overrides that do not name a folder."""
    # experiment=<table>/<row>: the row already names the folder (runs/<task>/<row>/...)
    return [*EXECUTION, "logger.mode", "hydra.launcher.n_jobs", *BUDGET, "experiment"]


def run_leaf(override_dirname: str) -> str:
    """The last part of a run's folder (conf/config.yaml): its identifying overrides, or ``defaults`` where it has
    none, so that a run with no overrides never holds the folders of the runs with some."""
    return override_dirname or "defaults"


def recorded_config(resolved: dict, unresolved: dict) -> dict:
    """The config a run's record keeps: ``resolved`` with the ``DATA_LOCATION`` keys taken from ``unresolved`` (the
    same config with its interpolations left as written)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in resolved.items()}
    for key in DATA_LOCATION:
        group, _, name = key.partition(".")
        written = (unresolved.get(group) or {}).get(name, None) if isinstance(unresolved.get(group), dict) else None
        if isinstance(out.get(group), dict) and name in out[group] and written is not None:
            out[group][name] = written
    return out


# Model keys added after runs were recorded, with the behaviour of the code before them: a record without the key
# was trained that way. The current defaults live in skiprnn.experiment.config.ModelConfig.
LEGACY_MODEL_KEYS = {"original_stack_bug": False, "gate_init": "torch", "p_skip_keep_first": True}


# Model keys that act on some models only, and where: as_trained leaves them out elsewhere, so their absence is not a
# difference between configs.
ACTS_ONLY_WHERE = {"gate_init": lambda model: str(model.get("mode", "")).startswith("skip_"),
                   "p_skip_keep_first": lambda model: bool(model.get("p_skip"))}
ONLY_WHERE_THEY_ACT = tuple(f"model.{key}" for key in ACTS_ONLY_WHERE)


def varies(key: str, settings: list[dict]) -> bool:
    """Whether ``key`` (dotted) takes more than one value across flat configs; a config without the key counts as a
    value of its own, except for the ``ONLY_WHERE_THEY_ACT`` keys."""
    absent = key in ONLY_WHERE_THEY_ACT
    values = {json.dumps(s.get(key, "<absent>"), sort_keys=True, default=repr) for s in settings if key in s or not absent}
    return len(values) > 1


def split_keys(settings: list[dict]) -> tuple[list[str], dict]:
    """The keys that vary across flat configs (``varies``), and the values of the others: shared by every config
    that has the key (a key that acts only on some models, e.g. model.gate_init, is absent from the rest)."""
    keys = sorted({k for s in settings for k in s})
    varying = [k for k in keys if varies(k, settings)]
    return varying, {k: next(s[k] for s in settings if k in s) for k in keys if k not in varying}


def as_trained(cfg: dict) -> dict:
    """``cfg`` with its model keys as they acted: a key that a record made before it existed lacks takes the value
    that run was trained with (``LEGACY_MODEL_KEYS``), and keys that do not act on this model are left out (the
    gate's initialisation of a plain LSTM, the random-skip options where p_skip = 0). The fingerprint, ``compare``
    and the report read configs through it, so two runs of one model never differ by a key that did nothing."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        return cfg
    model = {**LEGACY_MODEL_KEYS, **cfg["model"]}
    return {**cfg, "model": {k: v for k, v in model.items() if k not in ACTS_ONLY_WHERE or ACTS_ONLY_WHERE[k](model)}}
