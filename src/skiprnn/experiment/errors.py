"""The experiment framework's error for bad config values (a leaf module: tasks raise it without importing Hydra)."""


class ConfigError(ValueError):
    """A config value of the right type but outside its allowed range; the message names the key."""
