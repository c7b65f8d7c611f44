"""Write the README's figures from the files they come from, never by hand.

Blocks between ``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->`` in README.md (and in the docs
pages listed in :data:`FILES`) are replaced by the text built here:

* ``sample``: the sample's size and seed and its truth (``data/sample/truth.json``);
* ``example``: the committed example's headline (``reports/example/.../metrics.json``) beside its truth
  (``reports/example/example.json``, recorded from the simulator by ``make example``).

``python tools/readme_figures.py`` rewrites the blocks; ``--check`` exits 1 (naming the blocks) when a file
is out of date, which ``tests/test_example.py`` runs.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: file -> where its links to the example report point (None: the repository's reports/example/...)
FILES = {ROOT / "README.md": None, ROOT / "docs" / "index.md": "generated/example"}
BLOCK = re.compile(r"(<!-- figures:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- /figures:(?P=name) -->)", re.S)


def _metric(rows, metric, group, **where):
    hits = [r for r in rows if r["metric"] == metric and r["group"] == group
            and all(r.get(k) == v for k, v in where.items())]
    if len(hits) != 1:
        raise LookupError(f"{metric} / {group} {where}: {len(hits)} rows in the example's metrics.json")
    return hits[0]


def sample_text(link: str | None = None) -> str:
    from carecall_eval.narrative import spct1

    truth = json.loads((ROOT / "data" / "sample" / "truth.json").read_text(encoding="utf-8"))
    p, r = truth["params"], truth["realised"]
    return (f"* Sample data: `data/sample/` ({p['customers']:,} simulated customers of \"{p['operator']}\" over "
            f"2024-2025, seed {p['seed']}; `carecall_eval.datasets.load_sample()` in an installed package) with its "
            f"`truth.json`: the true effect of a reached call on theoretical loss over 84 days is "
            f"{spct1(r['realised_att_theoretical_loss']['post_84d'])}, the naive before/after among reached "
            f"customers is {spct1(r['naive_change_reached_84d'])}.\n")


def example_text(link: str | None = None) -> str:
    """The example's headline; ``link``: where the report files are linked from (default: the repository)."""
    from carecall_eval.narrative import ci, spct, spct1

    rec = json.loads((ROOT / "reports" / "example" / "example.json").read_text(encoding="utf-8"))
    sys.path.insert(0, str(ROOT / "tools"))
    from example import report_folder

    folder = report_folder(rec)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    rows = metrics["metrics"]
    level = metrics.get("settings", metrics.get("params", {})).get("level", 0.95)
    mt = _metric(rows, "spending.matched_change", "difference", window=84)
    nv = _metric(rows, "spending.naive_change", "contact", window=84)
    rel = link or folder.relative_to(ROOT).as_posix()
    sim = rec["simulate"]
    half = (mt["ci_high"] - mt["ci_low"]) / 2
    return (f"**The example** ([`{rel}/report.html`]({rel}/report.html), with "
            f"[`metrics.json`]({rel}/metrics.json) and [`metrics.csv`]({rel}/metrics.csv)) is the {rec['quarter']} "
            f"report of \"{rec['operator']}\", a simulated operator of {sim['customers']:,} customers "
            f"(seed {sim['seed']}, `make example`). Pooling the four quarters whose 84-day follow-up is complete "
            f"(n = {mt['n']:,} in the matched analysis), the reached customers' theoretical loss changed by "
            f"{spct1(nv['estimate'])} "
            f"(the naive figure); the matched estimate of the call's own effect is {spct1(mt['estimate'])} "
            f"({ci(mt['ci_low'], mt['ci_high'], level, fmt=spct)}, +/-{100 * half:.0f} points), against a "
            f"true effect of {spct1(rec['truth']['realised_att_84d'])} built into the simulation.\n")


BUILDERS = {"sample": sample_text, "example": example_text}


def render(text: str, link: str | None = None) -> str:
    def sub(m):
        name = m.group("name")
        if name not in BUILDERS:
            raise KeyError(f"unknown figures block {name!r}; known: {sorted(BUILDERS)}")
        return m.group(1) + BUILDERS[name](link) + m.group(4)

    return BLOCK.sub(sub, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a file is out of date (write nothing)")
    a = p.parse_args(argv)
    stale = []
    for f, link in FILES.items():
        if not f.is_file():
            continue
        old = f.read_text(encoding="utf-8")
        new = render(old, link)
        if new != old:
            stale.append(f.relative_to(ROOT).as_posix())
            if not a.check:
                f.write_text(new, encoding="utf-8")
    if a.check and stale:
        print(f"out of date: {', '.join(stale)}; run `python tools/readme_figures.py`", file=sys.stderr)
        return 1
    for s in stale:
        print(f"updated {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
