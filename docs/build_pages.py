"""Write the generated pages of the documentation site into ``docs/generated/`` (ignored by git).

``make docs`` runs this, then ``mkdocs build --strict``.  Generated here, so that they cannot drift from the
code:

* ``estimators.md``: one section per estimator of the registry (``carecall_eval.outcomes.registry``), each
  with an example that is run on the sample while the page is written (its printed text is shown) and its
  API reference (mkdocstrings, from the numpydoc docstring);
* ``walkthrough.md``: the research walkthrough (``notebooks/research_walkthrough.py``) executed on the sample
  with papermill and converted to Markdown with its figures: the site shows what the notebook does today,
  and a walkthrough that fails stops the build;
* ``example.md`` with ``example/report.html``: the committed example report (``reports/example/``);
* ``architecture.md``, ``changelog.md``: ARCHITECTURE.md and CHANGELOG.md.

``python docs/build_pages.py --quick`` skips running the examples and the walkthrough (placeholders instead).
"""
from __future__ import annotations

import argparse
import contextlib
import html
import importlib
import inspect
import io
import json
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GEN = ROOT / "docs" / "generated"
COLUMNS = ["metric", "group", "estimate", "ci_low", "ci_high", "n"]
#: options that keep an example quick on the sample (the slow parts are documented in each estimator's API)
QUICK = {"spending": ["placebo=False"], "selfcheck": ["replicates=20"]}


def _first_paragraph(fn) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def example_code(spec) -> str:
    """The example of one registered estimator, as a user would type it (runs on the shipped sample)."""
    fn = spec.func.__name__
    lines = ["import carecall_eval as ce", "from carecall_eval.datasets import load_sample", "",
             "ds = load_sample()                          # the simulated sample operator, validated"]
    args = "ds"
    if spec.sample == "observational":
        lines.append("sample = ce.build_cohort(ds).sample()      # matched with the design's defaults")
        args += ", sample"
    elif spec.sample == "randomized":
        lines.append('sample = ce.build_cohort(ds, ce.StudyDesign(contact="randomized", comparison="arms"))')
        args += ", sample"
    options = (["level=0.95"] + ([f"{spec.horizon}={spec.default_horizon}"] if spec.horizon else [])
               + QUICK.get(spec.name, []))
    lines += [f"res = ce.{fn}({args}, {', '.join(options)})", "print(res.text)",
              f"res.summary[{COLUMNS!r}].head()"]
    return "\n".join(lines)


def _table(frame) -> str:
    """A small DataFrame as a Markdown table (rounded; no tabulate needed)."""
    def cell(v):
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        return html.escape(str(v)).replace("|", "\\|")

    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def estimators_page(run: bool) -> str:
    import carecall_eval as ce
    from carecall_eval.outcomes.registry import ESTIMATORS

    out = ["# Estimators", "",
           "Every estimator has the one signature `estimator(data, sample=None, /, *, level=0.95, **options)` "
           "and returns a `Result` (`summary`, `text`, `settings`, `get_plot_data()`). `data` is a data "
           "directory, a `Dataset` or an `IbisDataset`; `sample` is a `MatchedSample` (or a `Cohort`, matched "
           "with its design's defaults) for the cohort estimators and nothing for those that read the tables "
           "directly. This page is written from the registry (`carecall_eval.outcomes.registry.ESTIMATORS`) "
           "by `docs/build_pages.py`; each example ran on the sample when the page was built, and what it "
           "printed is shown under it.", ""]
    shared: dict = {}
    if run:
        from carecall_eval.datasets import load_sample

        shared["ds"] = load_sample()
    out.append("| estimator | function | sample | follow-up option | in `evaluate()` |")
    out.append("|---|---|---|---|---|")
    for spec in ESTIMATORS.values():
        fn = spec.func
        out.append(f"| [{spec.name}](#{spec.name}) | `ce.{fn.__name__}` | {spec.sample or 'none'} | "
                   f"{f'`{spec.horizon}` (default {spec.default_horizon})' if spec.horizon else '-'} | "
                   f"{'yes' if spec.in_evaluate else 'no'} |")
    out.append("")
    for spec in ESTIMATORS.values():
        fn = spec.func
        assert getattr(ce, fn.__name__) is fn, f"{spec.name}: ce.{fn.__name__} is not the registered function"
        code = example_code(spec)
        out += [f"## {spec.name} {{#{spec.name}}}", "", _first_paragraph(fn), "", "```python", code, "```", ""]
        if run:
            t0 = time.perf_counter()
            ns = {"__name__": "__docs__"}
            buf = io.StringIO()
            with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
                warnings.simplefilter("ignore")
                body = code.replace("ds = load_sample()", "ds = _shared_ds")
                lines = body.splitlines()
                ns["_shared_ds"] = shared["ds"]
                exec("\n".join(lines[:-1]), ns)        # noqa: S102 - the page's own example
                table = eval(lines[-1], ns)            # noqa: S307
            printed = buf.getvalue().strip()
            out += ["Output (on the sample):", "", '<div class="example-output" markdown>', "",
                    "\n".join("> " + ln if ln else ">" for ln in printed.splitlines()), "", _table(table), "",
                    "</div>", ""]
            print(f"  example {spec.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        module = fn.__module__
        out += [f"::: {module}.{fn.__name__}", "    options:", "      show_root_heading: false", ""]
    if run:
        shared["ds"].close()
    return "\n".join(out)


def walkthrough_page(run: bool) -> None:
    target = GEN / "walkthrough.md"
    files = GEN / "walkthrough_files"
    shutil.rmtree(files, ignore_errors=True)
    if not run:
        target.write_text("# Research walkthrough\n\nNot executed in this build (`--quick`).\n", encoding="utf-8")
        return
    import jupytext
    import nbformat
    import papermill as pm
    from nbconvert import MarkdownExporter

    from carecall_eval.datasets import sample_path
    from carecall_eval.report.render import kernel, notebook_path

    src = notebook_path("research_walkthrough")
    nb = jupytext.read(src)
    nb.metadata.pop("jupytext", None)
    with tempfile.TemporaryDirectory() as td, kernel(None, print) as kname:
        executed = Path(td) / "walkthrough.ipynb"
        nb.metadata["kernelspec"] = {"name": kname, "display_name": "Python", "language": "python"}
        t0 = time.perf_counter()
        pm.execute_notebook(nb, str(executed), parameters={"data": str(sample_path())}, kernel_name=kname,
                            cwd=td, progress_bar=False, log_output=False, execution_timeout=1200,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
        print(f"  walkthrough executed in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        done = nbformat.read(executed, as_version=4)
    for cell in done.cells:          # the parameters papermill injected are noise for a reader
        cell.get("metadata", {}).pop("papermill", None)
    done.cells = [c for c in done.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    body, resources = MarkdownExporter().from_notebook_node(
        done, resources={"output_files_dir": "walkthrough_files"})
    files.mkdir(parents=True, exist_ok=True)
    for name, data in resources.get("outputs", {}).items():
        (GEN / name).write_bytes(data)
    intro = ("!!! note \"Executed on the sample when this site was built\"\n"
             "    The source is `notebooks/research_walkthrough.py` (a jupytext percent file); this page is the "
             "notebook run by `docs/build_pages.py` on the sample that ships with carecall_eval.\n\n")
    lines = body.splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.startswith("# ")), 0)
    target.write_text("\n".join(lines[:head + 1]) + "\n\n" + intro + "\n".join(lines[head + 1:]) + "\n",
                      encoding="utf-8")


def example_page() -> str:
    sys.path.insert(0, str(ROOT / "tools"))
    import example
    import readme_figures

    rec = json.loads(example.RECORD.read_text(encoding="utf-8"))
    folder = example.report_folder(rec)
    dest = GEN / "example"
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("report.html", "metrics.json", "metrics.csv"):
        shutil.copyfile(folder / name, dest / name)
    text = readme_figures.example_text(link="example")
    return ("# Example report\n\n" + text + "\n"
            "The report is one self-contained page (figures embedded, nothing fetched from the network): "
            "[open it](example/report.html). It is rendered by `make example` only; "
            "`tests/test_example.py` simulates the operator again and fails when the committed figures no "
            "longer match what the code computes.\n\n"
            "How it was made:\n\n```bash\n" + "\n".join(rec["commands"]) + "\n```\n")


def copy_page(src: Path, dest: Path) -> None:
    text = src.read_text(encoding="utf-8")
    # links relative to the repository root lead out of the site: point them at the source files by name
    text = text.replace("](docs/", "](../").replace("](ARCHITECTURE.md)", "](architecture.md)")
    dest.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="do not run the examples or the walkthrough")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    GEN.mkdir(parents=True, exist_ok=True)
    copy_page(ROOT / "ARCHITECTURE.md", GEN / "architecture.md")
    copy_page(ROOT / "CHANGELOG.md", GEN / "changelog.md")
    if a.quick and not (ROOT / "reports" / "example" / "example.json").is_file():
        (GEN / "example.md").write_text("# Example report\n\nNot built (`--quick`, no `make example` yet).\n",
                                        encoding="utf-8")
    else:
        (GEN / "example.md").write_text(example_page(), encoding="utf-8")
    (GEN / "estimators.md").write_text(estimators_page(run=not a.quick), encoding="utf-8")
    walkthrough_page(run=not a.quick)
    importlib.invalidate_caches()
    print(f"docs/generated written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
