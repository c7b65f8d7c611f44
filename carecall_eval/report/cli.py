"""``carecall-eval report``: render the quarterly report (registered by :mod:`carecall_eval.cli`)."""
from __future__ import annotations

import argparse


def cmd_report(args: argparse.Namespace) -> int:
    """Errors go through the one error path of :func:`carecall_eval.cli.main` (exit 2 for bad input)."""
    from ..contract.cli import data_from_args
    from .render import render_report

    r = render_report(data_from_args(args, flag="--data DIR"), args.quarter, args.out, design=args.design,
                      kernel_name=args.kernel, timeout=args.timeout, progress=not args.quiet, placebo=not args.fast,
                      pool_quarters=args.pool_quarters, keep_notebook=args.keep_notebook,
                      selfcheck_replicates=args.selfcheck_replicates)
    for n in r.notes:
        print(f"note: {n}")
    print(f"Report: {r.html}")
    print(f"Metrics: {r.metrics_json}, {r.metrics_csv}")
    return 0


def register(subparsers) -> None:
    """Add the ``report`` subcommand to the ``carecall-eval`` parser."""
    from .render import KERNEL_NAME

    p = subparsers.add_parser(
        "report", help="render the quarterly report (HTML, metrics.json, metrics.csv)",
        description="Execute the quarterly report notebook (notebooks/quarterly_report.py, shipped in the package) "
                    f"for one quarter with papermill (in the Jupyter kernel {KERNEL_NAME!r} that `make setup` "
                    "registers, else in this interpreter) and export it as one self-contained HTML page without "
                    "code, with metrics.json and metrics.csv beside it, under OUT/<operator>/<quarter>/.")
    from ..contract.cli import add_connection_argument

    p.add_argument("--data", help="operator data directory (or --connection FILE)")
    add_connection_argument(p)
    p.add_argument("--quarter", required=True,
                   help="report quarter, e.g. 2025Q3, or 'latest' (the last complete quarter in the data)")
    p.add_argument("--out", default="reports", help="reports root directory (default reports/)")
    p.add_argument("--design", help="study design file (TOML or JSON); default design if absent")
    p.add_argument("--selfcheck-replicates", type=int, default=20,
                   help="replicates of the self-check in 'Can these figures be trusted?' (default 20; 0 skips it; "
                        "carecall-eval selfcheck runs the full check)")
    p.add_argument("--pool-quarters", type=int, default=4,
                   help="quarters of cases pooled for the effect estimates (default 4)")
    p.add_argument("--fast", action="store_true", help="skip the placebo check (the quick CI setting)")
    p.add_argument("--kernel", default=None,
                   help=f"Jupyter kernel name (default: {KERNEL_NAME} when registered, else this interpreter)")
    p.add_argument("--timeout", type=int, default=1200, help="seconds any one notebook cell may run (default 1200)")
    p.add_argument("--keep-notebook", action="store_true",
                   help="also keep the executed report.ipynb (a build output; never commit it)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_report)
