"""The paper tables' rows as Hydra experiments: ``experiment=<table>/<row>`` and each table's sweep.

A row is declared once, in its task module (``PaperRow`` in tasks/<task>.py), beside the numbers the paper prints for
it. This module makes from it the config node a conf/experiment/<table>/<row>.yaml would hold, and gives
conf/table/<table>.yaml its rows and seeds through the resolvers ``${skiprnn_rows:<table>}`` and
``${skiprnn_seeds:<table>}``. So the rows, their run folders and the table's paper column cannot disagree.
"""
from __future__ import annotations

from .errors import ConfigError
from .tasks import paper_tables
from .tasks.base import PaperRow, PaperTable


def experiment_node(table: PaperTable, row: PaperRow) -> dict:
    """What ``experiment=<table>/<row>`` sets: the task and model files, λ, p_skip, then the table's and the row's
    other changes."""
    node = {"defaults": [{"override /task": table.task}, {"override /model": row.model}, "_self_"],
            "row": row.row, "lam": row.lam, "model": {"p_skip": row.p_skip}}
    for changes in (table.changes, row.changes):
        node = _merged(node, changes)
    return node


def _merged(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _paper_table(name: str, resolver: str) -> PaperTable:
    tables = paper_tables()
    if name not in tables:
        raise ConfigError(f"${{{resolver}:{name}}}: no paper table {name!r}; the tables are {', '.join(tables)}")
    return tables[name]


def sweep_list(table: str) -> str:
    """The table's experiments as one sweep value: ``table1/lstm,table1/lstm_pskip0.2,...``, in the paper's order."""
    return ",".join(f"{table}/{row.row}" for row in _paper_table(table, "skiprnn_rows").rows)


def sweep_seeds(table: str) -> str:
    """The table's seeds as one sweep value (``0,1,2,3``): PaperTable.seeds, the runs the paper's numbers average."""
    return ",".join(map(str, _paper_table(table, "skiprnn_seeds").seeds))


def unknown_row(args: list[str]) -> str | None:
    """A message for ``experiment=<table>/<row>`` naming a row the table does not have (Hydra would only say that
    no such config file exists), with the table's rows and the nearest name; None when every row exists."""
    import difflib

    tables = paper_tables()
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+~") != "experiment":
            continue
        for choice in value.split(","):
            table, _, row = choice.strip().partition("/")
            rows = [r.row for r in tables[table].rows] if table in tables else None
            if rows is not None and row not in rows:
                near = difflib.get_close_matches(row, rows, n=1)
                return (f"experiment={choice}: {table} has no row {row!r}" + (f" (did you mean {table}/{near[0]}?)"
                        if near else "") + f"; its rows are {', '.join(rows)}")
    return None


def register() -> None:
    """Store every row as ``experiment/<table>/<row>`` and register the sweep resolvers."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("skiprnn_rows", sweep_list, replace=True)
    OmegaConf.register_new_resolver("skiprnn_seeds", sweep_seeds, replace=True)
    store = ConfigStore.instance()
    for table in paper_tables().values():
        for row in table.rows:
            store.store(group=f"experiment/{table.name}", name=row.row, node=experiment_node(table, row),
                        package="_global_")
