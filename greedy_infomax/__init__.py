"""Greedy InfoMax: gradient-isolated, module-by-module training of deep networks."""
