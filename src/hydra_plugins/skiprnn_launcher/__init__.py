"""skiprnn's Hydra launcher, where Hydra looks for plugins (the ``hydra_plugins`` namespace, by the class's own
module): the code lives in ``skiprnn.experiment.launcher``; conf/hydra/launcher/local_parallel.yaml names it."""
from skiprnn.experiment import launcher as _launcher


class LocalParallelLauncher(_launcher.LocalParallelLauncher):
    """hydra/launcher=local_parallel: see skiprnn.experiment.launcher."""
