"""The errors cnnlab raises for bad input. The CLI prints any of them as one line.

Every message names the bad value and what was expected.
"""


class CnnlabError(Exception):
    """Base class: a problem with the user's input, data or files, not a bug."""


class UnknownNameError(CnnlabError, KeyError):
    """An unknown model, dataset, recipe or option name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(CnnlabError):
    """A dataset that is missing, truncated, corrupt or of the wrong shape."""


class CheckpointError(CnnlabError):
    """A checkpoint or run folder that is missing, corrupt or from another model."""


class CnnlabWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one
    ``warning:`` line."""


class CheckpointWarning(CnnlabWarning):
    """A damaged checkpoint skipped in favour of the one before it, and similar."""
