"""Greedy InfoMax: gradient-isolated, module-by-module training of deep networks."""

from greedy_infomax import tasks  # noqa: F401  (registers the tasks, so that any run folder's config loads)
