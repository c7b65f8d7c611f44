"""Precision study (issue 17): can the primary spending estimate be made narrower without bias or lost coverage?

Each seed simulates a fresh operator (40,000 customers, two years), builds the default cohort
(reached vs unreached phone cases, both indexed at opening) and estimates the 84-day effect on
theoretical loss - always the same estimand, the ratio of the contacts' mean post-window spending
to their counterfactual mean - with the current primary (matched PPML) and candidates:

* matched PPML + history: the primary plus a monthly profile of the year before the index
  (13 blocks of 28 days: spending per observed day, share of days played, share observable);
* DR: augmented inverse-probability weighting for the ATT (orthogonal score, influence-function
  interval on the log ratio) with a PPML outcome model on the comparisons and a logit propensity,
  both on the design covariates, over every eligible comparison (no caliper, no discarding);
* DR + history: the same with the monthly profile in the outcome model;
* DR + history (weighted): outcome model fitted with the odds weights (augmentation term zero);
* DR + history (pooled outcome model): the outcome model fitted on contacts and comparisons together
  with a contact indicator (common slopes), predicted with the indicator at 0; "pooled, weighted"
  does both;
* DR + history, + not-selected pool: the comparisons extended with customers who had a qualifying
  trigger and no case within 30 days (indexed at the trigger) - a further comparison pool.

The history profile also carries the cohort's last 7 days (spending per day, share of days played).

Variants (simulator parameters): default; a larger effect (call_effect 0.75); a null call effect
(call_effect 1.0: pauses and self-exclusions agreed on calls still act, so the realised truth is
slightly negative); stronger selection into answering ("selection": the answer model's age,
spending and casino coefficients tripled - the simulator has no parameter for it, so this study
wraps its answer-logit function in-process; the simulator's file is not changed).

The truth is the simulator's realised effect over the same window (``truth.json``:
``realised_att_theoretical_loss.post_84d``).  Simulated cohorts (with the history blocks) are
cached under ``benchmarks/out/precision/<variant>/`` so a rerun only re-estimates.

    python benchmarks/precision_study.py --seeds 40 --variants default
    python benchmarks/precision_study.py --seeds 20 --variants effect null selection
"""
from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from carecall_eval.cohorts import StudyDesign, build_cohort
from carecall_eval.cohorts.build import Cohort
from carecall_eval.contract import load
from carecall_eval.outcomes.spending import matched_ppml
from carecall_eval.outcomes.spending_dr import add_history, baseline_design, dr_ratio, history_covariates
from carecall_eval.simulate import simulate

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "precision"
WINDOW = 84
CUSTOMERS = 40_000
POOL = True     # also estimate with the not-selected pool (--no-pool skips it: it roughly doubles the rows)

VARIANTS = {
    "default": {},
    "effect": {"call_effect": 0.75},
    "null": {"call_effect": 1.0},
    "selection": {"_answer_selection": 3.0},
}
FIRST_SEED = {"default": 5000, "effect": 6000, "null": 7000, "selection": 8000}


# ---------------------------------------------------------------------------------------------- data
def _answer_selection(factor: float):
    """Context: the simulator's answer logit with its age, spending and casino terms multiplied by `factor`."""
    import contextlib
    import importlib
    import pkgutil

    import carecall_eval.simulate as simmod

    mods = [simmod]
    if hasattr(simmod, "__path__"):    # a package (after the simulator's split)
        mods += [importlib.import_module(f"{simmod.__name__}.{m.name}") for m in pkgutil.iter_modules(simmod.__path__)]
    # the answer model the simulator calls: the log-odds of a case's attempts (calls.answer_logits)
    owners = [m for m in mods if "answer_logits" in vars(m)]
    if not owners:
        raise RuntimeError("precision_study: the simulator has no answer_logits to strengthen selection")
    orig = vars(owners[0])["answer_logits"]

    def stronger(p, days, age, log_spend, pref, hours):
        extra = 0.25 * (age - 40) / 10 - 0.15 * (log_spend - 9.0) - 0.8 * pref[2]
        return orig(p, days, age, log_spend, pref, hours) + (factor - 1.0) * extra

    @contextlib.contextmanager
    def patched():
        users = [m for m in mods if vars(m).get("answer_logits") is orig]
        for m in users:
            m.answer_logits = stronger
        try:
            yield
        finally:
            for m in users:
                m.answer_logits = orig
    return patched()


def prepare(variant: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, float, dict]:
    """Cohort table (with history blocks), the not-selected pool and the truth of one simulated operator, cached.

    The pool: comparison rows of the design reached vs not selected (customers with a qualifying trigger
    and no case within 30 days, indexed at the trigger), with the same covariates and history blocks.
    """
    d = OUT / variant
    f_tab, f_pool, f_truth = d / f"s{seed}.parquet", d / f"s{seed}.pool.parquet", d / f"s{seed}.truth.json"
    if f_tab.exists() and f_pool.exists() and f_truth.exists():
        truth = json.loads(f_truth.read_text())
        return (pd.read_parquet(f_tab), pd.read_parquet(f_pool),
                truth["realised"]["realised_att_theoretical_loss"][f"post_{WINDOW}d"], truth)
    d.mkdir(parents=True, exist_ok=True)
    raw = d / f"raw{seed}"
    params = dict(VARIANTS[variant])
    factor = params.pop("_answer_selection", None)
    if factor is not None:
        with _answer_selection(factor):
            truth = simulate(raw, customers=CUSTOMERS, seed=seed, **params)
    else:
        truth = simulate(raw, customers=CUSTOMERS, seed=seed, **params)
    ds = load(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = add_history(ds, build_cohort(ds, StudyDesign()).table)
        pool = build_cohort(ds, StudyDesign(contact="reached", comparison="not_selected")).table
        pool = add_history(ds, pool[pool["contact"] == 0])
    for t, f in ((table, f_tab), (pool, f_pool)):
        t.attrs = {}
        t.to_parquet(f)
    truth["data_end"] = str(pd.Timestamp(ds.data_end).date())
    f_truth.write_text(json.dumps(truth))
    shutil.rmtree(raw)
    return table, pool, truth["realised"]["realised_att_theoretical_loss"][f"post_{WINDOW}d"], truth


# ---------------------------------------------------------------------------------------------- estimators
def _matched_ppml(m: pd.DataFrame, covariates: list[str]):
    """The primary matched PPML, clustered by customer (matching with replacement), old or new signature."""
    if "groups" in inspect.signature(matched_ppml).parameters:
        return matched_ppml(m, "tl", WINDOW, covariates, groups=m["customer_id"].to_numpy())
    return matched_ppml(m, "tl", WINDOW, covariates, replace=True)


def estimates(table: pd.DataFrame, pool: pd.DataFrame, data_end) -> dict:
    """Every estimator's (estimate, ci_low, ci_high) on one cohort table."""
    design = StudyDesign()
    cohort = Cohort(table=table, flow=pd.DataFrame(), design=design, data_end=pd.Timestamp(data_end))
    cov = cohort.covariates
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = cohort.match().matched_data()
        m = m[m[f"followup_{WINDOW}"]]
        out["matched PPML (primary)"] = _matched_ppml(m, cov)
        h = history_covariates(m)
        hcols = [c for c in baseline_design(m, cov, h).columns if c in h.columns]   # not aliased with cov
        mh = pd.concat([m, h[hcols]], axis=1)
        out["matched PPML + history"] = _matched_ppml(mh, cov + hcols)
        full = table[table[f"followup_{WINDOW}"]]
        hist = history_covariates(full)
        out["DR"] = dr_ratio(full, window=WINDOW, covariates=cov)
        out["DR + history"] = dr_ratio(full, window=WINDOW, covariates=cov, outcome_extra=hist)
        out["DR + history (weighted)"] = dr_ratio(full, window=WINDOW, covariates=cov, outcome_extra=hist,
                                                  weighted_outcome=True)
        out["DR + history (pooled outcome model)"] = dr_ratio(full, window=WINDOW, covariates=cov,
                                                              outcome_extra=hist, pooled_outcome=True)
        out["DR + history (pooled, weighted)"] = dr_ratio(full, window=WINDOW, covariates=cov, outcome_extra=hist,
                                                          pooled_outcome=True, weighted_outcome=True)
        if not POOL:
            return out
        both = pd.concat([full, pool[pool[f"followup_{WINDOW}"]]], ignore_index=True)
        out["DR + history, + not-selected pool"] = dr_ratio(both, window=WINDOW, covariates=cov,
                                                            outcome_extra=history_covariates(both))
    return out


def run(variant: str, seeds: int, first_seed: int | None = None) -> pd.DataFrame:
    rows = []
    s0 = FIRST_SEED[variant] if first_seed is None else first_seed
    for seed in range(s0, s0 + seeds):
        t0 = time.perf_counter()
        table, pool, true, truth = prepare(variant, seed)
        t1 = time.perf_counter()
        est = estimates(table, pool, truth["data_end"])
        for label, e in est.items():
            rows.append({"variant": variant, "seed": seed, "estimator": label, "truth": true,
                         "estimate": e.estimate, "ci_low": e.ci_low, "ci_high": e.ci_high, "se": e.se})
        print(f"  {variant} seed {seed}: truth {true:+.3f}, " +
              ", ".join(f"{k.split(' (')[0] if k.startswith('matched PPML (') else k} {e.estimate:+.3f}"
                        f"±{(e.ci_high - e.ci_low) / 2:.3f}" for k, e in est.items()) +
              f" ({t1 - t0:.0f} s data, {time.perf_counter() - t1:.0f} s estimates)", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def report(df: pd.DataFrame) -> pd.DataFrame:
    """Bias, RMSE, coverage and mean half-width (points) with Monte Carlo standard errors."""
    df = df.assign(err=100 * (df["estimate"] - df["truth"]), hw=100 * (df["ci_high"] - df["ci_low"]) / 2,
                   covered=(df["ci_low"] <= df["truth"]) & (df["truth"] <= df["ci_high"]))

    def agg(g):
        k = len(g)
        rmse = float(np.sqrt(np.mean(g["err"] ** 2)))
        cov = float(g["covered"].mean())
        return pd.Series({
            "seeds": k, "truth": 100 * g["truth"].mean(),
            "bias": g["err"].mean(), "bias_mc": g["err"].std(ddof=1) / np.sqrt(k),
            "rmse": rmse, "rmse_mc": float(np.std(g["err"] ** 2, ddof=1) / np.sqrt(k) / (2 * rmse)) if rmse else 0.0,
            "coverage": 100 * cov, "coverage_mc": 100 * np.sqrt(cov * (1 - cov) / k),
            "half_width": g["hw"].mean(), "half_width_mc": g["hw"].std(ddof=1) / np.sqrt(k),
        })
    return df.groupby(["variant", "estimator"], sort=False).apply(agg, include_groups=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--first-seed", type=int, default=None)
    ap.add_argument("--out", help="write per-seed rows to this CSV")
    ap.add_argument("--prepare-only", action="store_true", help="only simulate and cache the cohorts")
    ap.add_argument("--append", metavar="CSV", help="estimate seed by seed, appending to (and resuming from) CSV; "
                    "--seeds for the first variant, --seeds-others for the rest")
    ap.add_argument("--seeds-others", type=int, default=20)
    ap.add_argument("--no-pool", action="store_true", help="skip the candidate with the not-selected pool")
    a = ap.parse_args(argv)
    global POOL
    POOL = not a.no_pool
    t0 = time.perf_counter()
    if a.append:
        # round robin over the variants (the first one twice per round), one CSV row block per seed, so an
        # interrupted run keeps every finished seed and a rerun skips them
        # keep_default_na=False: the variant "null" is a name, not a missing value
        done = pd.read_csv(a.append, keep_default_na=False) if Path(a.append).exists() \
            else pd.DataFrame(columns=["variant", "seed"])
        have = set(zip(done["variant"], done["seed"]))
        plan = []
        for k in range(a.seeds):
            for j, v in enumerate(a.variants):
                ks = (2 * k, 2 * k + 1) if j == 0 else (k,)
                limit = a.seeds if j == 0 else a.seeds_others
                plan += [(v, FIRST_SEED[v] + kk) for kk in ks if kk < limit]
        for v, seed in plan:
            if (v, seed) in have:
                continue
            part = run(v, 1, seed)
            part.to_csv(a.append, mode="a", header=not Path(a.append).exists(), index=False)
        df = pd.read_csv(a.append, keep_default_na=False)
        df = df[df["variant"].isin(a.variants)].drop_duplicates(["variant", "seed", "estimator"])
        pd.set_option("display.width", 220)
        print(f"\nSpending, {WINDOW}-day theoretical loss, {CUSTOMERS:,} customers per seed; points; mc = Monte Carlo "
              f"standard error; {time.perf_counter() - t0:.0f} s")
        print(report(df).round(2).to_string())
        return 0
    if a.prepare_only:
        for v in a.variants:
            s0 = FIRST_SEED[v] if a.first_seed is None else a.first_seed
            for seed in range(s0, s0 + a.seeds):
                t0 = time.perf_counter()
                prepare(v, seed)
                print(f"  {v} seed {seed} cached ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        return 0
    df = pd.concat([run(v, a.seeds, a.first_seed) for v in a.variants], ignore_index=True)
    if a.out:
        df.to_csv(a.out, index=False)
    pd.set_option("display.width", 220)
    print(f"\nSpending, {WINDOW}-day theoretical loss, {a.seeds} seeds x {CUSTOMERS:,} customers per variant; "
          f"points (percentage points of the ratio - 1); mc = Monte Carlo standard error; "
          f"{time.perf_counter() - t0:.0f} s")
    print(report(df).round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
