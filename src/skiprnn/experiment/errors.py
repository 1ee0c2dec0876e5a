"""The experiment framework's errors that a user can act on: each message names the key, file or folder and what
to do, so the command line prints it as one line instead of a traceback. A leaf module: tasks raise these
without importing Hydra."""
import errno


class UserError(Exception):
    """A problem with the input, not a bug: printed as ``error: <message>``."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a Slurm time limit or preemption, ``kill``): handled as Ctrl-C, so a run says where it stopped and
    resumes from its last checkpoint; the command exits with 143, as a process ended by SIGTERM."""


class ConfigError(UserError, ValueError):
    """A config value of the right type but outside its allowed range, or an unknown key; the message names the key."""


class RunConflict(UserError, RuntimeError):
    """The run directory holds a run of another config."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read."""


class OutOfMemory(UserError, MemoryError):
    """A run that needs more memory than the device has; the message names the keys that size it."""


class DataError(UserError, FileNotFoundError):
    """A data file that is missing or damaged; the message names it and what is wrong."""


# The OSErrors that mean "this folder cannot take the run's files", whatever the code: say so in one line.
STORAGE_ERRNOS = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the device",
                  errno.EDQUOT: "disk quota exceeded"}


def storage_message(error: OSError) -> str | None:
    """One line for a write that failed because of the disk or its permissions, or None for other OSErrors."""
    if error.errno not in STORAGE_ERRNOS:
        return None
    where = error.filename or "the run directory"
    return (f"cannot write {where}: {STORAGE_ERRNOS[error.errno]}. Choose a writable folder with room "
            "(hydra.run.dir=..., or RESULTS=... for make) or free some space, then rerun: finished runs are kept "
            "and unfinished ones resume from their last checkpoint")
