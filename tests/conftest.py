import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

# ATen fixes its CPU code at its first operation: the test processes start on the code numerics=reproducible pins
# (skiprnn.backends.numerics.PINS), so that a test can run a table's runs (numerics: reproducible) in-process, as the
# CLI runs them in a fresh one. Tests of the fast mode switch back (the autouse fixture below restores it).
os.environ["ATEN_CPU_CAPABILITY"] = "avx2"

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


@pytest.fixture(autouse=True)
def _fast_numerics_after_each_test():
    """A test that switched this process to numerics=reproducible leaves the next one in the fast mode."""
    yield
    from skiprnn.backends import numerics

    if numerics.mode() != "fast":
        numerics.use("fast")


class Result:
    """What a command returned: as ``subprocess.CompletedProcess`` (returncode, stdout, stderr)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


ENTRY_POINTS = {"skiprnn.train": ("skiprnn.experiment.cli", "main"), "skiprnn.tables": ("skiprnn.experiment.tables", "main"),
                "skiprnn.compare": ("skiprnn.experiment.compare", "main")}


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run a command (`python -m skiprnn.train ...` by default) in this process, as the command line would, with W&B
    offline and all its files in tmp_path; ``subprocess=True`` starts a real process instead (exit codes of signals,
    what a fresh interpreter prints). In-process saves the 3-5 s of start-up each call would cost."""
    env = dict(WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb_home"),
               WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"),
               WANDB_DATA_DIR=str(tmp_path / "wandb_data"), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")

    def run(*args, module="skiprnn.train", check=True, subprocess_=False, **kwargs):
        if subprocess_ or kwargs.get("subprocess"):
            full = dict(os.environ, **env)
            full.pop("WANDB_API_KEY", None)
            proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full,
                                  capture_output=True, text=True, timeout=600)
        else:
            proc = _in_process(module, list(args), env, monkeypatch)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr}")
        return proc

    return run


def _in_process(module: str, args: list[str], env: dict, monkeypatch) -> Result:
    import contextlib
    import importlib
    import io

    import torch
    from hydra.core.global_hydra import GlobalHydra

    from skiprnn.experiment import sweep

    name, func = ENTRY_POINTS[module]
    main = getattr(importlib.import_module(name), func)
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    with monkeypatch.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        m.delenv("WANDB_API_KEY", raising=False)
        m.chdir(ROOT)
        m.setattr(sys, "argv", [module, *args])
        GlobalHydra.instance().clear()
        sweep._started.clear()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                returned = main(args) if module != "skiprnn.train" else main()
                code = returned or 0
            except SystemExit as stop:
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
                    code = 1
                else:
                    code = stop.code or 0
        GlobalHydra.instance().clear()
    torch.set_num_threads(threads)  # a run's `threads` must not slow the tests after it
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def compose_cfg():
    """Compose the project's config with overrides, as the CLI would (schema registered by skiprnn.train)."""
    import skiprnn.experiment.cli  # noqa: F401

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()
