"""One module per task: its data, loss, metric and paper table."""
from __future__ import annotations

from .base import Task


def build_task(cfg, batch_size: int) -> Task:
    """The task named by ``cfg.name``, built from its config node."""
    from omegaconf import OmegaConf

    params = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if OmegaConf.is_config(cfg) else dict(cfg)
    name = params.pop("name", None)
    if name == "adding":
        from .adding import AddingTask as cls
    elif name == "frequency":
        from .frequency import FrequencyTask as cls
    elif name == "mnist":
        from .mnist import MnistTask as cls
    else:
        from ..config import ConfigError

        raise ConfigError(f"task.name must be one of adding, frequency, mnist; got {name!r}")
    return cls(batch_size=batch_size, **params)
