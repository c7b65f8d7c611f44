"""Problems with data: one failed rule (:class:`Problem`), every problem found (:class:`ValidationReport`),
the exception that carries them (:class:`ContractError`) and the console table (:func:`format_problems`).

Everything in the contract that finds a problem (opening files, ``operator.toml``, the checks of
:mod:`.validation`, the schema checks of :mod:`.remote`) records it here; nothing here runs a check.

>>> rep = ValidationReport.from_problems("data/x", [Problem("customers", "gender", "vocabulary", 2,
...                                      "customer_id='C1', gender='X'", "one of 'M', 'F', 'U'")],
...                                      n_rows={"customers": 100})
>>> rep.ok, int(rep.metric("validation.n_failing", "customers")["estimate"])
(False, 2)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import pandas as pd

from ..errors import InputError
from ..results import Reporting, tidy
from .hints import causes
from .spec import CONTRACT_VERSION, TABLES

__all__ = ["PROBLEM_COLUMNS", "Problem", "ValidationReport", "ContractError", "format_problems"]

#: Columns of :attr:`ValidationReport.problems`, in order.
PROBLEM_COLUMNS = ["table", "column", "rule", "n_failing", "examples", "expected"]

#: Rules about files and keys rather than rows (no count of failing rows is shown for them).
FILE_RULES = frozenset({"missing_file", "unreadable_file", "ambiguous_file", "missing_table", "required_key",
                        "mapping", "empty_file", "duplicate_column"})

_RULE_ORDER = ["missing_file", "unreadable_file", "ambiguous_file", "mapping", "missing_table",
               "required_key", "required_column", "type", "timezone", "not_null", "finite",
               "vocabulary", "range", "unique"]


class Problem(NamedTuple):
    """One failed rule: where, which rule, how many rows, which rows, what was expected."""

    table: str
    column: str | None
    rule: str
    n_failing: int
    examples: str
    expected: str


def _problem_order(p: Problem) -> tuple:
    names = list(TABLES)
    t = names.index(p.table) if p.table in names else -1
    cols = TABLES[p.table].column_names if p.table in TABLES else ()
    first = (p.column or "").split(",")[0].strip()
    c = cols.index(first) if first in cols else (-1 if p.column is None else len(cols))
    r = _RULE_ORDER.index(p.rule) if p.rule in _RULE_ORDER else len(_RULE_ORDER)
    return (t, c, r)


@dataclass(frozen=True, eq=False, repr=False)
class ValidationReport(Reporting):
    """The outcome of :func:`~carecall_eval.contract.validate`.

    Attributes
    ----------
    path : pathlib.Path
        The data directory validated.
    problems : pandas.DataFrame
        One row per failed rule, columns ``table``, ``column``, ``rule``,
        ``n_failing`` (offending rows), ``examples`` (the first few offending
        rows) and ``expected``. Empty when the data meet the contract.
    n_rows : Mapping of str to int
        Rows checked per table.
    engines : Mapping of str to str
        How each table's column values were checked: ``"pandera"`` or ``"sql"``.
    contract_version : str
        Version of the data contract checked.

    Follows the result protocol: ``summary`` has a ``validation.n_rows`` row per
    table checked and a ``validation.n_failing`` row per problem (``method`` is
    the rule; ``column``, ``rule``, ``expected`` and ``examples`` as extra
    columns); ``text`` is :func:`format_problems`.
    """

    name = "validation"
    path: Path
    problems: pd.DataFrame
    n_rows: Mapping[str, int] = field(default_factory=dict)
    engines: Mapping[str, str] = field(default_factory=dict)
    contract_version: str = CONTRACT_VERSION

    @classmethod
    def from_problems(cls, path: str | Path, problems: Iterable[Problem],
                      n_rows: Mapping[str, int] | None = None,
                      engines: Mapping[str, str] | None = None) -> "ValidationReport":
        """Build a report from problem records, in contract order."""
        rows = sorted(problems, key=_problem_order)
        frame = pd.DataFrame.from_records(rows, columns=PROBLEM_COLUMNS)
        frame["n_failing"] = frame["n_failing"].astype("int64")
        return cls(Path(path), frame, dict(n_rows or {}), dict(engines or {}))

    # ---- result protocol ----------------------------------------------------------------------
    @property
    def settings(self) -> dict:
        """What was checked: the path, the contract version and the engine per table."""
        return {"path": str(self.path), "contract_version": self.contract_version, "engines": dict(self.engines)}

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy rows: rows checked per table, then one row per problem (estimate = failing rows)."""
        rows: list[dict[str, Any]] = [
            {"metric": "validation.n_rows", "group": t, "estimate": float(n), "n": int(n),
             "method": f"checked with {self.engines.get(t, 'schema checks')}"}
            for t, n in self.n_rows.items()]
        for p in self.problems.itertuples(index=False):
            n = self.n_rows.get(p.table)
            rows.append({"metric": "validation.n_failing", "group": p.table, "estimate": float(p.n_failing),
                         "n": n, "method": p.rule, "column": p.column, "rule": p.rule, "expected": p.expected,
                         "examples": p.examples})
        return tidy(rows)

    @property
    def text(self) -> str:
        """The report as a fixed-width table (see :func:`format_problems`)."""
        return format_problems(self)

    def to_dict(self) -> dict:
        """JSON-ready form: the protocol's fields plus path, contract version, rows, engines and problems
        (read back with :meth:`from_json`)."""
        out = super().to_dict()
        out.update({"path": str(self.path), "contract_version": self.contract_version,
                    "n_rows": dict(self.n_rows), "engines": dict(self.engines),
                    "problems": self.problems.to_dict(orient="records")})
        return out

    def to_json(self) -> str:
        """The report as JSON (read back with :meth:`from_json`)."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ValidationReport":
        """A report written by :meth:`to_json`."""
        doc = json.loads(text)
        frame = pd.DataFrame.from_records(doc["problems"], columns=PROBLEM_COLUMNS)
        frame["n_failing"] = frame["n_failing"].astype("int64")
        return cls(Path(doc["path"]), frame, doc["n_rows"], doc["engines"], doc["contract_version"])

    # ---- use -----------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        """True when no rule failed."""
        return self.problems.empty

    def raise_if_failed(self) -> "ValidationReport":
        """Raise :class:`ContractError` listing every problem, or return self."""
        if not self.ok:
            raise ContractError(self.message(), report=self)
        return self

    def message(self) -> str:
        """Every problem in words: table, column, rule, failing rows, examples, expected."""
        if self.ok:
            return f"{self.path} meets the data contract (v{self.contract_version})."
        n = len(self.problems)
        lines = [f"{self.path} does not meet the data contract (v{self.contract_version}): "
                 f"{n} problem{'s' if n != 1 else ''}."]
        found = causes(self.problems)
        covered = {i for c in found if c.collapses for i in c.rows}
        for c in found:
            if c.collapses:
                lines.append(f"  * {c.line}.")
        for i, p in enumerate(self.problems.itertuples(index=False)):
            if i in covered:
                continue
            where = f"{p.table}.{p.column}" if p.column else p.table
            total = self.n_rows.get(p.table)
            of = f" of {total:,}" if total is not None else ""
            count = (f"{p.n_failing:,} failing row{'s' if p.n_failing != 1 else ''}{of}"
                     if p.rule not in FILE_RULES else "")
            lines.append(f"  - {where} [{p.rule}]: {count + '; ' if count else ''}"
                         f"expected {p.expected}")
            if p.examples:
                for ex in p.examples.split("; "):
                    lines.append(f"      {ex}")
        lines += [f"  hint: {c.line}." for c in found if not c.collapses]
        lines.append("Fix the data or the export that produced it, then run "
                     "`carecall-eval validate DIR` again (see docs/data-contract.md).")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        n = len(self.problems)
        state = "ok" if self.ok else f"{n} problem{'s' if n != 1 else ''}"
        return f"<ValidationReport {str(self.path)!r}: {state}>"


class ContractError(InputError):
    """Data does not meet the carecall_eval data contract.

    Attributes
    ----------
    report : ValidationReport or None
        The full report, with every problem in ``report.problems``.
    """

    def __init__(self, message: str, report: ValidationReport | None = None):
        super().__init__(message)
        self.report = report


def format_problems(report: ValidationReport, *, max_examples_width: int = 100) -> str:
    """Format a validation report as a fixed-width table for the console.

    Parameters
    ----------
    report : ValidationReport
        From :func:`~carecall_eval.contract.validate`.
    max_examples_width : int, default 100
        Examples longer than this are cut with "...".

    Returns
    -------
    str
        An "OK" line with row counts when the data meet the contract;
        otherwise a header line and one table row per problem with columns
        table, column, rule, failing, expected, examples.
    """
    if report.ok:
        counts = ", ".join(f"{t} {n:,}" for t, n in report.n_rows.items())
        return (f"OK: {report.path} meets the data contract (v{report.contract_version}). "
                f"Rows: {counts}.")
    df = report.problems
    found = causes(df)
    covered = {i for c in found if c.collapses for i in c.rows}
    rows = [("table", "column", "rule", "failing", "expected", "examples")]
    for i, p in enumerate(df.itertuples(index=False)):
        if i in covered:
            continue
        ex = p.examples if len(p.examples) <= max_examples_width else \
            p.examples[: max_examples_width - 3] + "..."
        failing = "-" if p.rule in FILE_RULES else f"{p.n_failing:,}"
        rows.append((p.table, p.column or "-", p.rule, failing, p.expected, ex))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 r[3].rjust(widths[3]), r[4].ljust(widths[4]), r[5]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 8)
    n = len(df)
    head = (f"FAILED: {report.path} does not meet the data contract "
            f"(v{report.contract_version}): {n} problem{'s' if n != 1 else ''}.")
    said = [f"* {c.line}" for c in found if c.collapses]
    if covered and len(rows) > 1:
        said.append(f"The other {len(rows) - 1}:")
    hints = [f"hint: {c.line}" for c in found if not c.collapses]
    return "\n".join([head, *said, *(lines if len(rows) > 1 else []), *hints])
