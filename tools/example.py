"""The committed example report: how it is made and how it is checked.

``make example`` simulates the showcase operator (``data/example``, not committed), renders its quarterly
report into ``reports/example/<operator>/<quarter>/`` and then runs::

    python tools/example.py record --data data/example --out reports/example --customers N --seed S \\
        --operator NAME --quarter Q

which writes ``reports/example/example.json``: how the example was made (simulation settings, quarter,
pooled quarters, placebo), the data fingerprint (SHA-256 of the simulated files), the SHA-256 of the
committed ``metrics.json`` and the simulator's truth for the README and the docs.

``tests/test_example.py`` calls :func:`recompute`: it simulates the same operator again from the recorded
settings and computes the report's figures with the current code (what ``carecall-eval report`` computes,
without the notebook), so the test fails as soon as the committed example no longer matches what the code
gives; run ``make example`` and commit the result.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "reports" / "example" / "example.json"


def report_folder(record: dict, root: Path = ROOT / "reports" / "example") -> Path:
    from carecall_eval.report.render import report_dir

    return report_dir(root, record["operator"], record["quarter"])


def recompute(record: dict, workdir: str | Path) -> tuple[str, str]:
    """Simulate the example operator from ``record`` into ``workdir`` and compute its report figures.

    Returns ``(data fingerprint, metrics.json text)``, as ``make example`` would produce them now.
    """
    from threadpoolctl import threadpool_limits

    from carecall_eval.calendar import parse_quarter
    from carecall_eval.contract import open_dataset
    from carecall_eval.contract.validation import validate_dataset
    from carecall_eval.report.context import build_quarterly
    from carecall_eval.simulate import simulate

    sim = record["simulate"]
    simulate(workdir, customers=sim["customers"], seed=sim["seed"], operator=sim["operator"])
    ds, _ = open_dataset(workdir)
    try:
        validation = validate_dataset(ds).raise_if_failed()
        with threadpool_limits(limits=1, user_api="blas"):   # as carecall-eval report computes them
            rep = build_quarterly(ds, parse_quarter(record["quarter"]), None,
                                  pool_quarters=record["pool_quarters"], placebo=record["placebo"],
                                  validation=validation)
        return ds.fingerprint(), rep.metrics_json()
    finally:
        ds.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_example(data: Path, out: Path, *, customers: int, seed: int, operator: str, quarter: str,
                   pool_quarters: int = 4, placebo: bool = True) -> Path:
    from carecall_eval import __version__
    from carecall_eval.contract import open_dataset

    ds, _ = open_dataset(data)
    try:
        fingerprint = ds.fingerprint()
    finally:
        ds.close()
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    rec = {
        "about": "How the committed example report was made (make example); tests/test_example.py recomputes it.",
        "simulate": {"customers": customers, "seed": seed, "operator": operator},
        "commands": [
            f"carecall-eval simulate {data.as_posix()} --customers {customers} --seed {seed} --operator {operator}",
            f"carecall-eval report --data {data.as_posix()} --quarter {quarter} --out {out.as_posix()}",
        ],
        "operator": operator,
        "quarter": quarter,
        "pool_quarters": pool_quarters,
        "placebo": placebo,
        "carecall_eval_version": __version__,
        "data_fingerprint": fingerprint,
        "truth": {
            "realised_att_84d": truth["realised"]["realised_att_theoretical_loss"]["post_84d"],
            "naive_change_reached_84d": truth["realised"]["naive_change_reached_84d"],
            "call_stake_multiplier": truth["true_effects"]["call_stake_multiplier"],
        },
    }
    folder = report_folder(rec, out)
    rec["metrics_sha256"] = sha256(folder / "metrics.json")
    path = out / "example.json"
    path.write_text(json.dumps(rec, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="write reports/example/example.json after make example")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--customers", type=int, required=True)
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--operator", required=True)
    r.add_argument("--quarter", required=True)
    a = p.parse_args(argv)
    if a.cmd == "record":
        path = record_example(a.data, a.out, customers=a.customers, seed=a.seed, operator=a.operator,
                              quarter=a.quarter)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
