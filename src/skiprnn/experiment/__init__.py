"""The experiment framework on top of the library: configs, tasks, the trainer, tracking, tables and reports."""
