import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture
def cli(tmp_path):
    """Run `python -m skiprnn.train ...` in a subprocess with W&B offline and all its files in tmp_path."""
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb_home"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"),
               WANDB_DATA_DIR=str(tmp_path / "wandb_data"), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    env.pop("WANDB_API_KEY", None)

    def run(*overrides, module="skiprnn.train", check=True):
        proc = subprocess.run([sys.executable, "-m", module, *overrides], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def compose_cfg():
    """Compose the project's config with overrides, as the CLI would (schema registered by skiprnn.train)."""
    import skiprnn.experiment.cli  # noqa: F401

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
