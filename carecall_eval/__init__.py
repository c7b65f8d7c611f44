"""carecall_eval: evaluate proactive responsible-gambling care calls honestly."""
from ._version import __version__
from .results import Result, SUMMARY_COLUMNS

__all__ = ["__version__", "Result", "SUMMARY_COLUMNS"]
