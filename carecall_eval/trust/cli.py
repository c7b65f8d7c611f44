"""``carecall-eval selfcheck``: the plasmode self-check and the sensitivity analysis (registered by the main CLI)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _table(result) -> str:
    """The self-check's headline rows as a fixed-width table."""
    from .plasmode import metric_id

    s = result.summary
    rows = []
    for stem, label in (("mean_estimate", "mean estimate"), ("bias", "bias"), ("rmse", "RMSE"),
                        ("coverage", "coverage"), ("width", "interval width")):
        for scenario in ("effect", "no effect"):
            for _, r in s[s["metric"] == metric_id(stem, scenario)].iterrows():
                rows.append((r["group"], scenario, label, r["estimate"], r.get("verdict", "")))
    for _, r in s[s["metric"] == "selfcheck.false_positive_rate"].iterrows():
        rows.append((r["group"], "no effect", "false positives", r["estimate"], r.get("verdict", "")))
    rows.sort(key=lambda x: (x[0], x[1]))
    lines = [f"{'figure':26s} {'planted':10s} {'statistic':16s} {'value':>9s}  verdict"]
    for g, sc, lab, v, ver in rows:
        val = "n/a" if v != v else f"{v:+.3f}" if lab in ("mean estimate", "bias") else f"{v:.3f}"
        lines.append(f"{g:26s} {sc:10s} {lab:16s} {val:>9s}  {ver}")
    return "\n".join(lines)


def cmd_selfcheck(args: argparse.Namespace) -> int:
    import warnings

    from ..cohorts import StudyDesign, build_cohort
    from ..contract import load
    from ..writer import write_text
    from .plasmode import PLOT_GRID, selfcheck
    from .sensitivity import sensitivity_analysis

    ds = load(args.data)
    try:
        design = StudyDesign.read(args.design) if args.design else None
        print(f"Building the cohort of {args.data} ...", file=sys.stderr, flush=True)
        sample = build_cohort(ds, design).sample()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = selfcheck(ds, sample, level=args.level, effect=args.effect, replicates=args.replicates,
                            seed=args.seed, window=args.window, sms=not args.no_sms, sms_effect=args.sms_effect,
                            sms_replicates=args.sms_replicates, progress=not args.quiet,
                            n_jobs=args.jobs if args.jobs is not None else (os.cpu_count() or 1),
                            grid=PLOT_GRID if args.plot_grid else None)
            sens = sensitivity_analysis(ds, sample, level=args.level, window=args.window)
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"warning: {w.message}", file=sys.stderr)
    finally:
        ds.close()
    print(_table(res))
    print()
    print(res.text)
    print()
    print(sens.text)
    if args.out:
        out = Path(args.out)
        doc = {"selfcheck": res.to_dict(), "sensitivity": sens.to_dict()}
        import json

        write_text(out, json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n", what="self-check figures")
        print(f"Wrote {out}")
    return 0


def register(sub) -> None:
    """Add the ``selfcheck`` subcommand to the main parser."""
    p = sub.add_parser("selfcheck", help="check on your own data that the pipeline recovers a planted effect",
                       description="Plasmode self-check: keep the operator's real customers and spending windows, "
                                   "draw pseudo-contacts from customers who were never reached (with the real "
                                   "propensity model), plant a known change in their post-index spending, run the "
                                   "primary design on each replicate and report bias, RMSE, coverage, interval width "
                                   "and false positives for the matched (primary), naive and difference-in-differences "
                                   "figures; the same for the SMS estimate on a pseudo-policy date. Also prints "
                                   "Rosenbaum bounds and tipping points. The same seed gives the same figures.")
    p.add_argument("data", help="data directory")
    p.add_argument("--effect", type=float, default=-0.15, help="planted change in spending (default -0.15)")
    p.add_argument("--replicates", type=int, default=100, help="replicates (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--window", type=int, default=84, help="post window in days (default 84)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--sms-effect", type=float, default=0.10,
                   help="share of unanswered late attempts turned into answers on pseudo-policy cases (default 0.10)")
    p.add_argument("--sms-replicates", type=int, help="pseudo-policy dates (default min(replicates, 10))")
    p.add_argument("--no-sms", action="store_true", help="skip the SMS check")
    p.add_argument("--plot-grid", action="store_true", help="also analyse planted changes of -30%% and +15%%")
    p.add_argument("--jobs", type=int, help="worker processes for the replicates (default: one per CPU; the "
                                            "figures are the same whatever the number)")
    p.add_argument("--design", help="study design file (TOML or JSON); default design if absent")
    p.add_argument("--out", help="also write the figures as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=cmd_selfcheck)
