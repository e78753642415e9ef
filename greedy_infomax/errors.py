"""The project's own error type: the CLI prints it as one line (no traceback unless --debug)."""


class GimError(Exception):
    """A problem the user can fix: bad input file, bad option, incompatible run folder."""


class NonFiniteLoss(GimError):
    """A module's loss became NaN or infinite: training diverged. The bad step was not applied."""

    def __init__(self, value: float, module: int | None = None) -> None:
        super().__init__(f"module {module}: loss is {value}")
        self.value = value
        self.module = module


class TrainingStopped(GimError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; not a failure of the run."""

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
