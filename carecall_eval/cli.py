"""Command line: ``carecall-eval SUBCOMMAND ...``.

Each subcommand is a thin wrapper over a library function; ``--help`` on any of
them explains its arguments.

One error path (:func:`main`): every failure ends in one message on stderr,
``carecall-eval <command>: error: <what, the rule, the offending rows or values, what to do>``,
with exit code 2 for bad input (:class:`~carecall_eval.errors.InputError`, which
includes a :class:`~carecall_eval.contract.ContractError`; a path that does not
exist or cannot be read; an invalid argument) and 1 for anything else (a figure
that cannot be computed on these data, a missing kernel, an internal error).  A
traceback is printed only with ``--debug``.  SIGTERM stops the run the same way
(exit 143) after partial output has been removed.  The module imports nothing
heavy until a subcommand runs (``carecall-eval --help`` stays fast).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from ._version import __version__


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import simulate
    from .simulate.run import SIMULATED_KIND, _old_simulation
    from .writer import check_output_path

    check_output_path(args.out, directory=True, what="simulated data", kind=SIMULATED_KIND, adopt=_old_simulation)

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
    truth = simulate(args.out, customers=args.customers, seed=args.seed, progress=True, jobs=args.jobs, **extra)
    r = truth["realised"]
    print(f"Done in {time.perf_counter() - t0:,.1f} s, peak memory {_peak_mb():,.0f} MB.")
    att = r["realised_att_theoretical_loss"].get("post_84d")
    if att is not None and r["naive_change_reached_84d"] is not None:
        print(f"  true effect of a reached call on theoretical loss (0..83 days): {att:+.1%}; "
              f"naive before/after among reached: {r['naive_change_reached_84d']:+.1%}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .contract import ContractError, format_problems, validate

    if args.connection:
        from .contract.cli import data_from_args

        try:
            ds = data_from_args(args)
        except ContractError as exc:
            print(exc)
            return 1
        engines = ds.checks.engines
        print(f"{ds.path}: the tables meet the checks made where they live (schemas; the values and keys of "
              f"{', '.join(t for t, e in engines.items() if e == 'ibis') or 'no table'}). The large tables' values "
              "are checked on a Parquet export (docs/backends.md).")
        return 0
    report = validate(args.data)
    if report.ok:
        print(f"{args.data}: the data conform to the carecall_eval contract v1.")
        return 0
    print(format_problems(report))
    return 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .contract.cli import data_from_args
    from .evaluate import evaluate_to_file

    return evaluate_to_file(data_from_args(args), args.out, design_path=args.design, quiet=args.quiet)


def _connection_argument(p: argparse.ArgumentParser) -> None:
    from .contract.cli import add_connection_argument

    add_connection_argument(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carecall-eval",
        description="Evaluate proactive responsible-gambling care calls: validate operator data, build matched "
                    "cohorts, estimate effects on spending, retention and reach, render reports.",
    )
    parser.add_argument("--version", action="version", version=f"carecall_eval {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback of an error (also accepted after the subcommand, or set "
                             "CARECALL_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("simulate", help="write a simulated operator data set with known true effects",
                       description="Simulate customers, play, triggers, care-call cases, attempts, SMS and "
                                   "responsible-gambling events in the data contract, plus truth.json with the "
                                   "true effects. The same seed gives byte-identical files.")
    p.add_argument("out", help="output data directory: new, empty, or an earlier simulation (replaced atomically; "
                               "a folder holding anything else is refused)")
    p.add_argument("--customers", type=int, default=4000, help="number of customers (default 4000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--operator", help="operator name written to operator.toml")
    p.add_argument("--sms-policy-start", help="ISO date the missed-call SMS begins (default 2025-01-01)")
    p.add_argument("--no-sms-policy", action="store_true", help="simulate an operator without the SMS policy")
    p.add_argument("--call-effect", type=float, help="true multiplier on stakes after an answered call (0.90)")
    p.add_argument("--jobs", type=int, help="worker processes simulating chunks of 20,000 customers side by side "
                                            "(default: one per CPU; the files are the same whatever the number)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("validate", help="check a data directory against the data contract",
                       description="Check every table of DIR against the data contract (columns, types, "
                                   "vocabularies, keys, cross-table rules). Prints every problem with the table, "
                                   "column, rule, number of failing rows and examples; exits 1 if any.")
    p.add_argument("data", nargs="?", help="data directory (one Parquet or CSV file per table, plus operator.toml; "
                                           "read through mapping.toml when there is one)")
    _connection_argument(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("evaluate", help="run the default study design and write every metric",
                       description="Run the default design (or --design FILE) over the whole data period: "
                                   "cohort, matching, spending, retention, reach, call length, actions. Writes "
                                   "the tidy metric rows as JSON, or CSV when OUT ends in .csv.")
    p.add_argument("data", nargs="?", help="data directory")
    _connection_argument(p)
    p.add_argument("--out", required=True, help="output file (.json or .csv)")
    p.add_argument("--design", help="study design file (TOML or JSON); default design if absent")
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=cmd_evaluate)

    # later pipeline steps register their own subcommands
    for module in ("carecall_eval.contract.cli", "carecall_eval.report.cli", "carecall_eval.compare.cli",
                   "carecall_eval.trials.cli", "carecall_eval.trust.cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``carecall-eval`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("CARECALL_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:            # --help, --version, or a usage error (argparse printed it)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    from .writer import check_terminated, terminate_as_exception

    try:
        with terminate_as_exception():   # SIGTERM runs every clean-up on the way out
            code = int(args.func(args) or 0)
            check_terminated()           # a SIGTERM whose exception Python swallowed still stops the run
            return code
    except KeyboardInterrupt:
        print(f"carecall-eval {args.command}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    except BrokenPipeError:              # the output was piped into `head` or similar, which stopped reading
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if code == 143:
            print(f"carecall-eval {args.command}: stopped by SIGTERM; partial output was removed", file=sys.stderr)
        return code
    except BaseException as exc:  # noqa: BLE001 - the one error path
        code, message = describe_error(exc)
        print(f"carecall-eval {args.command}: error: {message}", file=sys.stderr)
        if debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        elif code == 1 and _is_internal(exc):
            print("  (this looks like a bug in carecall_eval: run the same command with --debug for the traceback "
                  "and report it)", file=sys.stderr)
        return code


def _is_internal(exc: BaseException) -> bool:
    from .errors import CarecallError

    return not isinstance(exc, (CarecallError, OSError, MemoryError)) and not _is_engine_error(exc)


def _is_engine_error(exc: BaseException) -> bool:
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.Error)


def _raised_by_us(exc: BaseException) -> bool:
    """Whether the innermost frame of the traceback is carecall_eval's own code (an argument check)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(last.tb_frame.f_code.co_filename).startswith(here + os.sep)


def describe_error(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-message explanation of an exception (see the module docstring)."""
    import errno

    from .errors import CarecallError, InputError, NotAvailableError

    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, InputError):
        return 2, text
    if isinstance(exc, NotAvailableError):
        return 1, f"{text} (the data are valid, but this cannot be computed on them)"
    if isinstance(exc, CarecallError):
        return 1, text
    if isinstance(exc, OSError):
        name = exc.filename
        reason = (exc.strerror or text).rstrip(".")
        what = f"{name}: {reason.lower()}" if name else text
        if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)) or \
                exc.errno in (errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP):
            return 2, f"{what}; check the path and its permissions"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return 1, f"{what}; free some space or write elsewhere"
        return 1, what
    if isinstance(exc, MemoryError):
        return 1, ("out of memory; lower the DuckDB memory limit (environment variable CARECALL_MEMORY_LIMIT, e.g. "
                   "2GB) so that large queries spill to disk, or run on a larger machine")
    if _is_engine_error(exc):
        first = text.splitlines()[0]
        return 1, (f"the database engine (DuckDB) failed: {first}; run `carecall-eval validate DIR` to check "
                   "the data files")
    if isinstance(exc, (ValueError, TypeError)) and _raised_by_us(exc):
        return 2, text
    return 1, f"internal error ({type(exc).__name__}: {text})"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
