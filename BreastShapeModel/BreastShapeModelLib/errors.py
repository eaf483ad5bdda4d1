"""Errors a user can cause and fix (bad files, bad values); the CLI prints them as one line, no traceback."""


class UserError(Exception):
    """A problem with the user's input: the message names the file or value and says what was expected."""


class CheckpointError(UserError):
    """A checkpoint file that cannot be used (missing, corrupt, unsafe, or not matching its config)."""


class ConfigError(UserError):
    """A model config that lacks a key or has a value of the wrong kind."""


class LandmarkError(UserError):
    """A landmark file or array that is not six distinct, finite 3D points."""
