"""``operator.toml``: the operator's settings that travel with a data directory."""
from __future__ import annotations

import datetime as _dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .problems import ContractError, Problem
from .timezones import check_zone

CONFIG_FILE = "operator.toml"
_KNOWN = ("operator", "currency", "sms_policy_start", "small_cell_threshold", "sms_after_attempts",
          "sms_window_hours", "timezone", "mapping")
#: The missed-call SMS rule when operator.toml does not state it (Norsk Tipping's, copied by Svenska Spel):
#: sent after the second unanswered attempt, and a customer answering within 48 hours of it counts as
#: reached after the SMS.
DEFAULT_SMS_AFTER_ATTEMPTS = 2
DEFAULT_SMS_WINDOW_HOURS = 48.0


@dataclass(frozen=True)
class OperatorConfig:
    """Settings read from ``operator.toml``.

    Attributes
    ----------
    operator : str
        Operator name, as it should appear in reports.
    currency : str
        Currency of all amounts (e.g. ``"SEK"``).
    sms_policy_start : datetime.date or None
        Date the missed-call SMS began; None if there was no such policy.
    small_cell_threshold : int
        Cells with fewer customers than this are suppressed in shared outputs.
    sms_after_attempts : int
        The missed-call SMS is sent after this many unanswered attempts of a
        case (default 2), so attempts ``sms_after_attempts + 1`` and later are
        the ones it can change.
    sms_window_hours : float
        A case answered within this many hours after its SMS counts as reached
        after the SMS (default 48).
    timezone : str or None
        The operator's IANA time zone (``"Europe/Stockholm"``): dates and times
        that carry a UTC offset are converted to local time in it, and refused
        when it is not set (see :mod:`carecall_eval.contract.timezones`).
        ``mapping.toml`` may set it instead.
    extra : Mapping
        Any further keys in the file, kept as read.
    """

    operator: str
    currency: str
    sms_policy_start: _dt.date | None = None
    small_cell_threshold: int = 10
    sms_after_attempts: int = DEFAULT_SMS_AFTER_ATTEMPTS
    sms_window_hours: float = DEFAULT_SMS_WINDOW_HOURS
    timezone: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}),
                                     compare=False)

    def __reduce__(self):  # picklable although `extra` is a read-only mapping proxy
        return (_rebuild_config, (self.operator, self.currency, self.sms_policy_start,
                                  self.small_cell_threshold, dict(self.extra), self.sms_after_attempts,
                                  self.sms_window_hours, self.timezone))


def _rebuild_config(operator, currency, sms_policy_start, small_cell_threshold, extra,
                    sms_after_attempts=DEFAULT_SMS_AFTER_ATTEMPTS,
                    sms_window_hours=DEFAULT_SMS_WINDOW_HOURS, timezone=None) -> OperatorConfig:
    return OperatorConfig(operator, currency, sms_policy_start, small_cell_threshold, sms_after_attempts,
                          sms_window_hours, timezone, MappingProxyType(extra))


def parse_operator_config(values: Mapping[str, Any]) -> tuple[OperatorConfig | None, list[Problem]]:
    """Check the values of ``operator.toml`` and build an :class:`OperatorConfig`.

    Parameters
    ----------
    values : Mapping
        The parsed TOML document.

    Returns
    -------
    config : OperatorConfig or None
        None when any problem was found.
    problems : list of Problem
        Every problem found (table ``"operator.toml"``, column = key).
    """
    problems: list[Problem] = []

    def bad(key: str, rule: str, found: Any, expected: str) -> None:
        problems.append(Problem(CONFIG_FILE, key, rule, 1, f"{key} = {found!r}", expected))

    out: dict[str, Any] = {}
    for key in ("operator", "currency"):
        if key not in values:
            problems.append(Problem(CONFIG_FILE, key, "required_key", 1, "(absent)",
                                    f'a line {key} = "..."'))
        elif not isinstance(values[key], str) or not values[key].strip():
            bad(key, "type", values[key], "a non-empty quoted string")
        else:
            out[key] = values[key]

    start = values.get("sms_policy_start")
    if start is None:
        out["sms_policy_start"] = None
    elif isinstance(start, _dt.datetime):  # a TOML date-time: datetime is a date subclass
        bad("sms_policy_start", "type", start, "a date such as 2023-03-01, not a date-time")
    elif isinstance(start, _dt.date):
        out["sms_policy_start"] = start
    elif isinstance(start, str):
        try:
            out["sms_policy_start"] = _dt.date.fromisoformat(start.strip())
        except ValueError:
            bad("sms_policy_start", "type", start, "an ISO date YYYY-MM-DD")
    else:
        bad("sms_policy_start", "type", start, "a TOML date or a quoted ISO date YYYY-MM-DD")

    threshold = values.get("small_cell_threshold", 10)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        bad("small_cell_threshold", "type", threshold, "a whole number >= 1 (default 10)")
    else:
        out["small_cell_threshold"] = threshold

    after = values.get("sms_after_attempts", DEFAULT_SMS_AFTER_ATTEMPTS)
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        bad("sms_after_attempts", "type", after, "a whole number >= 1: unanswered attempts before the "
            f"missed-call SMS (default {DEFAULT_SMS_AFTER_ATTEMPTS})")
    else:
        out["sms_after_attempts"] = after

    window = values.get("sms_window_hours", DEFAULT_SMS_WINDOW_HOURS)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < float("inf"):
        bad("sms_window_hours", "type", window,
            f"a number of hours > 0: an answer this soon after the SMS counts as reached after it "
            f"(default {DEFAULT_SMS_WINDOW_HOURS:g})")
    else:
        out["sms_window_hours"] = float(window)

    zone = values.get("timezone")
    if zone is not None:
        try:
            out["timezone"] = check_zone(zone)
        except ValueError as exc:
            problems.append(Problem(CONFIG_FILE, "timezone", "timezone", 1, f"timezone = {zone!r}",
                                    str(exc).split(": ", 1)[-1]))

    if problems:
        return None, problems
    extra = MappingProxyType({k: v for k, v in values.items() if k not in _KNOWN})
    return OperatorConfig(**out, extra=extra), problems


def _read_toml(path: Path) -> tuple[Mapping[str, Any] | None, list[Problem]]:
    if not path.is_file():
        return None, [Problem(CONFIG_FILE, None, "missing_file", 1, str(path),
                              "an operator.toml beside the tables (operator, currency, ...)")]
    try:
        with path.open("rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return None, [Problem(CONFIG_FILE, None, "unreadable_file", 1, f"{path}: {(exc.strerror or str(exc)).lower()}",
                              "an operator.toml the user running carecall_eval can read; fix its permissions")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        return None, [Problem(CONFIG_FILE, None, "unreadable_file", 1,
                              f"{path}: byte {raw[exc.start:exc.start + 1]!r} on line {line} is not UTF-8 "
                              f"(the file looks like Latin-1 or Windows-1252)",
                              "a TOML file saved as UTF-8 (TOML is always UTF-8): re-save operator.toml as UTF-8 "
                              "in your editor, e.g. `iconv -f latin1 -t utf-8`")]
    try:
        return tomllib.loads(text.removeprefix("\ufeff")), []
    except tomllib.TOMLDecodeError as exc:
        return None, [Problem(CONFIG_FILE, None, "unreadable_file", 1, f"{path}: {exc}",
                              "valid TOML (see the operator.toml section of docs/data-contract.md)")]


def read_operator_config(path: str | Path) -> OperatorConfig:
    """Read ``operator.toml`` from a data directory (or the file itself).

    Parameters
    ----------
    path : str or Path
        The data directory, or the path of the TOML file.

    Returns
    -------
    OperatorConfig

    Raises
    ------
    ContractError
        If the file is missing, is not valid TOML, or a value is missing or malformed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "operator.toml").write_text('operator = "Demo"\\ncurrency = "SEK"\\n'
    ...                                      'sms_policy_start = 2023-03-01\\n')
    >>> read_operator_config(d)
    OperatorConfig(operator='Demo', currency='SEK', sms_policy_start=datetime.date(2023, 3, 1),
                   small_cell_threshold=10, sms_after_attempts=2, sms_window_hours=48.0, timezone=None,
                   extra=mappingproxy({}))
    """
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    config, problems = load_operator_config(path)
    if config is None:
        lines = [f"  - {p.column or CONFIG_FILE}: {p.rule}: found {p.examples}; expected {p.expected}"
                 for p in problems]
        raise ContractError(f"{path} is not a valid operator.toml:\n" + "\n".join(lines))
    return config


def load_operator_config(path: Path) -> tuple[OperatorConfig | None, list[Problem]]:
    """Read and check ``operator.toml``, returning problems instead of raising."""
    values, problems = _read_toml(path)
    if values is None:
        return None, problems
    return parse_operator_config(values)
