"""regbench: measure, with honest numbers, what a regularizer does to a model."""

__version__ = "0.1.0"


class UserInputError(Exception):
    """Bad input that deserves one clear line, not a traceback."""
