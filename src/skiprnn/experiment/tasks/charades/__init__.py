"""Charades v1 temporal action localisation: official-format files, the binary feature cache, the official per-frame
mAP, a synthetic generator, and the task of Table 3 (``task.py``, loaded on first use of ``TASK`` or ``TABLES``, so
that the file tools, e.g. ``python -m skiprnn.experiment.tasks.charades.synth``, do not load it)."""


def __getattr__(name: str):
    if name in ("TASK", "TABLES", "TABLE3"):
        from . import task

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
