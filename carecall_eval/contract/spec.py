"""The operator data contract (v1), defined once.

Everything else in :mod:`carecall_eval.contract` is derived from the
:data:`TABLES` defined here: the DuckDB views and CSV column types
(:mod:`.dataset`), the pandera schemas and the set-based SQL checks
(:mod:`.schemas`), the validation report (:mod:`.validation`) and the
documentation test that keeps ``docs/data-contract.md`` in step.

A rule is stated once, as data: a column's kind, nullability, vocabulary, range,
uniqueness and foreign key; a table's composite key; and row rules, written as a
SQL predicate that is true for an *offending* row.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Literal

#: Version of the data contract implemented here.
CONTRACT_VERSION = "1"

Kind = Literal["string", "int", "float", "date", "timestamp", "bool"]

#: DuckDB type each kind is exposed as in the dataset's views.
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "bool": "BOOLEAN",
}

#: Plausible range for every date and timestamp in the contract (inclusive).
DATE_MIN = _dt.date(1990, 1, 1)
DATE_MAX = _dt.date(2100, 1, 1)
#: Largest amount accepted (inclusive): sums are taken in exact decimals (``DECIMAL(18,4)`` per row, theoretical
#: loss ``DECIMAL(18,6)``, see :mod:`carecall_eval.cohorts.windows`), which hold 12 digits before the point for
#: theoretical loss; a larger amount would overflow inside a query instead of being named here.
AMOUNT_MAX = 999_999_999_999.0
#: Plausible range for ``customers.birth_year`` (inclusive).
BIRTH_YEAR_MIN, BIRTH_YEAR_MAX = 1900, 2015

# Vocabularies: exact, case-sensitive.
GENDERS = ("F", "M", "U")
TRIGGERS = ("high_loss", "red_self_test", "pause_lift_request", "risk_model", "other")
CHANNELS = ("phone", "letter", "email")
ARMS = ("call", "letter", "control")
OUTCOMES = (
    "limit_set",
    "pause",
    "self_exclusion",
    "helpline_referral",
    "callback_booked",
    "no_action",
    "declined",
)
RECEPTIONS = ("positive", "neutral", "negative")
SMS_KINDS = ("missed_call_followup", "other")
RG_EVENTS = (
    "limit_set",
    "limit_lowered",
    "limit_raised",
    "pause",
    "self_exclusion",
    "self_test_red",
    "self_test_other",
)


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    Attributes
    ----------
    name : str
        Column name, exact and case-sensitive.
    kind : {"string", "int", "float", "date", "timestamp", "bool"}
        Logical type; see :data:`DUCKDB_TYPES`.
    nullable : bool
        Whether a missing value is allowed.
    vocabulary : tuple of str, optional
        Allowed values (exact match, no case-folding).
    min, max : number or datetime.date, optional
        Inclusive bounds of the allowed range.
    unique : bool
        Whether values must be unique in the table.
    references : tuple of (table, column), optional
        Foreign key: every non-null value must exist in that column.
    description : str
        What the column means, for the operator's data team.
    optional : bool
        Whether the column may be absent from the table (data without it stay
        valid); when present, every rule applies.
    """

    name: str
    kind: Kind
    nullable: bool = False
    vocabulary: tuple[str, ...] | None = None
    min: float | _dt.date | None = None
    max: float | _dt.date | None = None
    unique: bool = False
    references: tuple[str, str] | None = None
    description: str = ""
    optional: bool = False

    @property
    def duckdb_type(self) -> str:
        """DuckDB type of the column in the dataset's views."""
        return DUCKDB_TYPES[self.kind]


@dataclass(frozen=True)
class RowRule:
    """A rule on the values of one row, checked as a SQL predicate.

    Attributes
    ----------
    name : str
        Rule name shown in validation reports.
    column : str
        Column the problem is reported against.
    columns : tuple of str
        Every column the predicate reads (the rule is skipped if one is missing
        or unreadable).
    violation : str
        DuckDB SQL predicate that is TRUE for an offending row.
    expected : str
        What a valid row looks like, in words.
    """

    name: str
    column: str
    columns: tuple[str, ...]
    violation: str
    expected: str


@dataclass(frozen=True)
class Table:
    """One table of the contract.

    Attributes
    ----------
    name : str
        Table name: the file stem and the DuckDB view name.
    grain : str
        What one row is.
    columns : tuple of Column
        Required columns (extra columns are allowed and kept).
    required : bool
        Whether the table must be present.
    large : bool
        Large tables (activity, deposits) are validated and aggregated only with
        set-based SQL and never loaded whole into pandas.
    key : tuple of str
        Columns identifying a row, shown with offending rows.
    unique_together : tuple of str
        Composite key that must be unique (empty: none).
    row_rules : tuple of RowRule
        Cross-column rules.
    description : str
        What the table is for.
    """

    name: str
    grain: str
    columns: tuple[Column, ...]
    required: bool = True
    large: bool = False
    key: tuple[str, ...] = ()
    unique_together: tuple[str, ...] = ()
    row_rules: tuple[RowRule, ...] = ()
    description: str = ""

    def column(self, name: str) -> Column:
        """Return the column called `name`."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no contract column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the contract columns, in order."""
        return tuple(c.name for c in self.columns)


def _date_col(name: str, *, nullable: bool = False, description: str = "") -> Column:
    return Column(name, "date", nullable=nullable, min=DATE_MIN, max=DATE_MAX,
                  description=description)


def _ts_col(name: str, description: str = "") -> Column:
    return Column(name, "timestamp", min=DATE_MIN, max=DATE_MAX, description=description)


def _customer_fk(description: str = "Customer (in customers).") -> Column:
    return Column("customer_id", "string", references=("customers", "customer_id"),
                  description=description)


def _amount(name: str, description: str) -> Column:
    return Column(name, "float", min=0.0, max=AMOUNT_MAX, description=description)


_TABLE_LIST = (
    Table(
        "customers",
        grain="one per customer",
        key=("customer_id",),
        description="Every customer who could appear in any other table.",
        columns=(
            Column("customer_id", "string", unique=True,
                   description="Stable customer identifier (pseudonymised is fine)."),
            Column("operator", "string", description="Operator or brand that holds the account."),
            Column("birth_year", "int", min=BIRTH_YEAR_MIN, max=BIRTH_YEAR_MAX,
                   description="Year of birth."),
            Column("gender", "string", vocabulary=GENDERS,
                   description="F, M or U (unknown / not recorded)."),
            _date_col("registered_on", description="Date the account was opened."),
            _date_col("closed_on", nullable=True,
                      description="Date the account was closed; null while open."),
        ),
        row_rules=(
            RowRule("date_order", "closed_on", ("closed_on", "registered_on"),
                    "closed_on < registered_on",
                    "closed_on on or after registered_on (or null)"),
        ),
    ),
    Table(
        "products",
        grain="one per product",
        key=("product",),
        description="Products with their expected payback, for theoretical loss.",
        columns=(
            Column("product", "string", unique=True, description="Product identifier."),
            Column("payback", "float", min=0.0, max=1.0,
                   description="Expected return to player, as a share of stakes (0.93 = 93%)."),
        ),
    ),
    Table(
        "activity",
        grain="one per customer, day and product with any play (a missing row means no play)",
        large=True,
        key=("customer_id", "date", "product"),
        unique_together=("customer_id", "date", "product"),
        description="Daily play; the largest table, never loaded whole into memory.",
        columns=(
            _customer_fk(),
            _date_col("date", description="Calendar day of play (operator's local time)."),
            Column("product", "string", references=("products", "product"),
                   description="Product played (in products)."),
            _amount("wagered", "Total stakes that day on that product."),
            _amount("won", "Total winnings paid out that day on that product."),
        ),
    ),
    Table(
        "deposits",
        grain="one per deposit or per customer-day",
        required=False,
        large=True,
        key=("customer_id", "date"),
        description="Optional: deposits, for a secondary outcome.",
        columns=(
            _customer_fk(),
            _date_col("date", description="Date of the deposit(s)."),
            _amount("amount", "Amount deposited."),
        ),
    ),
    Table(
        "triggers",
        grain="one per risk signal",
        key=("customer_id", "triggered_on", "trigger"),
        description="Risk signals, whether or not they led to a call case.",
        columns=(
            _customer_fk(),
            _date_col("triggered_on", description="Date the signal fired."),
            Column("trigger", "string", vocabulary=TRIGGERS, description="Kind of signal."),
            Column("value", "float", nullable=True,
                   description="The signal's value (e.g. the loss that fired it), if any."),
        ),
    ),
    Table(
        "call_cases",
        grain="one per decision to contact a customer, reached or not",
        key=("case_id",),
        description="Decisions to contact a customer: the index events of the evaluation.",
        columns=(
            Column("case_id", "string", unique=True, description="Case identifier."),
            _customer_fk(),
            _date_col("opened_on", description="Date the case was opened."),
            Column("trigger", "string", vocabulary=TRIGGERS,
                   description="Signal that opened the case."),
            Column("channel", "string", vocabulary=CHANNELS, description="Planned channel."),
            Column("arm", "string", nullable=True, vocabulary=ARMS,
                   description="Randomised arm in a study; null outside a study."),
            Column("block", "string", nullable=True, optional=True,
                   description="Optional: the randomization block or matched set of a study case "
                               "(standard errors are clustered by it); null outside a study."),
        ),
        row_rules=(
            RowRule("block_needs_arm", "block", ("block", "arm"),
                    "block IS NOT NULL AND arm IS NULL",
                    "a block only on cases with an arm"),
        ),
    ),
    Table(
        "call_attempts",
        grain="one per dial",
        key=("case_id", "attempted_at"),
        description="Every dial made for a case, answered or not.",
        columns=(
            Column("case_id", "string", references=("call_cases", "case_id"),
                   description="Case (in call_cases)."),
            _ts_col("attempted_at", "Local date and time of the dial."),
            Column("answered", "bool", description="Whether the customer answered."),
            Column("duration_s", "float", nullable=True,
                   description="Call length in seconds when answered; null otherwise."),
            Column("agent_id", "string", nullable=True, description="Staff member, if recorded."),
            Column("outcome", "string", nullable=True, vocabulary=OUTCOMES,
                   description="What the call led to; required when answered, null otherwise."),
            Column("reception", "string", nullable=True, vocabulary=RECEPTIONS,
                   description="How the customer received the call, if recorded."),
        ),
        row_rules=(
            RowRule("answered_needs_duration", "duration_s", ("answered", "duration_s"),
                    "answered AND (duration_s IS NULL OR duration_s <= 0)",
                    "duration_s > 0 when answered"),
            RowRule("answered_needs_outcome", "outcome", ("answered", "outcome"),
                    "answered AND outcome IS NULL",
                    "an outcome when answered"),
            RowRule("unanswered_no_duration", "duration_s", ("answered", "duration_s"),
                    "NOT answered AND duration_s IS NOT NULL",
                    "duration_s null when not answered"),
            RowRule("unanswered_no_outcome", "outcome", ("answered", "outcome"),
                    "NOT answered AND outcome IS NOT NULL",
                    "outcome null when not answered"),
        ),
    ),
    Table(
        "sms",
        grain="one per message",
        key=("case_id", "sent_at"),
        description="Text messages sent for a case.",
        columns=(
            Column("case_id", "string", references=("call_cases", "case_id"),
                   description="Case (in call_cases)."),
            _ts_col("sent_at", "Local date and time the message was sent."),
            Column("kind", "string", vocabulary=SMS_KINDS,
                   description="missed_call_followup: the SMS after unanswered attempts."),
        ),
    ),
    Table(
        "rg_events",
        grain="one per responsible-gambling action",
        key=("customer_id", "occurred_on", "event"),
        description="Responsible-gambling actions, self-service or during a call.",
        columns=(
            _customer_fk(),
            _date_col("occurred_on", description="Date of the action."),
            Column("event", "string", vocabulary=RG_EVENTS, description="Kind of action."),
            Column("via_call", "bool", description="Whether it was taken during a care call."),
        ),
    ),
)

@dataclass(frozen=True)
class CrossRule:
    """A rule relating a row of one table to rows of another, checked as SQL.

    Attributes
    ----------
    name : str
        Rule name shown in validation reports.
    table, column : str
        Where the problem is reported (the offending rows are rows of ``table``).
    columns : tuple of str
        Columns of ``table`` the rule reads.
    other : str
        The other table.
    other_columns : tuple of str
        Columns of ``other`` the rule reads (the rule is skipped if one is missing or unreadable).
    key : str
        The column both tables share; each row of ``table`` is compared with the rows of ``other`` with its key.
    lookup : str
        SQL aggregate over those rows of ``other`` (``min(closed_on)``): the one value the rule needs, looked
        up by a join on ``key`` (a hash join, one pass over ``table``, rather than a correlated subquery).
    violation : str
        DuckDB SQL predicate, TRUE for an offending row of ``table``; ``{t}`` is the relation of ``table`` and
        ``{v}`` the looked-up value (NULL when ``other`` has no row with the key).
    show_as : str
        The label of the looked-up value, shown beside each offending row.
    expected : str
        What consistent data look like, in words.
    why : str
        Why it matters for the evaluation (docs/data-contract.md says the same).
    """

    name: str
    table: str
    column: str
    columns: tuple[str, ...]
    other: str
    other_columns: tuple[str, ...]
    key: str
    lookup: str
    violation: str
    show_as: str
    expected: str
    why: str = ""


#: Rules across tables (after foreign keys): each names the table, column and offending rows.
CROSS_RULES: tuple[CrossRule, ...] = (
    CrossRule("attempt_before_case", "call_attempts", "attempted_at", ("case_id", "attempted_at"),
              "call_cases", ("case_id", "opened_on"), "case_id", "max(opened_on)",
              "CAST({t}.attempted_at AS DATE) < {v}",
              "call_cases.opened_on",
              "attempted_at on or after the opened_on of its case (call_cases)",
              "every group is indexed at the case's opening: a call before it would fall in the pre-window"),
    CrossRule("sms_before_attempt", "sms", "sent_at", ("case_id", "sent_at", "kind"),
              "call_attempts", ("case_id", "attempted_at"), "case_id", "min(attempted_at)",
              "{t}.kind = 'missed_call_followup' AND ({v} IS NULL OR {v} > {t}.sent_at)",
              "first attempt",
              "a missed_call_followup SMS sent at or after an attempt of its case (call_attempts)",
              "the SMS effect compares the attempts after the SMS with those before it"),
    CrossRule("play_after_closure", "activity", "date", ("customer_id", "date", "wagered"),
              "customers", ("customer_id", "closed_on"), "customer_id", "min(closed_on)",
              "{t}.wagered > 0 AND {t}.date > {v}",
              "customers.closed_on",
              "no stakes (wagered > 0) after the customer's closed_on (customers); winnings paid out later on a "
              "day with no stake are fine",
              "retention counts a closed account as a customer lost; play after it means closed_on is wrong"),
    CrossRule("case_before_registration", "call_cases", "opened_on", ("customer_id", "opened_on"),
              "customers", ("customer_id", "registered_on"), "customer_id", "max(registered_on)",
              "{t}.opened_on < {v}",
              "customers.registered_on",
              "opened_on on or after the customer's registered_on (customers)",
              "tenure and the pre-window history are measured from registration"),
)

#: The contract: table name -> :class:`Table`, in dependency order.
TABLES: dict[str, Table] = {t.name: t for t in _TABLE_LIST}
#: Tables validated and aggregated with set-based SQL only.
LARGE_TABLES: tuple[str, ...] = tuple(t.name for t in _TABLE_LIST if t.large)
#: Tables small enough to load into pandas.
SMALL_TABLES: tuple[str, ...] = tuple(t.name for t in _TABLE_LIST if not t.large)
#: Tables that must be present.
REQUIRED_TABLES: tuple[str, ...] = tuple(t.name for t in _TABLE_LIST if t.required)


def expected_text(col: Column, rule: str) -> str:
    """Describe in words what `rule` expects of `col`.

    Parameters
    ----------
    col : Column
        The contract column.
    rule : {"required_column", "type", "not_null", "vocabulary", "range", "finite", \
"unique", "foreign_key"}
        A column rule.

    Returns
    -------
    str
    """
    if rule == "required_column":
        return f"a column {col.name!r} of type {col.duckdb_type}"
    if rule == "type":
        return _TYPE_TEXT[col.kind]
    if rule == "not_null":
        return "a value in every row"
    if rule == "vocabulary":
        values = ", ".join(repr(v) for v in col.vocabulary or ())
        return f"one of {values} (exact, case-sensitive)" + (" or null" if col.nullable else "")
    if rule == "range":
        lo, hi = _show(col.min), _show(col.max)
        if col.min is not None and col.max is not None:
            return f"between {lo} and {hi}"
        return f">= {lo}" if col.min is not None else f"<= {hi}"
    if rule == "finite":
        return "a finite number (no NaN or infinity)"
    if rule == "unique":
        return f"unique {col.name} (one row each)"
    if rule == "foreign_key":
        table, column = col.references  # type: ignore[misc]
        return f"a value present in {table}.{column}"
    raise ValueError(f"unknown column rule {rule!r}")


def _show(bound) -> str:
    if isinstance(bound, float) and abs(bound) >= 1e6:
        return f"{bound:,.0f} (the exact-decimal range of sums)"
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


_TYPE_TEXT = {
    "string": "text (VARCHAR; integers are accepted and read as text)",
    "int": "a whole number (integer, or whole-valued float or text)",
    "float": "a number (float, decimal or integer, or numeric text)",
    "date": "a date (DATE, a timestamp at midnight, or ISO text YYYY-MM-DD)",
    "timestamp": "a timestamp without time zone (TIMESTAMP, DATE, or ISO text)",
    "bool": "a boolean (BOOLEAN, or text true/false, t/f or 1/0; not yes/no)",
}
