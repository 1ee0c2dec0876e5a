"""Which config keys identify a run: the one declaration that run folders, the resume check, ``compare`` and
``tables`` all read. A key is named with its dots (``trainer.device``); a group name covers its keys (``logger``)."""
from __future__ import annotations

# How and where a run executes: never part of what it is.
EXECUTION = ("threads", "force", "group", "logger", "trainer.progress", "trainer.device", "trainer.halt_after_steps",
             "task.data_root", "task.cache_dir", "task.download", "hydra.launcher")
# How long it trains: a finished run of a larger budget serves a smaller one, and a run resumes with a larger one.
BUDGET = ("trainer.max_steps", "trainer.max_epochs")
# Where the data live: a run's record keeps them as the config wrote them (``${oc.env:SKIPRNN_DATA,data}/Charades``),
# not as they resolved on the machine that trained it, so that committed records name no local folder. A path given
# on the command line is recorded as given (and is among the recorded overrides anyway).
DATA_LOCATION = ("task.data_root", "task.cache_dir")
# Keys removed from the schema that older records still hold (MNIST's no-op task.report).
REMOVED = ("task.report",)


def matches(key: str, names: tuple[str, ...]) -> bool:
    """Whether the dotted ``key`` is one of ``names`` or lies inside one of them."""
    return any(key == n or key.startswith(n + ".") for n in names)


def identifies_run(key: str) -> bool:
    """Part of a run's fingerprint (the resume check) and of its folder name: not execution, budget or removed."""
    return not matches(key, EXECUTION + BUDGET + REMOVED)


def distinguishes_group(key: str) -> bool:
    """Part of what ``compare`` groups runs by: the fingerprint's keys and the budget, except the seed and the row
    name (seeds are averaged within a group; the row name only repeats the config)."""
    return key not in ("seed", "row") and not matches(key, EXECUTION + REMOVED)


def not_in_run_name() -> list[str]:
    """Hydra's ``override_dirname.exclude_keys`` (conf/config.yaml reads it): overrides that do not name a folder."""
    return [*EXECUTION, "logger.mode", "hydra.launcher.n_jobs", *BUDGET]


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
