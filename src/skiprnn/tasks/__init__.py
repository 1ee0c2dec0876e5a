"""One module per task: its data, loss, metric and paper table."""
from __future__ import annotations

from dataclasses import fields

from ..config import TASK_SCHEMAS, ConfigError
from .base import Task


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
    if name == "adding":
        from .adding import AddingTask as cls
    elif name == "frequency":
        from .frequency import FrequencyTask as cls
    else:
        from .mnist import MnistTask as cls
    return cls(batch_size=batch_size, **params)
