"""``carecall-eval export`` / ``compare`` / ``pseudonymise``: registered by the main CLI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_export(args: argparse.Namespace) -> int:
    from ..cohorts import StudyDesign
    from .export import export_bundle

    design = StudyDesign.read(args.design) if args.design else None
    print(f"Evaluating {args.data}{' for ' + args.quarter if args.quarter else ''} and exporting aggregates ...",
          flush=True)
    out = export_bundle(args.data, args.out, quarter=args.quarter, design=design, threshold=args.threshold,
                        placebo=not args.no_placebo, km_step=args.km_step, quiet=args.quiet)
    from .bundle import read_bundle

    b = read_bundle(out)
    sup = b.manifest["suppression"]
    print(f"Wrote bundle {out} ({b.operator}, threshold {b.manifest['small_cell_threshold']}): "
          f"{sup['metrics']['rows']} metric rows ({sup['metrics']['rows_with_withheld_values']} with withheld "
          f"values), {sup['km_points']} KM points, {len(b.tables['reach_series'])} months of reach.")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import warnings

    from .comparison import compare
    from .render import render_comparison

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compare(*args.bundles, on_mismatch="warn" if args.allow_mismatch else "error")
    for w in caught:
        print(f"WARNING: {w.message}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from ..evaluate import write_atomic

    write_atomic(out / "meta.csv", cmp.summary.to_csv(index=False))
    write_atomic(out / "kpis.csv", cmp.kpi_table().to_csv())
    print(cmp.text)
    if not args.no_html:
        print("Rendering the comparison report ...", flush=True)
        html = render_comparison(args.bundles, out, allow_mismatch=args.allow_mismatch)
        print(f"Wrote {html}")
    print(f"Wrote {out / 'meta.csv'} and {out / 'kpis.csv'}")
    return 0


def cmd_pseudonymise(args: argparse.Namespace) -> int:
    from .pseudonymise import DEFAULT_COLUMNS, pseudonymise_directory

    cols = list(DEFAULT_COLUMNS) + (["case_id"] if args.case_ids else [])
    try:
        out = pseudonymise_directory(args.src, args.dst, columns=cols, env=args.key_env)
    except KeyError as exc:
        print(f"carecall-eval pseudonymise: error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"Wrote {out} with {', '.join(cols)} pseudonymised (key from ${args.key_env}, not stored).")
    return 0


def register(sub) -> None:
    """Add the ``export``, ``compare`` and ``pseudonymise`` subcommands to the main parser."""
    p = sub.add_parser("export", help="write an aggregate bundle (no customer-level data) for cross-operator comparison",
                       description="Evaluate DIR (optionally restricted to index dates in --quarter) and write a "
                                   "versioned bundle: JSON manifest (design, metric definitions, suppression log) and "
                                   "CSV tables (metrics with standard errors, KM points, monthly reach, cohort flow). "
                                   "Counts below the operator's small_cell_threshold are withheld, with secondary "
                                   "suppression.")
    p.add_argument("--data", required=True, help="data directory")
    p.add_argument("--quarter", help="restrict index dates to this quarter, e.g. 2025Q2 (default: all data)")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced atomically if a bundle)")
    p.add_argument("--design", help="study design file (TOML or JSON); default design if absent")
    p.add_argument("--threshold", type=int, help="small-cell threshold (default: operator.toml; may only be raised)")
    p.add_argument("--km-step", type=int, default=14, help="grid of the exported KM points in days (default 14)")
    p.add_argument("--no-placebo", action="store_true", help="skip the placebo analysis (faster)")
    p.add_argument("--quiet", action="store_true", help="print no progress")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="compare operators from their bundles (HTML, meta-analysis)",
                       description="Read two or more bundles, check that their metric definitions agree (refuses "
                                   "otherwise, naming each difference), and write compare.html (side-by-side KPIs, "
                                   "forest plots, random-effects meta-analysis with tau^2 and I^2), meta.csv and "
                                   "kpis.csv to --out.")
    p.add_argument("bundles", nargs="+", help="bundle directories")
    p.add_argument("--out", required=True, help="output directory, e.g. reports/compare/2025Q2")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="compare even if metric definitions differ (flagged loudly in the report)")
    p.add_argument("--no-html", action="store_true", help="write meta.csv and kpis.csv only")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("pseudonymise", help="copy a data directory with customer and agent ids replaced by keyed HMACs",
                       description="Replace customer_id and agent_id (and case_id with --case-ids) in every table "
                                   "by HMAC-SHA256 pseudonyms keyed by the secret in $CARECALL_PSEUDONYM_KEY. The key "
                                   "is never written; the same key gives the same pseudonyms.")
    p.add_argument("src", help="data directory")
    p.add_argument("dst", help="new output directory")
    p.add_argument("--case-ids", action="store_true", help="pseudonymise case_id too")
    p.add_argument("--key-env", default="CARECALL_PSEUDONYM_KEY", help="environment variable holding the key")
    p.set_defaults(func=cmd_pseudonymise)
