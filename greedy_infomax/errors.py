"""The project's own error type: the CLI prints it as one line (no traceback unless --debug)."""


class GimError(Exception):
    """A problem the user can fix: bad input file, bad option, incompatible run folder."""


class TrainingStopped(GimError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; not a failure of the run."""

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
