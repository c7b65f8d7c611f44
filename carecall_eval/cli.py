"""Command line: ``carecall-eval SUBCOMMAND ...``.

Each subcommand is a thin wrapper over a library function; ``--help`` on any of
them explains its arguments.
"""
from __future__ import annotations

import argparse
import sys
import time

from ._version import __version__


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import simulate

    t0 = time.perf_counter()
    extra = {}
    if args.no_sms_policy:
        extra["sms_policy_start"] = None
    elif args.sms_policy_start:
        extra["sms_policy_start"] = args.sms_policy_start
    if args.operator:
        extra["operator"] = args.operator
    if args.call_effect is not None:
        extra["call_effect"] = args.call_effect
    print(f"Simulating {args.customers:,} customers (seed {args.seed}) into {args.out} ...", flush=True)
    truth = simulate(args.out, customers=args.customers, seed=args.seed, progress=True, **extra)
    r = truth["realised"]
    print(f"Done in {time.perf_counter() - t0:,.1f} s, peak memory {_peak_mb():,.0f} MB.")
    att = r["realised_att_theoretical_loss"].get("post_84d")
    if att is not None and r["naive_change_reached_84d"] is not None:
        print(f"  true effect of a reached call on theoretical loss (0..83 days): {att:+.1%}; "
              f"naive before/after among reached: {r['naive_change_reached_84d']:+.1%}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .contract import format_problems, validate

    report = validate(args.data)
    if report.ok:
        print(f"{args.data}: the data conform to the carecall_eval contract v1.")
        return 0
    print(format_problems(report))
    return 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_to_file

    return evaluate_to_file(args.data, args.out, design_path=args.design, quiet=args.quiet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carecall-eval",
        description="Evaluate proactive responsible-gambling care calls: validate operator data, build matched "
                    "cohorts, estimate effects on spending, retention and reach, render reports.",
    )
    parser.add_argument("--version", action="version", version=f"carecall_eval {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("simulate", help="write a simulated operator data set with known true effects",
                       description="Simulate customers, play, triggers, care-call cases, attempts, SMS and "
                                   "responsible-gambling events in the data contract, plus truth.json with the "
                                   "true effects. The same seed gives byte-identical files.")
    p.add_argument("out", help="output data directory (replaced atomically)")
    p.add_argument("--customers", type=int, default=4000, help="number of customers (default 4000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--operator", help="operator name written to operator.toml")
    p.add_argument("--sms-policy-start", help="ISO date the missed-call SMS begins (default 2025-01-01)")
    p.add_argument("--no-sms-policy", action="store_true", help="simulate an operator without the SMS policy")
    p.add_argument("--call-effect", type=float, help="true multiplier on stakes after an answered call (0.90)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("validate", help="check a data directory against the data contract",
                       description="Check every table of DIR against the data contract (columns, types, "
                                   "vocabularies, keys, cross-table rules). Prints every problem with the table, "
                                   "column, rule, number of failing rows and examples; exits 1 if any.")
    p.add_argument("data", help="data directory (one Parquet or CSV file per table, plus operator.toml)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("evaluate", help="run the default study design and write every metric",
                       description="Run the default design (or --design FILE) over the whole data period: "
                                   "cohort, matching, spending, retention, reach, call length, actions. Writes "
                                   "the tidy metric rows as JSON, or CSV when OUT ends in .csv.")
    p.add_argument("data", help="data directory")
    p.add_argument("--out", required=True, help="output file (.json or .csv)")
    p.add_argument("--design", help="study design file (TOML or JSON); default design if absent")
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=cmd_evaluate)

    # later pipeline steps register their own subcommands
    for module in ("carecall_eval.report.cli", "carecall_eval.compare.cli", "carecall_eval.trust.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"carecall-eval {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
