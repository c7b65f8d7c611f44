"""The exception raised when data does not meet the contract, and its problem record."""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .validation import ValidationReport

#: Columns of :attr:`ValidationReport.problems`, in order.
PROBLEM_COLUMNS = ["table", "column", "rule", "n_failing", "examples", "expected"]


class Problem(NamedTuple):
    """One failed rule: where, which rule, how many rows, which rows, what was expected."""

    table: str
    column: str | None
    rule: str
    n_failing: int
    examples: str
    expected: str


class ContractError(InputError):
    """Data does not meet the carecall_eval data contract.

    Attributes
    ----------
    report : ValidationReport or None
        The full report, with every problem in ``report.problems``.
    """

    def __init__(self, message: str, report: "ValidationReport | None" = None):
        super().__init__(message)
        self.report = report
