"""The Hydra command line: ``python -m skiprnn.train task=adding model=skip_gru lam=1e-5 seed=3`` (``-m`` sweeps)."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import rows, sweep
from .config import check_device, check_known_keys, check_values, register
from .errors import Terminated, UserError, storage_message
from .identity import recorded_config

CONF_DIR = str(Path(__file__).resolve().parents[3] / "conf")
register()  # the config schemas
rows.register()  # experiment=<table>/<row> and ${skiprnn_rows:<table>}, from the tasks' paper tables


def resolved(cfg: DictConfig) -> dict:
    """The job's config as plain data; raises on a missing mandatory value, naming the key."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True, enum_to_str=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from ..backends import numerics
    from .trainer import record_failure, train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    try:
        try:
            plain = resolved(cfg)
            check_known_keys(plain)
            check_values(plain)
            check_device(plain["trainer"]["device"])
        except UserError as error:  # the job never started: leave a record, so that tables and compare name it
            record_failure(run_dir, error, overrides, OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
            raise
        try:
            numerics.use(plain["numerics"], plain["threads"])
        except numerics.NumericsError as error:
            raise UserError(str(error)) from error
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        record = recorded_config(plain, OmegaConf.to_container(cfg, resolve=False, enum_to_str=True))
        train(plain, run_dir, overrides, Path(hydra_cfg.sweep.dir) if multirun else None, record)
    except (UserError, OSError) as error:
        message = str(error) if isinstance(error, UserError) else storage_message(error)
        if message is None:
            raise
        if hydra_cfg.mode == RunMode.MULTIRUN:
            sweep.record(hydra_cfg, error)  # the sweep goes on; sweep.report() lists every failure at its end
            return
        sys.exit(f"error: {message}")  # the message names the key or file and what to do: no traceback


def cross_task_option(args: list[str]) -> str | None:
    """A sweep over several tasks cannot take one task's own option (`task=adding,mnist task.data_root=...`):
    Hydra would reject it for the tasks without that key, with a message that does not say how to write the sweep."""
    tasks = next((a.split("=", 1)[1].split(",") for a in args if a.startswith("task=")), [])
    options = [a.split("=", 1)[0] for a in args if a.lstrip("+~").startswith("task.")]
    if len(tasks) < 2 or not options:
        return None
    return (f"{', '.join(options)} is an option of one task, but this sweep runs task={','.join(tasks)}. Give data "
            "locations through the environment (SKIPRNN_DATA=/path python -m skiprnn.train -m ...), or sweep each "
            f"task on its own: " + "; ".join(f"python -m skiprnn.train -m task={t} ..." for t in tasks)
            + " (or one experiment file per task in conf/experiment/, swept with experiment=a,b)")


def launch_problem(args: list[str]) -> str | None:
    """Where the runs would go or how they would be launched cannot work here: said before Hydra starts."""
    import shutil

    from .config import ROW_NAME, ROW_RULE

    for arg in args:
        key, _, value = arg.partition("=")
        if key == "row" and not all(ROW_NAME.fullmatch(name) for name in value.split(",")):
            return f"row={value} is not allowed: a row must be {ROW_RULE}, so that its run stays in the sweep's folder"
        if key == "hydra/launcher" and value == "slurm" and shutil.which("sbatch") is None:
            return ("hydra/launcher=slurm needs a Slurm cluster, and this machine has none (no `sbatch`): start the "
                    "sweep on the cluster's login node, or try the same path here with hydra/launcher=local_jobs")
        if key == "hydra.launcher.n_jobs" and not (value.isdigit() and int(value) >= 1):
            return f"hydra.launcher.n_jobs={value} is not allowed: it must be a whole number >= 1 (runs at once)"
        if key in ("hydra.sweep.dir", "hydra.run.dir") and Path(value.strip("\"'")).is_file():
            return f"{key}={value} is a file: give a folder (new or existing) for the runs"
    return None


def main() -> None:
    if not Path(CONF_DIR).is_dir():  # a non-editable install: the configs stay in the clone
        sys.exit(f"error: skiprnn's configs are not at {CONF_DIR}. They live in the repository's conf/ folder, so "
                 "install skiprnn from a clone with `pip install -e .` (or `make venv`) and run it there.")
    problem = cross_task_option(sys.argv[1:]) or rows.unknown_row(sys.argv[1:]) or launch_problem(sys.argv[1:])
    if problem:
        sys.exit(f"error: {problem}")
    code: int | str | None = 0
    try:
        _hydra_main()
    except SystemExit as stop:
        code = stop.code
    except KeyboardInterrupt as stop:  # the trainer has said where it stopped and how to resume
        code = 143 if isinstance(stop, Terminated) else 130
    finally:
        failed = sweep.report()
    if isinstance(code, str):
        sys.exit(code)
    sys.exit(code or (1 if failed else 0))


if __name__ == "__main__":
    main()
