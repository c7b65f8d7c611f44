"""Old home of the problem records: everything here now lives in :mod:`.problems` (kept only until
``config.py`` imports from there)."""
from .problems import PROBLEM_COLUMNS, ContractError, Problem

__all__ = ["PROBLEM_COLUMNS", "ContractError", "Problem"]
