"""Model-conversion orchestrator: pinned Docker stacks chained per conversion route."""

__version__ = "0.1.0"
