"""Every config composes and resolves; bad overrides fail at startup with the key and the allowed values."""
import json

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from conftest import CONF
from skiprnn.experiment.cli import resolved
from skiprnn.experiment.config import ConfigError, check_device, check_values
from skiprnn.experiment.tasks import paper_tables

TABLES = sorted(p.stem for p in (CONF / "table").glob("*.yaml"))
EXPERIMENTS = [f"{table.name}/{row.row}" for table in paper_tables().values() for row in table.rows]


def job_part(cfg):
    return resolved(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))


@pytest.mark.parametrize("group", ["task", "model", "trainer", "logger"])
def test_every_group_option_composes(compose_cfg, group):
    for path in sorted((CONF / group).glob("*.yaml")):
        cfg = job_part(compose_cfg(f"{group}={path.stem}"))
        check_values(cfg)
        if group == "task":
            assert cfg["task"]["name"] == path.stem, "a task file builds the task it is named after"
        if group == "model":
            assert cfg["model"]["mode"] == path.stem


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_row_composes_as_its_name_says(compose_cfg, experiment):
    """A row's name says its model, λ and p_skip (skip_gru_lam1e-5, lstm_pskip0.2): its declaration must agree."""
    cfg = job_part(compose_cfg(f"experiment={experiment}"))
    check_values(cfg)
    table, row = experiment.split("/")
    assert cfg["row"] == row and cfg["task"]["name"] == paper_tables()[table].task
    name = row.split("_ts")[0]  # Table 4's sampling period
    mode, _, lam = name.partition("_lam")
    mode, _, p_skip = mode.partition("_pskip")
    assert (cfg["model"]["mode"], cfg["lam"], cfg["model"]["p_skip"]) == (mode, float(lam or 0), float(p_skip or 0))


def test_tables_are_the_table_configs():
    assert sorted(paper_tables()) == TABLES


@pytest.mark.parametrize("table", TABLES)
def test_every_table_sweeps_its_rows_in_the_papers_order(compose_cfg, table):
    cfg = compose_cfg(f"table={table}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    swept = cfg.hydra.sweeper.params.experiment.split(",")
    assert swept == [e for e in EXPERIMENTS if e.startswith(f"{table}/")] and len(swept) == len(set(swept))
    assert cfg.hydra.sweep.dir == f"results/{table}"


def test_a_table_sweeps_the_seeds_its_paper_numbers_average_and_an_unknown_table_names_the_tables(compose_cfg):
    from skiprnn.experiment.rows import sweep_list, sweep_seeds

    assert [compose_cfg(f"table={t}").hydra.sweeper.params.seed for t in TABLES] == ["0,1,2,3", "0,1,2,3", "0", "0,1,2,3"]
    for resolver in (sweep_list, sweep_seeds):
        with pytest.raises(ConfigError, match="no paper table 'table9'; the tables are table1, table2, table3, table4"):
            resolver("table9")


def test_table1_rows_match_the_paper_table(compose_cfg):
    from skiprnn.experiment.tasks.adding import TABLE1

    assert len(TABLE1.rows) == 10 and TABLE1.seeds == (0, 1, 2, 3)
    expected = {"lstm_pskip0.2": ("lstm", 0.2, 0.0), "skip_gru_lam1e-5": ("skip_gru", 0.0, 1e-5), "gru": ("gru", 0.0, 0.0)}
    for row, (mode, p_skip, lam) in expected.items():
        cfg = job_part(compose_cfg(f"experiment=table1/{row}"))
        assert (cfg["model"]["mode"], cfg["model"]["p_skip"], cfg["lam"]) == (mode, p_skip, lam)
        assert cfg["task"]["name"] == "adding" and cfg["model"]["hidden_size"] == 110


@pytest.mark.parametrize("overrides", [(), ("table=table4", "experiment=table4/skip_gru_lam1e-4_ts0.5")])
def test_paper_hyperparameters_are_the_defaults(compose_cfg, overrides):
    """paper.md §2: Adam 1e-4, batch 256, global-norm clip 1, 110 units, evaluation every 300 steps on 15 batches."""
    cfg = job_part(compose_cfg(*overrides))
    assert cfg["trainer"]["lr"] == 1e-4 and cfg["trainer"]["batch_size"] == 256 and cfg["trainer"]["grad_clip"] == 1.0
    assert cfg["trainer"]["eval_every"] == 300 and cfg["task"]["eval_batches"] == 15
    assert cfg["model"]["hidden_size"] == 110 and cfg["model"]["num_layers"] == 1
    assert cfg["logger"]["mode"] == "offline"


@pytest.mark.parametrize(
    "override, words",
    [
        ("lam=abc", ["lam", "Float"]),
        ("model.mode=rnn", ["model.mode", "lstm, gru, skip_lstm, skip_gru"]),
        ("logger.mode=maybe", ["offline, online, disabled"]),
        ("trainer.lrr=1", ["lrr"]),
        ("model=rnn", ["model/rnn", "skip_gru"]),
    ],
)
def test_bad_overrides_fail_at_composition(compose_cfg, override, words):
    with pytest.raises((ConfigCompositionException, ValidationError)) as info:
        compose_cfg(override)
    text = str(info.value) + str(info.value.__cause__ or "")
    for word in words:
        assert word in text


@pytest.mark.parametrize("override, key", [("model.p_skip=1.5", "model.p_skip"), ("lam=-1", "lam"),
                                           ("trainer.max_steps=0", "trainer.max_steps"),
                                           ("task.eval_batches=1001", "task.eval_batches"),
                                           ("task.solved_mse=0", "task.solved_mse"),
                                           ("trainer.lr=inf", "trainer.lr"),
                                           ("task=frequency task.duration=inf", "task.duration"),
                                           ("task=frequency task.sampling_period=nan", "task.sampling_period"),
                                           ("task=frequency task.solved_accuracy=1", "task.solved_accuracy"),
                                           ("trainer.device=gpu", "trainer.device"),
                                           ("trainer.device=cuda:x", "trainer.device")])
def test_out_of_range_values_name_the_key(compose_cfg, override, key):
    with pytest.raises(ConfigError, match=rf"{key}=.* must be"):
        check_values(job_part(compose_cfg(*override.split())))


@pytest.mark.parametrize("overrides", [("model=lstm",), ("model=skip_gru",), ("model=skip_lstm", "model.num_layers=2")])
def test_original_stack_bug_only_for_stacked_skip_gru(compose_cfg, overrides):
    check_values(job_part(compose_cfg(*overrides)))
    with pytest.raises(ConfigError, match=r"model.original_stack_bug=true is not allowed.*model.mode=skip_gru and model.num_layers >= 2"):
        check_values(job_part(compose_cfg(*overrides, "model.original_stack_bug=true")))
    check_values(job_part(compose_cfg("model=skip_gru", "model.num_layers=2", "model.original_stack_bug=true")))


@pytest.mark.parametrize("overrides", [("model=skip_gru", "lam=1e-5", "seed=3"), ("experiment=table1/skip_lstm_lam1e-5",)])
def test_a_sweep_run_lands_where_the_same_run_alone_would(compose_cfg, overrides):
    """No timestamp in sweep folders: rerunning a sweep finds its finished runs (skipped) and checkpoints (resumed)."""
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_cfg(*overrides)
    HydraConfig.instance().set_config(cfg)  # resolves ${hydra:job.override_dirname}
    assert f"{cfg.hydra.sweep.dir}/{cfg.hydra.sweep.subdir}" == cfg.hydra.run.dir
    assert cfg.hydra.job.override_dirname in cfg.hydra.run.dir and cfg.row in cfg.hydra.run.dir


def test_a_row_alone_and_runs_without_overrides_get_folders_of_their_own(compose_cfg):
    """experiment=tableN/<row> outside a table sweep names its folder by the row, and a run with no identifying
    override gets a leaf of its own, so that it never holds the folders of the runs that have some."""
    from hydra.core.hydra_config import HydraConfig

    dirs = {}
    for overrides in [("experiment=table1/skip_gru_lam1e-5",), (), ("lam=1e-4",), ("experiment=table1/skip_gru_lam1e-5", "seed=2")]:
        cfg = compose_cfg(*overrides)
        HydraConfig.instance().set_config(cfg)
        dirs[overrides] = cfg.hydra.run.dir
    assert list(dirs.values()) == ["runs/adding/skip_gru_lam1e-5/defaults", "runs/adding/skip_lstm/defaults",
                                   "runs/adding/skip_lstm/lam=1e-4", "runs/adding/skip_gru_lam1e-5/seed=2"]


def test_data_paths_do_not_name_run_folders(compose_cfg):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_cfg("task=mnist", "task.data_root=/data/sets", "task.download=false", "seed=1")
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.job.override_dirname == "seed=1,task=mnist" and cfg.hydra.run.dir.count("/") == 3


def test_a_device_this_machine_lacks_is_named():
    import torch

    check_device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"trainer.device=cuda:{count} is not available.*trainer.device=cpu"):
        check_device(f"cuda:{count}")


def test_a_task_given_another_tasks_keys_names_the_stray_key(compose_cfg):
    from skiprnn.experiment.tasks import build_task

    cfg = job_part(compose_cfg("task=adding", "task.name=frequency"))
    with pytest.raises(ConfigError, match=r"task\.(eval_batches|seq_len|solved_mse) is not a key of the frequency task.*"
                                         r"sampling_period, duration, variant"):
        build_task(cfg["task"], 256)


def test_cli_reports_a_bad_value_clearly(cli):
    proc = cli("lam=abc", "logger=none", check=False)
    assert proc.returncode != 0
    assert "full_key: lam" in proc.stderr and "could not be converted to Float" in proc.stderr


def test_cli_reports_missing_mnist_without_a_traceback(cli, tmp_path):
    proc = cli("task=mnist", "task.download=false", f"task.data_root={tmp_path / 'nothing'}", "logger=none",
               f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode != 0
    assert "error: MNIST data not found" in proc.stderr and "task.data_root" in proc.stderr
    assert "Traceback" not in proc.stderr
    failure = json.loads((tmp_path / "run" / "failed.json").read_text())  # a sweep's table lists it as failed
    assert "MNIST data not found" in failure["error"] and failure["config"]["task"]["name"] == "mnist"


def test_help_is_skiprnns_own_with_its_real_choices_and_examples(cli):
    """--help names each user-facing group with exactly its options (the files in conf/, and Hydra's basic launcher),
    no internal group, and example commands."""
    import re

    text = cli("--help").stdout
    assert "schema" not in text and "== Examples ==" in text and "docs/usage.md" in text
    for group in ("task", "model", "table", "logger", "hydra/launcher"):
        listed = re.search(rf"^\s+{re.escape(group)}=([\w|]+)\s", text, flags=re.M).group(1).split("|")
        files = [p.stem for p in (CONF / group).glob("*.yaml")] + (["basic"] if group == "hydra/launcher" else [])
        assert sorted(listed) == sorted(files), group


def test_missing_config_folder_says_how_to_install(monkeypatch, tmp_path):
    import skiprnn.experiment.cli as train_module

    monkeypatch.setattr(train_module, "CONF_DIR", str(tmp_path / "no_conf"))
    with pytest.raises(SystemExit, match=r"configs are not at .*no_conf.*pip install -e \."):
        train_module.main()


def test_an_unknown_row_names_the_tables_rows_and_the_nearest(cli):
    proc = cli("experiment=table1/gruu", check=False)
    assert proc.returncode == 1
    assert "experiment=table1/gruu: table1 has no row 'gruu' (did you mean table1/gru?); its rows are lstm," in proc.stderr
    assert "Traceback" not in proc.stderr
