"""One module per task, named as the task (``task.name``): its data, loss, metric (``TASK``, the class) and the
paper tables it reproduces (``TABLES``). The task names are the keys of ``config.TASK_SCHEMAS``: the one registry."""
from __future__ import annotations

import importlib
from dataclasses import fields
from types import ModuleType

from ..config import TASK_SCHEMAS
from ..errors import ConfigError
from .base import PaperTable, Task


def build_task(cfg, batch_size: int) -> Task:
    """The task named by ``cfg.name``, built from its config node."""
    from omegaconf import OmegaConf

    params = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) else dict(cfg)
    name = params.pop("name", None)
    if name not in TASK_SCHEMAS:
        raise ConfigError(f"task.name must be one of {', '.join(TASK_SCHEMAS)}; got {name!r}")
    allowed = [f.name for f in fields(TASK_SCHEMAS[name]) if f.name != "name"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:  # e.g. task=adding task.name=frequency: the adding task's keys reach the frequency task
        raise ConfigError(f"task.{unknown[0]} is not a key of the {name} task (task.name={name}); its keys are "
                          f"{', '.join(allowed)}. To switch tasks, choose the config group instead: task={name}")
    return task_module(name).TASK(batch_size=batch_size, **params)


def task_module(name: str) -> ModuleType:
    """The module of the task ``name`` (one of ``config.TASK_SCHEMAS``)."""
    return importlib.import_module(f"{__name__}.{name}")


def paper_tables() -> dict[str, PaperTable]:
    """Every paper table of every task, by name (table1, table2, ...)."""
    tables = {}
    for name in TASK_SCHEMAS:
        try:
            module = task_module(name)
        except ModuleNotFoundError as error:  # a missing optional dependency; a broken module still raises
            if error.name and error.name.startswith("skiprnn"):
                raise
            continue
        tables.update({t.name: t for t in getattr(module, "TABLES", ())})  # a task may reproduce no table
    return dict(sorted(tables.items()))
