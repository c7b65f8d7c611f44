"""The study design: who is compared with whom, from which index date, over which windows.

A :class:`StudyDesign` is a frozen dataclass; it serialises to and from JSON
and TOML so that every report records the design it used.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..matching.defaults import COHORT

CONTACTS = ("reached", "selected", "randomized")
COMPARISONS = ("unreached", "not_selected", "arms")
INDEXES = ("opened", "answered", "trigger")
TRIGGERS = ("high_loss", "red_self_test", "pause_lift_request", "risk_model", "other")

#: Baseline covariates used for matching and balance by default.
DEFAULT_COVARIATES = (
    "age", "gender", "tenure_years", "trigger", "index_time",
    "log_tl_28", "log_tl_84_29", "log_tl_365_85",
    "log_wagered_28", "log_wagered_84_29", "asinh_net_loss_28", "asinh_net_loss_84_29",
    "active_days_28", "active_days_84_29", "active_days_365_85",
    "share_casino", "share_sports", "share_lottery",
    "prior_limit", "prior_pause", "prior_self_exclusion", "log_deposits_84",
)


@dataclass(frozen=True)
class MatchingSpec:
    """How a cohort is matched: the options of :func:`carecall_eval.matching.match` a design sets.

    The defaults are the cohort's, declared and explained once in
    :data:`carecall_eval.matching.defaults.COHORT` (not :func:`match`'s MatchIt defaults).
    """

    method: str = COHORT.method
    distance: str = COHORT.distance
    ratio: int = COHORT.ratio
    replace: bool = COHORT.replace
    caliper: float | None = COHORT.caliper
    std_caliper: bool = COHORT.std_caliper
    order: str = COHORT.order
    exact: tuple[str, ...] | None = COHORT.exact
    discard: str = COHORT.discard
    seed: int | None = COHORT.seed


@dataclass(frozen=True)
class StudyDesign:
    """A study design for care-call evaluation.

    Parameters
    ----------
    contact : {"reached", "selected", "randomized"}
        ``"reached"``: phone cases with an answered attempt within
        ``attempt_window`` days of opening.  ``"selected"``: every case opened
        (intention to treat).  ``"randomized"``: cases with a randomized arm.
    comparison : {"unreached", "not_selected", "arms"}
        ``"unreached"``: phone cases never answered.  ``"not_selected"``:
        customers with a qualifying trigger and no case within
        ``not_selected_gap`` days.  ``"arms"``: the randomized control arm.
    index : {"opened", "answered", "trigger"} or None
        Index date for both groups.  Default (None): ``"opened"`` for the
        unreached and randomized designs, ``"trigger"`` for not-selected
        comparisons.  ``"answered"`` (contacts at their answered call,
        comparisons at their first attempt) misaligns the groups around a
        decaying peak and exists only to show that bias.
    channel : str
        Case channel for contact designs (default ``"phone"``).
    triggers : tuple of str or None
        Trigger types included (None: all).
    study_start, study_end : date or None
        Index dates are restricted to this period (None: the whole data).
    pre_window : int
        Days before the index used as the pre period (default 84).
    post_windows : tuple of int
        Follow-up windows in days from the index (default 28, 84, 365).
    attempt_window : int
        Days after opening within which an answered attempt counts as reached.
    not_selected_gap : int
        A trigger with no case for that customer within this many days is a
        "not selected" comparison index.
    min_tenure : int or None
        Minimum account age at index in days (None: ``pre_window``).
    prior_contact_days : int
        Exclude indexes with an earlier case for the customer within this many
        days.
    self_exclusion_days : int
        A self-exclusion within this many days before the index makes a
        customer ineligible.
    one_index_per_customer : bool
        Keep only each customer's earliest eligible index.
    include_randomized : bool
        Keep cases with a randomized arm in observational designs.
    covariates : tuple of str
        Baseline covariates used for matching and balance.
    matching : MatchingSpec
        Cohort matching settings.
    """

    contact: str = "reached"
    comparison: str = "unreached"
    index: str | None = None
    channel: str = "phone"
    triggers: tuple[str, ...] | None = None
    study_start: dt.date | None = None
    study_end: dt.date | None = None
    pre_window: int = 84
    post_windows: tuple[int, ...] = (28, 84, 365)
    attempt_window: int = 28
    not_selected_gap: int = 30
    min_tenure: int | None = None
    prior_contact_days: int = 365
    self_exclusion_days: int = 180
    one_index_per_customer: bool = True
    include_randomized: bool = False
    covariates: tuple[str, ...] = DEFAULT_COVARIATES
    matching: MatchingSpec = field(default_factory=MatchingSpec)

    def __post_init__(self) -> None:
        _check_choice("contact", self.contact, CONTACTS)
        _check_choice("comparison", self.comparison, COMPARISONS)
        if self.index is not None:
            _check_choice("index", self.index, INDEXES)
        if self.triggers is not None:
            for t in self.triggers:
                _check_choice("triggers", t, TRIGGERS)
        if (self.contact == "randomized") != (self.comparison == "arms"):
            raise InputError("StudyDesign: contact='randomized' goes with comparison='arms' and only with it; "
                             f"got contact={self.contact!r}, comparison={self.comparison!r}")
        if self.contact == "selected" and self.comparison != "not_selected":
            raise InputError("StudyDesign: contact='selected' (intention to treat) needs comparison='not_selected'")
        if self.index == "answered" and self.comparison != "unreached":
            raise InputError("StudyDesign: index='answered' exists only for the reached-vs-unreached design")
        for name in ("pre_window", "attempt_window", "not_selected_gap", "prior_contact_days"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"StudyDesign: {name} must be a positive integer number of days, got {v!r}")
        if not self.post_windows or any((not isinstance(w, int)) or w < 1 for w in self.post_windows):
            raise InputError(f"StudyDesign: post_windows must be positive integers, got {self.post_windows!r}")
        if self.study_start and self.study_end and self.study_start > self.study_end:
            raise InputError(f"StudyDesign: study_start {self.study_start} is after study_end {self.study_end}")

    # ------------------------------------------------------------------
    @property
    def index_rule(self) -> str:
        """The index actually used (``index`` or its design default)."""
        if self.index is not None:
            return self.index
        return "trigger" if self.comparison == "not_selected" else "opened"

    @property
    def tenure_days(self) -> int:
        return self.pre_window if self.min_tenure is None else self.min_tenure

    def describe(self) -> str:
        """One sentence saying who is compared with whom and from when."""
        who = {"reached": f"{self.channel} cases whose customer was reached",
               "selected": "every customer selected for a call (reached or not)",
               "randomized": "randomized arms"}[self.contact]
        vs = {"unreached": f"{self.channel} cases never reached",
              "not_selected": f"customers with a qualifying trigger but no case within {self.not_selected_gap} days",
              "arms": "the control arm"}[self.comparison]
        idx = {"opened": "the day the case was opened (both groups)",
               "answered": "the answered call for contacts and the first attempt for comparisons "
                           "(MISALIGNED: for demonstration only)",
               "trigger": "the trigger date (both groups)"}[self.index_rule]
        return f"Contact: {who}; comparison: {vs}; index: {idx}."

    def replace(self, **changes: Any) -> "StudyDesign":
        """A copy with some fields changed (``matching`` may be given as a dict)."""
        if isinstance(changes.get("matching"), dict):
            changes["matching"] = dataclasses.replace(self.matching, **changes["matching"])
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("study_start", "study_end"):
            d[k] = d[k].isoformat() if d[k] else None
        for k in ("triggers", "post_windows", "covariates"):
            d[k] = list(d[k]) if d[k] is not None else None
        if d["matching"]["exact"] is not None:
            d["matching"]["exact"] = list(d["matching"]["exact"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StudyDesign":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"StudyDesign: unknown field(s) {unknown}; known fields are {sorted(known)}")
        d = dict(d)
        for k in ("study_start", "study_end"):
            if d.get(k) is not None and not isinstance(d[k], dt.date):
                d[k] = dt.date.fromisoformat(str(d[k]))
        for k in ("triggers", "post_windows", "covariates"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        if "matching" in d:
            m = dict(d["matching"])
            mknown = {f.name for f in dataclasses.fields(MatchingSpec)}
            bad = sorted(set(m) - mknown)
            if bad:
                raise InputError(f"StudyDesign.matching: unknown field(s) {bad}; known fields are {sorted(mknown)}")
            if "exact" in m and m["exact"] is not None:
                m["exact"] = tuple(m["exact"])
            d["matching"] = MatchingSpec(**m)
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "StudyDesign":
        return cls.from_dict(json.loads(text))

    def to_toml(self) -> str:
        d = self.to_dict()
        m = d.pop("matching")
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if v is not None]
        lines.append("")
        lines.append("[matching]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in m.items() if v is not None]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_toml(cls, text: str) -> "StudyDesign":
        return cls.from_dict(tomllib.loads(text))

    @classmethod
    def read(cls, path: str | Path) -> "StudyDesign":
        """Read a design from a ``.toml`` or ``.json`` file.

        Raises
        ------
        carecall_eval.errors.InputError
            Naming the file: it does not exist or cannot be read, is not UTF-8, is not valid TOML or JSON
            (with the line and column), or holds a field or value the design does not take.
        """
        from ..errors import PathNotFoundError

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".json"):
            raise InputError(f"design file {path}: expected a .toml or .json file")
        if not path.exists():
            raise PathNotFoundError(f"design file {path} does not exist")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"design file {path}: byte {exc.start} is not UTF-8; save it as UTF-8") from None
        except OSError as exc:
            raise InputError(f"cannot read design file {path}: {(exc.strerror or str(exc)).lower()}") from None
        try:
            values = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"design file {path} is not valid TOML: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"design file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column "
                             f"{exc.colno}") from None
        if not isinstance(values, dict):
            raise InputError(f"design file {path}: expected a table of design fields, found "
                             f"{type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise InputError(f"design file {path}: {exc}") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise InputError(f"StudyDesign: {name}={value!r} is not one of {{{', '.join(map(repr, allowed))}}}")
