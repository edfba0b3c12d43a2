"""The one error of :mod:`hostd.settings`."""


class SettingsError(ValueError):
    """A variable in the environment has a value hostd cannot use."""
