"""Allocate eligible customers to trial arms: reproducible, logged, verifiable.

Three designs (:data:`DESIGNS`):

``simple``
    Each customer independently, with probabilities in the ratio.
``blocked``
    Permuted blocks within strata: customers of a stratum in a random order,
    cut into blocks of ``block_size`` (a multiple of the ratio's parts, default
    twice their sum), each block holding the arms in the ratio in a random order.
``matched-sets``
    Statistical sets, as in the Norsk Tipping trial (triplets matched on sex,
    age and net loss): within each stratum, customers are sorted by the
    matching variables (all but the last cut into ``bands`` quantile bands, the
    last one continuous) and consecutive customers form a set of the ratio's
    size (2 for 1:1, 3 for 1:1:1, 5 for 1.5:1 = 3:2), whose members receive the
    arms in the ratio in a random order.  Customers left over in a stratum are
    pooled across strata into further sets; the last set may be incomplete.

Everything starts from the inputs sorted by ``customer_id`` and one
``numpy.random.default_rng(seed)``, so the same eligible list and seed give the
same allocation whatever the row order, and :meth:`Allocation.write` gives
byte-identical files.  The allocation log records the seed, the settings, a
fingerprint of the input (SHA-256 of its canonical content and of the file)
and a hash of the allocation itself; :func:`verify_allocation` recomputes them
and names any change.  Customers already allocated (in an earlier allocation
file, or with an arm in the operator's data) are refused, never drawn again.

>>> import pandas as pd
>>> el = pd.DataFrame({"customer_id": [f"C{i}" for i in range(12)], "gender": list("MF" * 6),
...                    "age": range(20, 32), "net_loss": [float(i * 100) for i in range(12)]})
>>> a = allocate(el, design="matched-sets", ratio="1:1:1", strata=["gender"], seed=7)
>>> a.table["arm"].value_counts().sort_index().to_dict()
{'call': 4, 'control': 4, 'letter': 4}
>>> bool(a.table.groupby("block")["arm"].nunique().eq(3).all())
True
>>> allocate(el.sample(frac=1, random_state=1), design="matched-sets", ratio="1:1:1", strata=["gender"],
...          seed=7).log["allocation_sha256"] == a.log["allocation_sha256"]
True
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .._validation import check_choice, check_int
from .._version import __version__
from ..contract.spec import ARMS
from ..errors import InputError
from ..results import Reporting, tidy

__all__ = ["DESIGNS", "Allocation", "allocate", "assign", "parse_ratio", "default_arms", "read_eligible",
           "read_allocation", "allocation_hash", "content_fingerprint", "log_path", "verify_allocation",
           "Verification"]

#: Allocation designs.
DESIGNS = ("simple", "blocked", "matched-sets")
#: Format name of the allocation log.
LOG_FORMAT = "carecall_eval allocation log"
LOG_VERSION = 1


# ----------------------------------------------------------------------------- ratio and arms
def parse_ratio(ratio) -> tuple[int, ...]:
    """``"1.5:1"`` -> ``(3, 2)``; ``"1:1:1"`` -> ``(1, 1, 1)``; a sequence of numbers is accepted too.

    >>> parse_ratio("1.5:1"), parse_ratio("1:1:1"), parse_ratio([2, 1])
    ((3, 2), (1, 1, 1), (2, 1))
    """
    parts = ratio.split(":") if isinstance(ratio, str) else list(ratio)
    try:
        fr = [Fraction(str(p).strip()).limit_denominator(1000) for p in parts]
    except (ValueError, ZeroDivisionError):
        raise InputError(f"ratio must look like '1:1', '1.5:1' or '1:1:1', got {ratio!r}") from None
    if len(fr) < 2 or any(f <= 0 for f in fr):
        raise InputError(f"ratio needs two or more positive parts such as '1:1', '1.5:1' or '1:1:1', got {ratio!r}")
    lcm = reduce(lambda a, b: a * b // math.gcd(a, b), (f.denominator for f in fr), 1)
    ints = [int(f * lcm) for f in fr]
    g = reduce(math.gcd, ints)
    return tuple(i // g for i in ints)


def ratio_label(parts: Sequence[int]) -> str:
    """``(3, 2)`` -> ``'1.5:1'`` (relative to the last arm); ``(1, 1, 1)`` -> ``'1:1:1'``."""
    last = Fraction(parts[-1])
    return ":".join(f"{float(Fraction(p) / last):g}" for p in parts)


def default_arms(k: int) -> tuple[str, ...]:
    """Arms for a ratio with ``k`` parts: call and control, or call, letter and control."""
    if k == 2:
        return ("call", "control")
    if k == 3:
        return ("call", "letter", "control")
    raise InputError(f"a ratio with {k} parts needs arms= naming each arm (from {list(ARMS)})")


def _check_arms(arms, k: int) -> tuple[str, ...]:
    arms = default_arms(k) if arms is None else tuple(arms)
    if len(arms) != k:
        raise InputError(f"arms {list(arms)} do not match the ratio's {k} parts")
    bad = [a for a in arms if a not in ARMS]
    if bad or len(set(arms)) != len(arms):
        raise InputError(f"arms must be distinct values of the contract's call_cases.arm {list(ARMS)}, "
                         f"got {list(arms)}")
    return arms


# ----------------------------------------------------------------------------- the draw
def _strata_labels(frame: pd.DataFrame, strata: Sequence[str]) -> np.ndarray:
    if not strata:
        return np.full(len(frame), "all", dtype=object)
    parts = [c + "=" + frame[c].astype(str) for c in strata]
    return reduce(lambda a, b: a + "|" + b, parts).to_numpy(dtype=object)


def _set_order(frame: pd.DataFrame, idx: np.ndarray, match_on: Sequence[str], bands: int) -> np.ndarray:
    """Units ``idx`` sorted for forming sets: quantile bands of all but the last variable, then the last."""
    if not match_on:
        return idx
    keys = []
    for c in match_on[:-1]:
        x = frame[c].to_numpy(float)[idx]
        r = pd.Series(x).rank(method="first").to_numpy() - 1          # ties: by position (customer_id order)
        keys.append(np.floor(r * bands / max(len(idx), 1)).astype(int))
    keys.append(frame[match_on[-1]].to_numpy(float)[idx])
    order = np.lexsort([np.arange(len(idx))] + keys[::-1])
    return idx[order]


def assign(frame: pd.DataFrame, *, design: str, parts: Sequence[int], arms: Sequence[str], rng: np.random.Generator,
           strata: Sequence[str] = (), match_on: Sequence[str] = (), bands: int = 5,
           block_size: int | None = None, block_prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Draw arms for the rows of ``frame`` (in its row order); return ``(arm, block)`` arrays.

    The primitive behind :func:`allocate` (and the simulator's randomized
    study).  ``frame`` must already be in a canonical order (sorted by
    customer id) for the draw to be reproducible.  ``block`` is None for
    simple randomization.
    """
    n = len(frame)
    parts = tuple(int(p) for p in parts)
    k = sum(parts)
    unit = np.repeat(np.asarray(arms, dtype=object), parts)          # one set / the smallest block
    arm = np.empty(n, dtype=object)
    block = np.full(n, None, dtype=object)
    if design == "simple":
        p = np.cumsum(parts) / k
        arm[:] = np.asarray(arms, dtype=object)[np.searchsorted(p, rng.random(n), side="right")]
        return arm, block
    labels = _strata_labels(frame, strata)
    counter = 0

    def new_id(letter: str) -> str:
        nonlocal counter
        counter += 1
        return f"{block_prefix}{letter}{counter:05d}"

    if design == "blocked":
        size = block_size if block_size is not None else 2 * k
        if size % k:
            raise InputError(f"block_size must be a multiple of {k} (the ratio's parts add up to {k}), got {size}")
        full = np.tile(unit, size // k)
        for s in sorted(set(labels)):
            idx = np.flatnonzero(labels == s)
            idx = idx[rng.permutation(len(idx))]
            for start in range(0, len(idx), size):
                members = idx[start:start + size]
                arm[members] = rng.permutation(full)[:len(members)]
                block[members] = new_id("B")
        return arm, block
    if design != "matched-sets":
        raise InputError(f"design must be one of {list(DESIGNS)}, got {design!r}")
    leftovers = []
    for s in sorted(set(labels)):
        idx = _set_order(frame, np.flatnonzero(labels == s), match_on, bands)
        n_full = len(idx) // k * k
        for start in range(0, n_full, k):
            members = idx[start:start + k]
            arm[members] = rng.permutation(unit)
            block[members] = new_id("S")
        leftovers.append(idx[n_full:])
    rest = np.concatenate(leftovers) if leftovers else np.array([], int)
    rest = _set_order(frame, np.sort(rest), match_on[-1:], bands)
    for start in range(0, len(rest), k):
        members = rest[start:start + k]
        arm[members] = rng.permutation(unit)[:len(members)]
        block[members] = new_id("S")
    return arm, block


# ----------------------------------------------------------------------------- hashing
def _canonical_csv(frame: pd.DataFrame) -> bytes:
    cols = ["customer_id"] + sorted(c for c in frame.columns if c != "customer_id")
    f = frame[cols].sort_values("customer_id", kind="mergesort")
    return f.to_csv(index=False, lineterminator="\n", na_rep="").encode()


def content_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's canonical content: rows sorted by customer_id, columns by name, CSV text."""
    return hashlib.sha256(_canonical_csv(frame)).hexdigest()


def allocation_hash(table: pd.DataFrame) -> str:
    """SHA-256 of an allocation's content (customer_id, arm, block), independent of the file format."""
    return content_fingerprint(table[["customer_id", "arm", "block"]])


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log_path(allocation_path: str | os.PathLike) -> Path:
    """``allocation.parquet`` -> ``allocation.log.json`` (beside it)."""
    p = Path(allocation_path)
    return p.with_name(p.name.split(".")[0] + ".log.json")


# ----------------------------------------------------------------------------- reading
def _read_table(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist (a Parquet or CSV file)")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"customer_id": str, "block": str, "arm": str})
    raise InputError(f"{what} {path}: expected a .parquet or .csv file")


def read_eligible(eligible) -> tuple[pd.DataFrame, dict]:
    """The eligible list (DataFrame or Parquet/CSV path) checked, and a description of where it came from."""
    source: dict = {}
    if isinstance(eligible, (str, os.PathLike)):
        path = Path(eligible)
        frame = _read_table(path, "eligible list")
        source = {"file": path.name, "file_sha256": _file_sha256(path)}
    elif isinstance(eligible, pd.DataFrame):
        frame = eligible.copy()
    else:
        raise TypeError(f"allocate: eligible must be a DataFrame or a Parquet/CSV path, got {type(eligible).__name__}")
    if "customer_id" not in frame.columns:
        raise InputError(f"the eligible list needs a customer_id column; columns found: {list(frame.columns)}")
    if frame["customer_id"].isna().any():
        raise InputError(f"the eligible list has {int(frame['customer_id'].isna().sum())} rows without a customer_id")
    frame["customer_id"] = frame["customer_id"].astype(str)
    dup = frame["customer_id"][frame["customer_id"].duplicated()]
    if len(dup):
        raise InputError(f"the eligible list has {dup.nunique()} customer_id(s) more than once "
                         f"(first: {', '.join(sorted(dup.unique())[:5])}); each customer is allocated once")
    frame = frame.sort_values("customer_id", kind="mergesort").reset_index(drop=True)
    return frame, source


def read_allocation(path) -> pd.DataFrame:
    """An allocation file written by :meth:`Allocation.write` (customer_id, arm, block, stratum)."""
    t = _read_table(Path(path), "allocation")
    missing = [c for c in ("customer_id", "arm", "block") if c not in t.columns]
    if missing:
        raise InputError(f"allocation {path} lacks column(s) {missing}: not an allocation written by "
                         "carecall-eval allocate")
    t["customer_id"] = t["customer_id"].astype(str)
    t["block"] = t["block"].astype(object).where(t["block"].notna(), None)
    return t


def _already_allocated(previous, data) -> dict[str, str]:
    """customer_id -> where they were allocated before (earlier allocation files, arms in the data)."""
    seen: dict[str, str] = {}
    for p in previous or ():
        for c in read_allocation(p)["customer_id"]:
            seen.setdefault(c, Path(p).name)
    if data is not None:
        from ..contract.base import open_data

        ds = open_data(data, "allocate")
        cases = ds.table("call_cases")
        for c in cases.loc[cases["arm"].notna(), "customer_id"].astype(str):
            seen.setdefault(c, "an arm in the data's call_cases")
    return seen


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False, repr=False)
class Allocation(Reporting):
    """A drawn allocation: the table, its log and its balance.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per allocated customer, sorted by ``customer_id``: ``arm``,
        ``block`` (matched set or randomization block; None for simple
        randomization) and ``stratum``.
    log : dict
        Seed, settings, input fingerprint, ``allocation_sha256``, counts and the
        customers refused because they were allocated before.
    balance : pandas.DataFrame
        Per baseline variable (one row per level of a categorical one): the
        mean (or share) in each arm and the standardized difference of each arm
        against the reference arm (``control``; pooled SD).
    """

    table: pd.DataFrame
    log: dict
    balance: pd.DataFrame
    name: str = field(default="allocation", init=False)

    @property
    def settings(self) -> dict:
        return dict(self.log)

    @property
    def summary(self) -> pd.DataFrame:
        rows = [{"metric": "allocation.n", "group": a, "estimate": float(n), "n": int(n),
                 "method": f"{self.log['design']} randomization, ratio {self.log['ratio']}"}
                for a, n in self.log["n_by_arm"].items()]
        ref = self.log["reference_arm"]
        for _, r in self.balance.iterrows():
            for a in self.log["arms"]:
                if a != ref:
                    rows.append({"metric": "allocation.smd", "group": a, "variable": r["variable"],
                                 "estimate": r[f"smd_{a}"], "n": int(self.log["n_by_arm"][a]),
                                 "method": f"standardized difference {a} vs {ref} (pooled SD)"})
        return tidy(rows)

    @property
    def text(self) -> str:
        from ..narrative.randomized import allocation_text

        return allocation_text(self.log, self.balance)

    def _plot_data(self) -> dict:
        return {"balance": self.balance.copy()}

    def write(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """Write the allocation (Parquet, or CSV when ``out`` ends in .csv) and its log beside it.

        Refuses to overwrite: an allocation is never redrawn.  The same
        allocation gives byte-identical files.
        """
        from ..writer import write_bytes, write_text

        out = Path(out)
        logp = log_path(out)
        for p in (out, logp):
            if p.exists():
                raise InputError(f"{p} exists: an allocation is never overwritten or redrawn; write the new one "
                                 "elsewhere and pass the old one with --previous (its customers are refused), or "
                                 "check it with carecall-eval verify-allocation")
        write_bytes(out, allocation_bytes(self.table, out.suffix.lower()), what="allocation")
        write_text(logp, json.dumps(self.log, indent=2, sort_keys=True) + "\n", what="allocation log")
        return out, logp


def allocation_bytes(table: pd.DataFrame, suffix: str = ".parquet") -> bytes:
    """The file bytes of an allocation table (deterministic for the same table)."""
    t = table[["customer_id", "arm", "block", "stratum"]]
    if suffix == ".csv":
        return t.to_csv(index=False, lineterminator="\n").encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("customer_id", pa.string()), ("arm", pa.string()), ("block", pa.string()),
                        ("stratum", pa.string())])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(t, schema=schema, preserve_index=False), buf, compression="zstd")
    return buf.getvalue()


def _balance(frame: pd.DataFrame, arm: np.ndarray, arms: Sequence[str], ref: str, variables: Sequence[str]):
    rows = []
    for v in variables:
        x = frame[v]
        if pd.api.types.is_bool_dtype(x) or not pd.api.types.is_numeric_dtype(x):
            levels = sorted(x.astype(str).unique())
            if len(levels) > 20:
                continue
            terms = [(f"{v}={lv}", (x.astype(str) == lv).to_numpy(float)) for lv in levels]
        else:
            terms = [(v, x.to_numpy(float))]
        for name, vals in terms:
            row: dict[str, object] = {"variable": name}
            m, var = {}, {}
            for a in arms:
                xa = vals[arm == a]
                xa = xa[np.isfinite(xa)]
                m[a] = float(xa.mean()) if len(xa) else np.nan
                var[a] = float(xa.var(ddof=1)) if len(xa) > 1 else np.nan
                row[f"mean_{a}"] = m[a]
            for a in arms:
                if a == ref:
                    continue
                sd = math.sqrt((var[a] + var[ref]) / 2) if np.isfinite(var[a] + var[ref]) else np.nan
                row[f"smd_{a}"] = (m[a] - m[ref]) / sd if sd and sd > 0 else 0.0 if m[a] == m[ref] else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def allocate(eligible, /, *, design: str = "blocked", ratio="1:1", arms: Sequence[str] | None = None,
             strata: Sequence[str] = (), match_on: Sequence[str] = ("age", "net_loss"), bands: int = 5,
             block_size: int | None = None, seed: int | None = None, previous: Sequence = (), data=None,
             exclude_allocated: bool = False, block_prefix: str = "") -> Allocation:
    """Randomize eligible customers to arms.

    Parameters
    ----------
    eligible : pandas.DataFrame or path
        One row per eligible customer: ``customer_id`` and the baseline
        variables used for strata, matching and the balance table (for
        example ``gender``, ``age``, ``net_loss``).  A Parquet or CSV file.
    design : {"simple", "blocked", "matched-sets"}
        See the module docstring.
    ratio : str or sequence
        Arm ratio, e.g. ``"1:1"``, ``"1.5:1"`` (call : control) or ``"1:1:1"``
        (call : letter : control).
    arms : sequence of str, optional
        Arm names in the ratio's order (default: call, control; or call,
        letter, control for three parts); values of ``call_cases.arm``.
    strata : sequence of str
        Columns within whose levels blocks or sets are formed (exact).
    match_on : sequence of str
        Numeric columns matched sets are formed on (``matched-sets`` only).
    bands : int
        Quantile bands of each matching variable but the last.
    block_size : int, optional
        Size of permuted blocks (``blocked``); a multiple of the ratio's sum.
    seed : int
        Seed of the draw (required: an allocation must be reproducible).
    previous : sequence of paths
        Earlier allocation files; their customers are refused.
    data : path or Dataset, optional
        The operator's data: customers with an arm in ``call_cases`` are refused.
    exclude_allocated : bool
        Leave refused customers out (listed in the log) instead of raising.
    block_prefix : str
        Prefix of the block and set ids (a site code, say), so that the ids of
        several allocations cannot collide.

    Returns
    -------
    Allocation

    Raises
    ------
    InputError
        For a bad argument, an eligible list without ``customer_id`` or with
        duplicates or missing values in the columns used, and (unless
        ``exclude_allocated``) customers allocated before.
    """
    design = str(check_choice("design", design, DESIGNS))
    if seed is None:
        raise InputError("allocate needs seed= (an allocation must be reproducible: the seed goes into the log)")
    seed = check_int("seed", seed, 0)
    bands = check_int("bands", bands, 1)
    parts = parse_ratio(ratio)
    arms = _check_arms(arms, len(parts))
    strata = list(strata or ())
    match_on = list(match_on or ()) if design == "matched-sets" else []
    frame, source = read_eligible(eligible)
    need = strata + match_on
    absent = [c for c in need if c not in frame.columns]
    if absent:
        raise InputError(f"the eligible list lacks column(s) {absent} named in strata/match_on; columns found: "
                         f"{list(frame.columns)}")
    for c in need:
        if frame[c].isna().any():
            ids = frame.loc[frame[c].isna(), "customer_id"].head(5).tolist()
            raise InputError(f"the eligible list has {int(frame[c].isna().sum())} missing value(s) in {c!r} "
                             f"(first customers: {', '.join(ids)}); fill them or leave the column out")
    for c in match_on:
        if not pd.api.types.is_numeric_dtype(frame[c]):
            raise InputError(f"match_on column {c!r} must be numeric (categorical variables go in strata)")
    if block_size is not None:
        block_size = check_int("block_size", block_size, 1)
    fingerprint = content_fingerprint(frame)
    seen = _already_allocated(previous, data)
    refused = frame["customer_id"].isin(list(seen)).to_numpy()
    if refused.any() and not exclude_allocated:
        ids = frame.loc[refused, "customer_id"].tolist()
        where = sorted({seen[c] for c in ids})
        raise InputError(f"{len(ids)} customer(s) of the eligible list were allocated before (in {', '.join(where)}; "
                         f"first: {', '.join(ids[:5])}): an allocation is never redrawn. Remove them from the "
                         "eligible list, or pass exclude_allocated=True (--exclude-allocated) to leave them out")
    refused_ids = frame.loc[refused, "customer_id"].tolist()
    frame = frame[~refused].reset_index(drop=True)
    if frame.empty:
        raise InputError("no customers left to allocate")
    rng = np.random.default_rng(seed)
    arm, block = assign(frame, design=design, parts=parts, arms=arms, rng=rng, strata=strata, match_on=match_on,
                        bands=bands, block_size=block_size, block_prefix=str(block_prefix))
    table = pd.DataFrame({"customer_id": frame["customer_id"].to_numpy(), "arm": arm, "block": block,
                          "stratum": _strata_labels(frame, strata)})
    ref = "control" if "control" in arms else arms[-1]
    variables = [c for c in frame.columns if c != "customer_id"]
    balance = _balance(frame, arm, arms, ref, variables)
    counts = {a: int((arm == a).sum()) for a in arms}
    log = {
        "format": LOG_FORMAT, "format_version": LOG_VERSION, "carecall_eval_version": __version__,
        "design": design, "ratio": ratio_label(parts), "ratio_parts": list(parts), "arms": list(arms),
        "reference_arm": ref, "strata": strata, "match_on": match_on, "bands": bands if match_on else None,
        "block_size": (block_size or 2 * sum(parts)) if design == "blocked" else
        (sum(parts) if design == "matched-sets" else None),
        "block_prefix": str(block_prefix), "seed": seed, "numpy_bit_generator": "PCG64 (numpy.random.default_rng)",
        "input": {"sha256_content": fingerprint, "columns": list(frame.columns),
                  "n_rows": int(len(frame) + refused.sum()), **source},
        "previous": [{"file": Path(p).name, "allocation_sha256": allocation_hash(read_allocation(p))}
                     for p in previous or ()],
        "refused": {"n": len(refused_ids), "customers": refused_ids},
        "n_allocated": int(len(table)), "n_by_arm": counts,
        "n_blocks": int(pd.Series(block).nunique()) if design != "simple" else 0,
        "allocation_sha256": allocation_hash(table),
    }
    return Allocation(table, log, balance)


# ----------------------------------------------------------------------------- verification
@dataclass(frozen=True, eq=False, repr=False)
class Verification(Reporting):
    """Result of :func:`verify_allocation`: one row per check, ``ok`` when none failed."""

    checks: pd.DataFrame
    settings: dict
    name: str = field(default="allocation_check", init=False)

    @property
    def ok(self) -> bool:
        return bool(self.checks["passed"].all())

    @property
    def summary(self) -> pd.DataFrame:
        return tidy([{"metric": "allocation.check", "group": r["check"], "estimate": float(r["passed"]),
                      "method": r["detail"]} for _, r in self.checks.iterrows()])

    @property
    def text(self) -> str:
        from ..narrative.randomized import verification_text

        return verification_text(self.checks, self.settings)


def verify_allocation(allocation, /, *, log=None, eligible=None, data=None) -> Verification:
    """Check that an allocation is the one that was drawn (and, optionally, the one fielded).

    Parameters
    ----------
    allocation : path
        The allocation file.
    log : path, optional
        Its log (default: beside it, ``<name>.log.json``).
    eligible : DataFrame or path, optional
        The eligible list: its fingerprint must match the log, and drawing again
        with the log's settings and seed must give the same allocation.
    data : path or Dataset, optional
        The operator's data: every allocated customer's case must carry the
        allocated arm (and block, when the data have a ``block`` column), and
        no one outside the allocation may have an arm.

    Returns
    -------
    Verification
        ``ok`` is False when anything changed; ``text`` names each difference.
    """
    apath = Path(allocation)
    lpath = Path(log) if log is not None else log_path(apath)
    if not lpath.is_file():
        raise InputError(f"allocation log {lpath} does not exist (written beside the allocation by "
                         "carecall-eval allocate); pass --log")
    logd = json.loads(lpath.read_text())
    table = read_allocation(apath)
    checks = []

    def add(check, passed, detail):
        checks.append({"check": check, "passed": bool(passed), "detail": detail})

    h = allocation_hash(table)
    add("allocation_hash", h == logd.get("allocation_sha256"),
        "the allocation's content hash matches the log" if h == logd.get("allocation_sha256") else
        f"the allocation was changed after it was drawn: content hash {h[:12]}... but the log recorded "
        f"{str(logd.get('allocation_sha256'))[:12]}...")
    counts = table["arm"].value_counts().to_dict()
    same = {a: int(counts.get(a, 0)) for a in logd.get("arms", [])} == logd.get("n_by_arm")
    add("arm_counts", same, "arm counts match the log" if same else
        f"arm counts {dict(sorted(counts.items()))} differ from the log's {logd.get('n_by_arm')}")
    if eligible is not None:
        frame, _ = read_eligible(eligible)
        fp = content_fingerprint(frame)
        add("eligible_fingerprint", fp == logd["input"]["sha256_content"],
            "the eligible list is the one allocated" if fp == logd["input"]["sha256_content"] else
            "the eligible list differs from the one allocated (content fingerprint changed)")
        kept = frame[~frame["customer_id"].isin(logd["refused"]["customers"])]
        redo = allocate(kept, design=logd["design"], ratio=logd["ratio_parts"], arms=logd["arms"],
                        strata=logd["strata"], match_on=logd["match_on"] or (), bands=logd["bands"] or 5,
                        block_size=logd["block_size"] if logd["design"] == "blocked" else None, seed=logd["seed"],
                        block_prefix=logd.get("block_prefix", ""))
        ok = redo.log["allocation_sha256"] == h
        add("redraw", ok, "drawing again with the log's settings and seed gives this allocation" if ok else
            "drawing again with the log's settings and seed gives a different allocation")
    if data is not None:
        from ..contract.base import open_data

        ds = open_data(data, "verify_allocation")
        cases = ds.table("call_cases")
        cases = cases.assign(customer_id=cases["customer_id"].astype(str))
        fielded = cases[cases["arm"].notna()]
        m = table.merge(fielded[["customer_id", "arm"] + (["block"] if "block" in fielded.columns else [])],
                        on="customer_id", how="left", suffixes=("", "_data"))
        wrong = m[m["arm_data"].notna() & (m["arm_data"] != m["arm"])]
        add("fielded_arms", wrong.empty, "every fielded case carries its allocated arm" if wrong.empty else
            f"{wrong['customer_id'].nunique()} allocated customer(s) were fielded in another arm "
            f"(first: {', '.join(wrong['customer_id'].head(5))})")
        if "block_data" in m.columns:
            wb = m[m["block_data"].notna() & (m["block_data"].astype(str) != m["block"].astype(str))]
            add("fielded_blocks", wb.empty, "every fielded case carries its allocated block" if wb.empty else
                f"{wb['customer_id'].nunique()} customer(s) carry another block in the data")
        extra = fielded[~fielded["customer_id"].isin(table["customer_id"])]
        add("unallocated_arms", extra.empty, "no one outside the allocation has an arm in the data" if extra.empty
            else f"{extra['customer_id'].nunique()} customer(s) have an arm in the data but are not in the allocation")
        unfielded = m["arm_data"].isna().sum()
        add("not_fielded", True, f"{int(unfielded)} allocated customer(s) have no case with an arm in the data yet")
    return Verification(pd.DataFrame(checks), {"allocation": apath.name, "log": lpath.name,
                                               "seed": logd.get("seed"), "design": logd.get("design")})
