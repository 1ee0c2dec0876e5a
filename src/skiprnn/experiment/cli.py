"""The Hydra command line: ``python -m skiprnn.train task=adding model=skip_gru lam=1e-5 seed=3`` (``-m`` sweeps)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, check_device, check_values, register

CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
register()


def resolved(cfg: DictConfig) -> dict:
    """The job's config as plain data; raises on a missing mandatory value, naming the key."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    import torch

    from .tasks.mnist import MnistDataError
    from .trainer import train

    hydra_cfg = HydraConfig.get()
    try:
        plain = resolved(cfg)
        check_values(plain)
        check_device(plain["trainer"]["device"])
        if plain["threads"] > 0:
            torch.set_num_threads(plain["threads"])
        train(plain, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
    except (ConfigError, MnistDataError) as error:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweep goes on with its other jobs and reports this one's error at the end
        sys.exit(f"error: {error}")  # the message names the key and what to do; a traceback adds nothing


def main() -> None:
    if not Path(CONF_DIR).is_dir():  # a non-editable install: the configs stay in the clone
        sys.exit(f"error: skiprnn's configs are not at {CONF_DIR}. They live in the repository's conf/ folder, so "
                 "install skiprnn from a clone with `pip install -e .` (or `make venv`) and run it there.")
    _hydra_main()


if __name__ == "__main__":
    main()
