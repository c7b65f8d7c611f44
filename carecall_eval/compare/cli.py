"""``carecall-eval export`` / ``compare`` / ``pseudonymise``: registered by the main CLI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_export(args: argparse.Namespace) -> int:
    from ..cohorts import StudyDesign
    from ..writer import check_output_path
    from .bundle import BUNDLE_KIND, _old_bundle
    from .export import export_bundle

    check_output_path(args.out, directory=True, what="bundle", kind=BUNDLE_KIND, adopt=_old_bundle)
    design = StudyDesign.read(args.design) if args.design else None
    from ..contract.cli import data_from_args

    data = data_from_args(args, flag="--data DIR")
    print(f"Evaluating {getattr(data, 'path', data)}{' for ' + args.quarter if args.quarter else ''} and "
          "exporting aggregates ...", flush=True)
    out = export_bundle(data, args.out, quarter=args.quarter, design=design, threshold=args.threshold,
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

    from ..writer import check_output_path, only_files, output_dir
    from .comparison import compare
    from .render import render_comparison
    from .suppress import redact_text

    adopt = only_files("meta.csv", "kpis.csv", "compare.html", "compare.ipynb")
    check_output_path(args.out, directory=True, what="comparison", kind="comparison", adopt=adopt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cmp = compare(*args.bundles, on_mismatch="warn" if args.allow_mismatch else "error")
    for w in caught:
        print(f"WARNING: {w.message}", file=sys.stderr)
    threshold = max(int(b.manifest.get("small_cell_threshold") or 10) for b in cmp.bundles)
    out = Path(args.out)
    with output_dir(out, kind="comparison", what="comparison", adopt=adopt) as staging:
        (staging / "meta.csv").write_text(cmp.summary.to_csv(index=False), encoding="utf-8")
        (staging / "kpis.csv").write_text(cmp.kpi_table().to_csv(), encoding="utf-8")
        print(redact_text(cmp.text, (), threshold))
        if not args.no_html:
            print("Rendering the comparison report ...", flush=True)
            render_comparison(args.bundles, staging, allow_mismatch=args.allow_mismatch)
    if not args.no_html:
        print(f"Wrote {out / 'compare.html'}")
    print(f"Wrote {out / 'meta.csv'} and {out / 'kpis.csv'}")
    return 0


def cmd_pseudonymise(args: argparse.Namespace) -> int:
    from .pseudonymise import DEFAULT_COLUMNS, pseudonymise_directory

    cols = list(DEFAULT_COLUMNS) + (["case_id"] if args.case_ids else [])
    out = pseudonymise_directory(args.src, args.dst, columns=cols, env=args.key_env)
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
    from ..contract.cli import add_connection_argument

    p.add_argument("--data", help="data directory (or --connection FILE)")
    add_connection_argument(p)
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
