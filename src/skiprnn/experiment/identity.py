"""Which config keys identify a run: the one declaration that run folders, the resume check, ``compare`` and
``tables`` all read. A key is named with its dots (``trainer.device``); a group name covers its keys (``logger``)."""
from __future__ import annotations

# How and where a run executes: never part of what it is.
EXECUTION = ("threads", "force", "group", "logger", "trainer.progress", "trainer.device", "trainer.halt_after_steps",
             "task.data_root", "task.download", "hydra.launcher")
# How long it trains: a finished run of a larger budget serves a smaller one, and a run resumes with a larger one.
BUDGET = ("trainer.max_steps", "trainer.max_epochs")
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
