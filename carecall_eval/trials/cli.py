"""``carecall-eval plan-trial / allocate / verify-allocation / simulate-trial / analyse-trial`` (main CLI).

The study from the command line, end to end::

    carecall-eval plan-trial data/sample --months 12
    carecall-eval simulate-trial data/trial --customers 20000 --seed 3      # simulated fieldwork
    carecall-eval allocate data/trial/trial/eligible.parquet --design matched-sets --ratio 1:1:1 \\
        --strata gender --match-on age,net_loss --seed 3 --out /tmp/allocation.parquet
    carecall-eval verify-allocation data/trial/trial/allocation.parquet --eligible data/trial/trial/eligible.parquet \\
        --data data/trial
    carecall-eval analyse-trial data/trial --out trial.json --figure consort.png
"""
from __future__ import annotations

import argparse
from pathlib import Path


def _list(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import plan_trial

    r = plan_trial(args.data, level=args.level, power=args.power, window=args.window, months=args.months,
                   effect=args.effect, eligible_per_month=args.eligible_per_month, reach=args.reach,
                   spread=args.spread, complier_ratio=args.complier_ratio, triggers=_list(args.triggers) or None)
    print(r.text)
    print()
    cols = [c for c in ("metric", "group", "estimate", "months", "n_call", "n_control", "n") if c in r.summary.columns]
    print(r.summary[cols].round(4).to_string(index=False))
    _write(r, args.out)
    return 0


def _write(result, out) -> None:
    if not out:
        return
    from ..writer import write_text

    out = Path(out)
    text = result.summary.to_csv(index=False) if out.suffix.lower() == ".csv" else result.to_json()
    write_text(out, text, what="results")
    print(f"Wrote {out}")


def cmd_allocate(args: argparse.Namespace) -> int:
    from .allocate import allocate

    a = allocate(args.eligible, design=args.design, ratio=args.ratio, arms=_list(args.arms) or None,
                 strata=_list(args.strata), match_on=_list(args.match_on), bands=args.bands,
                 block_size=args.block_size, seed=args.seed, previous=args.previous or (), data=args.data,
                 exclude_allocated=args.exclude_allocated, block_prefix=args.block_prefix)
    out, log = a.write(args.out)
    print(a.text)
    print()
    print(a.balance.round(3).to_string(index=False))
    print(f"\nWrote {out} and {log} (allocation hash {a.log['allocation_sha256']})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .allocate import verify_allocation

    v = verify_allocation(args.allocation, log=args.log, eligible=args.eligible, data=args.data)
    print(v.text)
    return 0 if v.ok else 1


def cmd_simulate_trial(args: argparse.Namespace) -> int:
    from ..simulate import simulate

    print(f"Simulating {args.customers:,} customers (seed {args.seed}) with a {args.design} randomized study "
          f"({args.ratio}) on day {args.trial_day} into {args.out} ...", flush=True)
    truth = simulate(args.out, customers=args.customers, seed=args.seed, progress=True, trial=args.design,
                     trial_ratio=args.ratio, trial_day=args.trial_day, trial_share=args.share)
    tr = truth["realised"]["trial"]
    arms = ", ".join(f"{a} {d['n']:,}" for a, d in tr["arms"].items())
    print(f"Study: {arms}; reach in the call arm {tr['reach_call_arm']:.0%}.")
    for w, v in tr["effect_of_being_reached"].items():
        itt = tr["itt"].get("call", {}).get(w)
        print(f"  true effect over {w}: call-arm ITT {itt:+.1%}, effect of being reached {v:+.1%}"
              if itt is not None and v is not None else f"  {w}: not available")
    print(f"Eligible list, allocation and its log: {Path(args.out) / 'trial'}")
    return 0


def cmd_analyse(args: argparse.Namespace) -> int:
    from ..contract import load
    from ..outcomes.randomized import randomized_effects

    ds = load(args.data)
    r = randomized_effects(ds, level=args.level, window=args.window, outcome=args.outcome, blocks=args.blocks,
                           interval=args.interval)
    print(r.text)
    from ..narrative.randomized import outcomes_text

    print(outcomes_text(r.summary, r.settings))
    print()
    s = r.summary
    show = s[s["metric"].isin(["spending.rct_itt_change", "spending.rct_cace_change", "spending.rct_pp_change"])]
    print(show[["metric", "group", "window", "estimate", "ci_low", "ci_high", "n"]].round(4).to_string(index=False))
    print("\nCONSORT flow:")
    c = r.get_plot_data("consort")
    print(c[["arm", "stage", "window", "n"]].to_string(index=False))
    _write(r, args.out)
    if args.figure:
        import matplotlib

        matplotlib.use("Agg")
        from ..plotting import consort_plot

        ax = consort_plot(r)
        import io

        from ..writer import write_bytes

        buf = io.BytesIO()
        ax.figure.savefig(buf, format=Path(args.figure).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight",
                          metadata={"Software": None} if Path(args.figure).suffix.lower() == ".png" else None)
        write_bytes(args.figure, buf.getvalue(), what="figure")
        print(f"Wrote {args.figure}")
    return 0


def register(sub) -> None:
    """Add the trial subcommands to the main parser."""
    p = sub.add_parser("plan-trial", help="minimum detectable effect or months needed for a randomized study",
                       description="From the operator's own eligible flow per month, reach rate and spending spread "
                                   "(measured on DIR, or given), the smallest change a 1:1, 1.5:1 or call/letter/"
                                   "control study can detect in --months of recruitment, or the months it needs for "
                                   "an --effect; by assignment (ITT) and for the effect of being reached.")
    p.add_argument("data", nargs="?", help="data directory (omit to give every input as an option)")
    p.add_argument("--months", type=float, help="recruitment period (default 12, unless --effect is given)")
    p.add_argument("--effect", type=float, help="change to detect, e.g. -0.10: prints the months needed")
    p.add_argument("--window", type=int, default=84, help="post window of the outcome in days (default 84)")
    p.add_argument("--level", type=float, default=0.95, help="1 - two-sided significance level (default 0.95)")
    p.add_argument("--power", type=float, default=0.8, help="power (default 0.8)")
    p.add_argument("--eligible-per-month", type=float, help="eligible customers a month (overrides the data)")
    p.add_argument("--reach", type=float, help="share reached (overrides the data)")
    p.add_argument("--spread", type=float, help="residual coefficient of variation of the outcome (overrides)")
    p.add_argument("--complier-ratio", type=float, help="reached customers' spending / everyone's (overrides)")
    p.add_argument("--triggers", help="comma-separated trigger types the study recruits from")
    p.add_argument("--out", help="write the plan (.json, or .csv)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("allocate", help="randomize an eligible list to arms (reproducible, logged)",
                       description="Allocate the customers of ELIGIBLE (Parquet or CSV with customer_id and baseline "
                                   "columns) by simple, blocked or matched-set randomization. Writes the allocation "
                                   "and <name>.log.json beside it (seed, settings, input fingerprint, allocation "
                                   "hash) and prints the balance table. The same input and seed give byte-identical "
                                   "files; customers allocated before are refused; an existing --out is never "
                                   "overwritten.")
    p.add_argument("eligible", help="eligible list (.parquet or .csv)")
    p.add_argument("--design", choices=["simple", "blocked", "matched-sets"], default="blocked",
                   help="randomization design (default blocked)")
    p.add_argument("--ratio", default="1:1", help="arm ratio, e.g. 1:1, 1.5:1 or 1:1:1 (default 1:1)")
    p.add_argument("--arms", help="comma-separated arm names in ratio order (default call,control or "
                                  "call,letter,control)")
    p.add_argument("--strata", help="comma-separated columns to block or match within exactly (e.g. gender)")
    p.add_argument("--match-on", default="age,net_loss",
                   help="comma-separated numeric columns matched sets are formed on (default age,net_loss)")
    p.add_argument("--bands", type=int, default=5, help="quantile bands of each matching variable but the last")
    p.add_argument("--block-size", type=int, help="permuted block size (blocked; default twice the ratio's sum)")
    p.add_argument("--block-prefix", default="", help="prefix of block ids (e.g. a site code)")
    p.add_argument("--seed", type=int, required=True, help="random seed (recorded in the log)")
    p.add_argument("--out", required=True, help="allocation file to write (.parquet or .csv)")
    p.add_argument("--previous", action="append", help="an earlier allocation file (repeatable): its customers "
                                                         "are refused")
    p.add_argument("--data", help="operator data directory: customers with an arm in call_cases are refused")
    p.add_argument("--exclude-allocated", action="store_true",
                   help="leave customers allocated before out (listed in the log) instead of stopping")
    p.set_defaults(func=cmd_allocate)

    p = sub.add_parser("verify-allocation", help="check that an allocation is unchanged (and fielded as drawn)",
                       description="Recompute the allocation's hash and compare it with its log; with --eligible, "
                                   "check the input fingerprint and draw again with the log's seed; with --data, "
                                   "check that every fielded case carries its allocated arm and block. Exit 1 on "
                                   "any difference.")
    p.add_argument("allocation", help="allocation file")
    p.add_argument("--log", help="allocation log (default: <name>.log.json beside it)")
    p.add_argument("--eligible", help="the eligible list it was drawn from")
    p.add_argument("--data", help="operator data directory with the fielded cases")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("simulate-trial", help="simulated fieldwork: operator data with a randomized study and truth",
                       description="Simulate an operator's data (as `simulate`) with a randomized study of the top "
                                   "spenders on one day: the eligible list is allocated (matched sets on gender, age "
                                   "and net loss by default), cases opened with arm and block, the call arm reached "
                                   "imperfectly; truth.json records the true ITT and effect of being reached, and "
                                   "OUT/trial/ the eligible list, allocation and log.")
    p.add_argument("out", help="output data directory (replaced atomically)")
    p.add_argument("--customers", type=int, default=20000, help="number of customers (default 20000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (also the allocation's; default 1)")
    p.add_argument("--design", choices=["matched-sets", "blocked", "simple"], default="matched-sets")
    p.add_argument("--ratio", default="1:1:1", help="call:letter:control, or call:control (default 1:1:1)")
    p.add_argument("--trial-day", type=int, default=300, help="day of the data the study is allocated (default 300)")
    p.add_argument("--share", type=float, default=0.10, help="top share by net loss that is eligible (default 0.10)")
    p.set_defaults(func=cmd_simulate_trial)

    p = sub.add_parser("analyse-trial", help="analyse a randomized study: ITT, effect of being reached, CONSORT",
                       description="ITT by assigned arm (block fixed effects or clustering by matched set), the effect "
                                   "of being reached (assignment as the instrument; Fieller interval), per protocol "
                                   "(not randomized), at 28 days, 12 weeks and 12 months, retention and actions by "
                                   "arm, and the CONSORT flow.")
    p.add_argument("data", help="data directory with randomized arms in call_cases")
    p.add_argument("--window", type=int, default=84, help="headline post window in days (default 84)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--outcome", default="tl", help="tl, net_loss, wagered, deposits or active_days (default tl)")
    p.add_argument("--blocks", default="auto", choices=["auto", "cluster", "fixed", "none"])
    p.add_argument("--interval", default="fieller", choices=["fieller", "delta"],
                   help="interval of the effect of being reached (default fieller)")
    p.add_argument("--out", help="write the results (.json, or .csv)")
    p.add_argument("--figure", help="write the CONSORT flow figure (.png, .svg or .pdf)")
    p.set_defaults(func=cmd_analyse)
