"""The Makefile's reproduce command composes with every launcher it offers (dry run: nothing trains)."""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
              pytest.mark.slow]  # `make -n`: a real process, where the Makefile is the point


def sweep_overrides(*make_vars: str) -> list[str]:
    """The Hydra overrides `make reproduce-table1` would pass, read from `make -n` (the venv step is skipped)."""
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "reproduce-table1", *make_vars],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    command = out.replace("\\\n", " ").split("-m skiprnn.train -m", 1)[1].split("||", 1)[0]
    return shlex.split(command)


def compose_launcher(overrides: list[str]) -> str:
    """The launcher config these overrides compose (Hydra's compose API: what `--cfg hydra` would print)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import skiprnn.experiment.cli  # noqa: F401  (registers the schemas and the rows)

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_yaml(cfg.hydra.launcher)


def test_default_launcher_runs_jobs_in_parallel():
    overrides = sweep_overrides("SEEDS=0", "JOBS=3")
    assert "hydra/launcher=local_parallel" in overrides and "hydra.launcher.n_jobs=3" in overrides
    launcher = compose_launcher(overrides)
    assert "skiprnn_launcher.LocalParallelLauncher" in launcher and "n_jobs: 3" in launcher


def test_basic_launcher_gets_no_parallel_only_keys():
    overrides = sweep_overrides("SEEDS=0", "LAUNCHER=basic", "STEPS=10")
    assert not any(o.startswith("hydra.launcher.n_jobs") for o in overrides)
    assert "trainer.max_steps=10" in overrides
    assert "BasicLauncher" in compose_launcher(overrides)
