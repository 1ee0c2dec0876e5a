"""The config schema. Hydra validates every composed config against these dataclasses, so a wrong key,
a wrong type (``lam=abc``) or an unknown choice fails at startup and names the key."""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from omegaconf import MISSING

from .errors import ConfigError


class Choice(Enum):
    """A config choice whose member prints as its plain value where interpolated into a string (the run name)."""

    def __str__(self) -> str:
        return self.value


class Mode(Choice):
    lstm = "lstm"
    gru = "gru"
    skip_lstm = "skip_lstm"
    skip_gru = "skip_gru"


class GateInit(Choice):
    glorot = "glorot"
    torch = "torch"


class Numerics(Choice):
    reproducible = "reproducible"
    fast = "fast"


class LoggerBackend(Enum):
    wandb = "wandb"
    none = "none"


class WandbMode(Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class FrequencyVariant(Enum):
    paper = "paper"
    original = "original"


class Normalize(Choice):
    none = "none"
    l2 = "l2"
    standardize = "standardize"


# "raise" is a Python keyword, so this enum is made by the functional API (OmegaConf matches members by name)
OnError = Choice("OnError", {"raise": "raise", "skip": "skip"})


class CharadesSplit(Choice):
    test = "test"
    train = "train"


class TargetRule(Choice):
    inclusive = "inclusive"
    strict = "strict"


class LossReduction(Choice):
    sum_classes = "sum_classes"
    mean = "mean"


class PointMapping(Choice):
    causal = "causal"
    nearest = "nearest"


# The defaults of every key, and what each means, live here and only here: a conf/<group>/<option>.yaml file holds
# only what makes that option (model/lstm.yaml: mode: lstm). `python -m skiprnn.train --cfg job` prints them all.
_DATA = "${oc.env:SKIPRNN_DATA,data}"  # SKIPRNN_DATA=<dir>, else ./data; kept unresolved in run records (identity.py)


@dataclass
class ModelConfig:
    mode: Mode = Mode.skip_lstm
    hidden_size: int = 110  # the paper's 110 units (Tables 1, 2 and 4); Table 3's rows set 256
    num_layers: int = 1
    p_skip: float = 0.0  # the random-skip baseline: each step skipped with this probability (plain cells only)
    original_stack_bug: bool = False  # skip_gru stacks: reproduce the original code's upper-layer candidate input
    gate_init: GateInit = GateInit.glorot  # W_p: the original code's Glorot-uniform, or torch's nn.Linear default
    p_skip_keep_first: bool = False  # true: the random-skip baseline always keeps step 1 (skiprnn before 2026-12)


@dataclass
class TrainerConfig:  # the paper's settings for every task: Adam lr 1e-4, batch 256, global-norm clipping at 1
    max_steps: int = 50_000
    max_epochs: int | None = None  # for data sets with epochs: overrides max_steps, evaluates every epoch
    batch_size: int = 256
    lr: float = 1e-4
    grad_clip: float = 1.0  # global-norm clipping over all parameters, as the original code
    eval_every: int = 300
    stable_window: int = 5  # the table also reports metrics averaged over this many last evaluations
    device: str = "cpu"
    halt_after_steps: int | None = None  # stop at the first evaluation after N more steps (time-sliced jobs)
    progress: bool = True


@dataclass
class LoggerConfig:  # Weights & Biases, offline by default: files in <run dir>/wandb; upload later with `wandb sync`
    backend: LoggerBackend = LoggerBackend.wandb
    mode: WandbMode = WandbMode.offline
    project: str = "skiprnn"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class AddingTaskConfig:  # the adding problem (paper §4.1, Table 1): MSE on the sum of the two marked values
    name: str = "adding"
    seq_len: int = 50
    eval_batches: int = 15  # 15 fresh batches of 256 per evaluation, as the original
    solved_mse: float = 1.0 / 600  # two orders of magnitude below Var(target) = 1/6


@dataclass
class FrequencyTaskConfig:  # frequency discrimination (paper Appendix A.1, Table 4): periods in the band (5, 6) ms
    name: str = "frequency"
    sampling_period: float = 1.0  # ms: 1.0 -> 100 steps, 0.5 -> 200 steps
    duration: float = 100.0  # ms
    # original: the released code's generator (cos, φ ~ U(0, T) rad, distractors [0, 5] ∪ (6, 100]);
    # paper: Appendix A.1
    variant: FrequencyVariant = FrequencyVariant.original
    eval_batches: int = 15  # 15 fresh batches of 256 per evaluation, as the original
    solved_accuracy: float = 0.99  # solved: accuracy over 99% on held-out data


@dataclass
class MnistTaskConfig:  # sequential MNIST (paper §4.2, Table 2): 784 steps of one pixel; 55k train / 5k val / 10k test
    name: str = "mnist"
    data_root: str = _DATA  # torchvision's layout: <data_root>/MNIST/raw/*-ubyte
    download: bool = True  # fetch the files when missing (a copy on disk: task.download=false)
    validation_size: int = 5000  # the FIRST 5,000 training images, as input_data.read_data_sets(validation_size=5000)
    train_limit: int | None = None  # quick runs only: train on the first N of the 55k images per epoch
    solved_accuracy: float = 0.9  # the val_solved flag only; Table 2 has no "task solved" column


@dataclass
class CharadesTaskConfig:  # Charades action localisation (paper §4.3, Table 3); conf/task/charades.yaml: the data
    name: str = "charades"
    # Where the official files are (or <data_root>/Charades/, as Charades.zip extracts). SKIPRNN_DATA=<dir> ->
    # <dir>/Charades.
    data_root: str = _DATA + "/Charades"
    # Where the float16 cache goes (<cache_dir>/<split>/<ID>.npy + manifest.json, about 14.4 GB for the real set),
    # built on first use, resumable; None: <data_root>/skiprnn_cache. To build it beforehand with several processes:
    # python -m skiprnn.experiment.tasks.charades.cache <data_root> <cache_dir> --workers 8
    cache_dir: str | None = None
    # F, the evaluation points per video of the official metric, t_j = ((j-1)/F)·length: 100 as the paper, 25 official.
    num_points: int = 100
    # Feature normalisation (the paper states none): standardize = per-dimension z-score with the mean and std of all
    # training frames (computed once, kept beside the cache; a constant dimension maps to 0); l2 = each frame scaled
    # to unit L2 norm; none = raw fc7. Measured on a synthetic set (synth.py --videos 160 --dim 32 --active-classes 20
    # --classes-per-video 1-2 --min-length 3 --max-length 10; one GRU layer of 64 units, batch 16, lr 1e-2, 150
    # steps): val mAP 14.6% standardize, 8.6% none, 5.5% l2 (chance 3.7%).
    normalize: Normalize = Normalize.standardize
    # A video whose files are bad (missing or empty feature folder, wrong value count, malformed CSV row): raise =
    # stop and name the file and line; skip = leave it out of training, list it, and score its evaluation points as
    # missing (-inf), as the official evaluator does (a CSV row with a bad action keeps its sound actions in the
    # ground truth; a row without a usable length has no points to score, in the official script too).
    on_error: OnError = OnError["raise"]
    # The CSV scored at every evaluation: test = Charades_v1_test.csv, the set the paper calls "validation".
    eval_split: CharadesSplit = CharadesSplit.test
    # Videos per forward pass at evaluation (padded to the longest; shortest first): memory only, not the results.
    eval_batch_size: int = 64
    # Per-frame training targets: inclusive (start <= t <= end, the evaluator's rule) or strict (the starter code's).
    targets: TargetRule = TargetRule.inclusive
    # The per-frame binary cross-entropy (the paper does not say how it is reduced): sum_classes = summed over the 157
    # classes, averaged over the real frames (as the softmax cross-entropy of the other tasks, summed over its
    # classes); mean = averaged over the classes too, which makes the task loss 157x smaller against the budget λ·Σu.
    loss_reduction: LossReduction = LossReduction.sum_classes
    # Which frame's output scores evaluation point t: causal = the latest frame at or before t; nearest = the closest.
    point_mapping: PointMapping = PointMapping.causal


@dataclass
class Config:
    task: Any = MISSING
    model: ModelConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    lam: float = 0.0  # budget loss weight λ: the cost of each state update
    seed: int = 0
    row: str = "${model.mode}"  # the run's name: a table row, or the model's mode
    group: str = "${task.name}"  # W&B group: the table or the task
    # torch threads per run: these models are small, so parallel runs beat parallel threads; 0 = torch's default
    threads: int = 1
    # reproducible: the same bits on every x86-64 CPU with AVX2 and FMA, at any thread count (the default: it cost at
    # most +23% of a training step in results/bench.md); fast: this CPU's fastest code, whose results hold for one
    # machine and thread count. skiprnn/backends/numerics.py
    numerics: Numerics = Numerics.reproducible
    force: bool = False  # true: discard a finished result in the run directory and train again


TASK_SCHEMAS = {"adding": AddingTaskConfig, "frequency": FrequencyTaskConfig, "mnist": MnistTaskConfig,
                "charades": CharadesTaskConfig}


def register() -> None:
    # Schemas live in their own group, so that `--help` lists only real choices under task/, model/, ...;
    # each YAML file pulls its schema in with `- /schema/<name>@_here_` in its defaults list.
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from .identity import not_in_run_name, run_leaf

    # conf/config.yaml's override_dirname.exclude_keys: the keys that do not identify a run, declared once
    OmegaConf.register_new_resolver("skiprnn_not_in_run_name", not_in_run_name, replace=True)
    OmegaConf.register_new_resolver("skiprnn_run_leaf", run_leaf, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema", name="model", node=ModelConfig)
    cs.store(group="schema", name="trainer", node=TrainerConfig)
    cs.store(group="schema", name="logger", node=LoggerConfig)
    for name, schema in TASK_SCHEMAS.items():
        cs.store(group="schema", name=f"task_{name}", node=schema)


# key -> (test, what is allowed)
# A row names one folder inside the sweep's: no separator, no leading dot (nor "." or "..")
ROW_NAME = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]*")
ROW_RULE = "a folder name of letters, digits and _ . + = - that does not start with '.' (no '/')"
_RULES = {
    "lam": (lambda v: 0 <= v < math.inf, "a finite number >= 0"),
    "threads": (lambda v: v >= 0, "an integer >= 0 (0 keeps torch's default)"),
    "row": (lambda v: ROW_NAME.fullmatch(v) is not None, ROW_RULE),
    "seed": (lambda v: 0 <= v < 2**41, "an integer in [0, 2^41) (it seeds torch's generators)"),
    "model.hidden_size": (lambda v: v >= 1, "an integer >= 1"),
    "model.num_layers": (lambda v: v >= 1, "an integer >= 1"),
    "model.p_skip": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "trainer.max_steps": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.max_epochs": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "trainer.batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.lr": (lambda v: 0 < v < math.inf, "a finite number > 0"),
    "trainer.grad_clip": (lambda v: 0 < v < math.inf, "a finite number > 0"),
    "trainer.eval_every": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.stable_window": (lambda v: v >= 1, "an integer >= 1"),
    "trainer.halt_after_steps": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "trainer.device": (lambda v: re.fullmatch(r"cpu|cuda(:\d+)?|mps", v) is not None, "cpu, cuda, cuda:<index> or mps"),
    "task.seq_len": (lambda v: v >= 10, "an integer >= 10 (the markers need 10% and 50% of it)"),
    "task.eval_batches": (lambda v: 1 <= v <= 1000, "an integer in [1, 1000] (each evaluation draws from its own block of 1000 batch seeds)"),
    "task.sampling_period": (lambda v: 0 < v < math.inf, "a finite number of milliseconds > 0"),
    "task.validation_size": (lambda v: v >= 1, "an integer >= 1"),
    "task.duration": (lambda v: 0 < v < math.inf, "a finite number of milliseconds > 0"),
    "task.solved_accuracy": (lambda v: 0 < v < 1, "a fraction in (0, 1) (solved means accuracy above it)"),
    "task.solved_mse": (lambda v: 0 < v < math.inf, "a finite number > 0"),
    "task.train_limit": (lambda v: v is None or v >= 1, "null or an integer >= 1"),
    "task.num_points": (lambda v: v >= 1, "an integer >= 1 (100 as the paper, 25 as the official evaluator)"),
    "task.eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
}


_GROUPS = {"model": ModelConfig, "trainer": TrainerConfig, "logger": LoggerConfig}


def check_known_keys(cfg: dict) -> None:
    """Every key is one of the schema's: ``+key=value`` adds keys past Hydra's struct check, so a typo such as
    ``+trainer.max_step=10`` would otherwise train with the key ignored. Names the key and the nearest valid ones."""
    allowed = {f.name: None for f in fields(Config)}
    task = TASK_SCHEMAS.get(str((cfg.get("task") or {}).get("name")))
    schemas = {**_GROUPS, **({"task": task} if task else {})}
    for key, value in cfg.items():
        if key not in allowed:
            _unknown(key, list(allowed))
        if key in schemas and isinstance(value, dict):
            names = [f.name for f in fields(schemas[key])]
            for sub in value:
                if sub not in names:
                    _unknown(f"{key}.{sub}", [f"{key}.{n}" for n in names])


def _unknown(key: str, valid: list[str]) -> None:
    near = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(near)}? " if near else ""
    raise ConfigError(f"{key} is not a config key: {hint}The keys are listed by `python -m skiprnn.train --cfg job`")


def check_values(cfg: dict) -> None:
    """Range checks the schema's types cannot express. Raises ConfigError naming the key and the allowed values."""
    for key, (ok, allowed) in _RULES.items():
        node, present = cfg, True
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                present = False
                break
            node = node[part]
        if present and not ok(node):
            raise ConfigError(f"{key}={node!r} is not allowed: {key} must be {allowed}")
    model = cfg.get("model") or {}
    if model.get("original_stack_bug") and (str(model.get("mode")) != "skip_gru" or model.get("num_layers", 1) < 2):
        raise ConfigError(f"model.original_stack_bug=true is not allowed with model.mode={model.get('mode')} and "
                          f"model.num_layers={model.get('num_layers')}: it reproduces a bug of stacked Skip GRUs only, "
                          "so it needs model.mode=skip_gru and model.num_layers >= 2")


def check_task(name: str, params: dict) -> dict:
    """A task's constructor arguments, checked as a composed config is: each enum-typed key against its schema's
    choices, each ranged key against the same rules (so a task built in Python fails as the command line would).
    Returns the arguments with enum members as their plain values."""
    out = dict(params)
    for f in fields(TASK_SCHEMAS[name]):
        if f.name in out and isinstance(f.default, Enum):  # an enum-typed key (its default is a member)
            choices = [member.value for member in type(f.default)]
            value = out[f.name] = getattr(out[f.name], "value", out[f.name])
            if value not in choices:
                raise ConfigError(f"task.{f.name}={value!r} is not allowed: task.{f.name} must be one of "
                                  f"{', '.join(choices)}")
    check_values({"task": out})
    return out


def check_device(device: str) -> None:
    """Whether this machine has the device that trainer.device names (checked before any run directory is made)."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (index and int(index) >= count):
            have = f"{count} CUDA device(s)" if count else "no CUDA device (torch.cuda.is_available() is False)"
            raise ConfigError(f"trainer.device={device} is not available: this machine has {have}; use trainer.device=cpu"
                              + (f" or cuda:0..cuda:{count - 1}" if count else ""))
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device=mps is not available on this machine; use trainer.device=cpu")
