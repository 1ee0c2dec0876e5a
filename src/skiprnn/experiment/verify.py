"""``python -m skiprnn.verify RUN_DIR [--steps N]``: retrain a recorded run from step 0 on this machine, in the run's
numerics mode, and compare every evaluation of its ``curve.jsonl`` up to step N bit for bit.

A run made with ``numerics=reproducible`` must give the same bits on any x86-64 CPU with AVX2 and FMA, at any thread
count. One made with ``numerics=fast`` gives them only on the machine and at the thread count that made it. The
retrained run goes to a scratch folder, removed afterwards (``--keep`` keeps it): the run itself is never touched.
Exit status: 0 identical, 1 a difference, 2 the run cannot be verified (the message says why).
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

from . import tracking
from .errors import UserError

# Values that measure the machine, not the maths.
TIMING = ("seconds_per_step",)
DEFAULT_STEPS = 600


def load_record(run_dir: Path) -> tuple[dict, list[dict]]:
    """The run's recorded config (metrics.json's, else .hydra/config.yaml's for an unfinished run) and its curve."""
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run folder: give the folder that holds a run's curve.jsonl")
    metrics_path, record_path = run_dir / tracking.METRICS, run_dir / tracking.RECORD / "config.yaml"
    try:
        if metrics_path.exists():
            cfg = tracking.read_json(metrics_path)["config"]
        elif record_path.exists():
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(OmegaConf.load(record_path))
        else:
            raise UserError(f"{run_dir} holds no record of its config (metrics.json or {tracking.RECORD}/config.yaml)")
        curve = tracking.read_curve(run_dir)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{run_dir}: its record cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("trainer"), dict):
        raise UserError(f"{run_dir}: its recorded config has no trainer section")
    if not curve:
        raise UserError(f"{run_dir} has no evaluations yet ({tracking.CURVE} is empty or missing)")
    return cfg, curve


def resolve(cfg: dict) -> dict:
    """The recorded config with its interpolations resolved on this machine (data locations are recorded as written,
    e.g. ``${oc.env:SKIPRNN_DATA,data}/MNIST``)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)


def first_difference(recorded: list[dict], retrained: list[dict]) -> tuple[int, str, object, object] | None:
    """(step, key, recorded value, retrained value) of the first value that differs, or None."""
    by_step = {row["step"]: row for row in retrained}
    for row in recorded:
        other = by_step.get(row["step"])
        if other is None:
            return row["step"], "(the evaluation itself)", "present", "missing"
        for key in sorted(set(row) | set(other)):
            if key in TIMING:
                continue
            a, b = row.get(key, "<absent>"), other.get(key, "<absent>")
            same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
            if not same:
                return row["step"], key, a, b
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skiprnn.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run folder (results/<table>/<row>/seed=<k>)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"retrain this many steps (default: {DEFAULT_STEPS}, or the run's length if shorter)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder of the retrained run")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be an integer >= 1")
    try:
        cfg, curve = load_record(args.run_dir)
        steps = args.steps or min(DEFAULT_STEPS, curve[-1]["step"])
        compared = [row for row in curve if row["step"] <= steps]
        if not compared:
            raise UserError(f"--steps {steps} ends before the run's first evaluation (step {curve[0]['step']}): "
                            f"give --steps {curve[0]['step']} or more")
        return _verify(args.run_dir, cfg, compared, args.keep)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _verify(run_dir: Path, cfg: dict, compared: list[dict], keep: bool) -> int:
    from ..backends import numerics

    mode = cfg.get("numerics", "fast")  # a record made before the mode existed ran the fast arithmetic
    threads = cfg.get("threads", 1)
    try:
        numerics.use(mode, threads)  # before the trainer's first tensor operation
    except numerics.NumericsError as error:
        raise UserError(str(error)) from None
    from .trainer import train

    last = compared[-1]["step"]
    run = resolve(cfg)
    run["trainer"] = {**run["trainer"], "halt_after_steps": last, "progress": False}
    run["logger"] = {**run.get("logger", {}), "backend": "none", "mode": "disabled"}
    run["force"] = False
    scratch = Path(tempfile.mkdtemp(prefix="skiprnn-verify-"))
    print(f"retraining {run_dir} from step 0 to step {last:,} in {scratch} (numerics={mode}, {threads} thread(s))",
          flush=True)
    try:
        train(run, scratch / "run")
        retrained = tracking.read_curve(scratch / "run")
    finally:
        if keep:
            print(f"the retrained run is kept in {scratch / 'run'}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    where = numerics.environment()
    if mode == "reproducible":
        scope = "numerics=reproducible: the same bits are expected on any x86-64 CPU with AVX2 and FMA, at any thread count"
    else:
        scope = ("numerics=fast: bit identity holds only on the machine and thread count that made the run "
                 f"(this machine: {where['cpu']}, {where['threads']['torch']} thread(s))")
    diff = first_difference(compared, retrained)
    if diff is None:
        values = len([k for k in compared[-1] if k not in TIMING and k != "step"])
        print(f"identical through step {last:,}: {len(compared)} evaluation(s), {values} values each, bit for bit "
              f"({scope})")
        return 0
    step, key, old, new = diff
    print(f"differs at step {step:,}: {key} recorded {old!r}, retrained {new!r} ({scope})")
    return 1
