"""The project's own error type: the CLI prints it as one line (no traceback unless --debug)."""


class GimError(Exception):
    """A problem the user can fix: bad input file, bad option, incompatible run folder."""
