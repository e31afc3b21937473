"""The one error type the `recon` command turns into a one-line message instead of a traceback.

Anything raised as `ReconError` must already say what went wrong and what to do about it.
"""


class ReconError(Exception):
    """A failure the user can act on; its message is printed as is, on one line."""
