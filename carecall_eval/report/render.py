"""Render a notebook report: papermill execution, then a self-contained HTML page.

:func:`render_report` executes ``notebooks/quarterly_report.py`` (a jupytext
percent-format file) with papermill in an explicit kernel, working directory
and timeout, exports it with nbconvert without code cells, and writes::

    <out>/<operator>/<quarter>/report.html     one file, figures embedded, no external URL
    <out>/<operator>/<quarter>/metrics.json    every tidy metric row (byte-identical for the same inputs)
    <out>/<operator>/<quarter>/metrics.csv

The three files are produced in a staging directory beside the target and the
directory is swapped in at the end, so a reader never sees a half-written
report.  The page differs between two renders of the same inputs only inside
the element marked ``id="render-timestamp"``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CarecallError

__all__ = ["render_report", "RenderedReport", "ReportError", "KERNEL_NAME", "notebook_path", "notebook_source",
           "kernel", "export_html", "external_urls", "strip_timestamp", "report_dir"]

#: Kernel the notebooks run in; registered by ``make setup``.  When it is not registered (a wheel install),
#: the notebooks run in the interpreter running carecall_eval (see :func:`kernel`).
KERNEL_NAME = "carecall-eval"
#: The package holding the notebook sources (the repository's ``notebooks/`` folder, shipped in the wheel).
NOTEBOOK_PACKAGE = "carecall_eval.notebooks"

_TEMPLATE_NAME = "carecall_report.html.j2"
_TIMESTAMP_RE = re.compile(r'(<time id="render-timestamp"[^>]*>)(.*?)(</time>)', re.S)
_EXTERNAL_RE = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
_URL_RE = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}""")

class ReportError(CarecallError, RuntimeError):
    """A report could not be rendered; the message says why and what to do."""


@dataclass(frozen=True)
class RenderedReport:
    """Paths of a rendered report and how long it took."""

    directory: Path
    html: Path
    metrics_json: Path | None
    metrics_csv: Path | None
    seconds: float
    notes: tuple[str, ...] = ()
    stages: tuple[dict, ...] = ()   # {"stage", "seconds", "peak_mb"} per step (see carecall_eval.stages)


def notebook_path(name: str = "quarterly_report") -> Path:
    """The jupytext source of a shipped notebook (``notebooks/{name}.py`` in a checkout).

    Read with :mod:`importlib.resources` from the package ``carecall_eval.notebooks``, so it is found in a
    wheel install as in a checkout.  Call it before computing anything: a missing notebook fails at once.

    Raises
    ------
    ReportError
        If no such notebook ships with the package (the message lists the ones that do).
    """
    from importlib import resources

    try:
        folder = resources.files(NOTEBOOK_PACKAGE)
    except ModuleNotFoundError:   # run from a source tree that was never installed: the folder beside the package
        folder = Path(__file__).resolve().parents[2] / "notebooks"
    src = folder / f"{name}.py"
    if not src.is_file():
        have = sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".py") and p.name != "__init__.py") \
            if folder.is_dir() else []
        raise ReportError(f"no notebook {name!r} ships with carecall_eval (looked in {folder}; available: "
                          f"{', '.join(have) or 'none'}); reinstall carecall_eval, e.g. `pip install --force-reinstall "
                          "carecall_eval[report]`")
    return Path(str(src))


def notebook_source(notebook: str | os.PathLike | None, name: str = "quarterly_report") -> Path:
    """The notebook to execute: ``notebook`` if given (it must exist), else the shipped ``name``."""
    if notebook is None:
        return notebook_path(name)
    p = Path(notebook)
    if not p.is_file():
        raise ReportError(f"notebook {p} not found")
    return p


def _template() -> str:
    from importlib import resources

    return resources.files("carecall_eval.report").joinpath("templates", _TEMPLATE_NAME).read_text(encoding="utf-8")


def report_dir(out: str | os.PathLike, operator: str, quarter: str) -> Path:
    """``out/<operator>/<quarter>`` with the operator name made safe for a path."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", operator).strip("._") or "operator"
    return Path(out) / slug / quarter


def external_urls(html_text: str) -> list[str]:
    """Attributes that would make a browser fetch something from the network (empty: none)."""
    return [m.group(0) for m in _EXTERNAL_RE.finditer(html_text)] + \
        [m.group(0) for m in re.finditer(r"url\(\s*['\"]?\s*(?:https?:)?//[^)]*\)", html_text, re.I)] + \
        [m.group(0) for m in re.finditer(r"@import\s+['\"]?\s*(?:url\()?\s*['\"]?(?:https?:)?//", html_text, re.I)]


def strip_timestamp(html_text: str) -> str:
    """The page with the marked render timestamp blanked (for comparing two renders)."""
    return _TIMESTAMP_RE.sub(r"\1\3", html_text)


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({_TEMPLATE_NAME: _template()})],
        template_file=_TEMPLATE_NAME,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )


def export_html(nb, title: str) -> str:
    """Export an executed notebook as one self-contained HTML page without code cells.

    Raises
    ------
    ReportError
        If the page would fetch anything from the network.
    """
    nb.metadata["title"] = title
    for i, cell in enumerate(nb.cells):  # jupytext and papermill make random cell ids; the page must not vary
        cell["id"] = f"cell-{i:02d}"
    body, _ = _exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    bad = external_urls(body)
    if bad:
        raise ReportError(f"the exported HTML references external resources {bad[:3]}; the report must open "
                          "offline (check the template and any HTML the notebook displays)")
    return body


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _has_kernel(kernel_name: str) -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        return False
    return True


def _check_kernel(kernel_name: str) -> None:
    if not _has_kernel(kernel_name):
        raise ReportError(f"the Jupyter kernel {kernel_name!r} is not registered; run `make setup`, or "
                          f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel_name}`, or leave "
                          "the kernel unset to run in this interpreter")


@contextlib.contextmanager
def kernel(kernel_name: str | None = None, say=None):
    """The name of the kernel to execute a notebook in, available for the duration of the block.

    ``None`` (the default) means the ``carecall-eval`` kernel that ``make setup`` registers when it is
    there, else the interpreter running this code: a kernel spec for :data:`sys.executable` is written
    to a temporary Jupyter data directory for the block (a wheel install needs no registration, and the
    notebook runs with the same carecall_eval as the caller).  A kernel named explicitly must be
    registered.

    Raises
    ------
    ReportError
        If ``kernel_name`` is given and not registered, or ipykernel is not installed.
    """
    if kernel_name is not None:
        _check_kernel(kernel_name)
        yield kernel_name
        return
    if _has_kernel(KERNEL_NAME):
        yield KERNEL_NAME
        return
    import importlib.util
    import json

    if importlib.util.find_spec("ipykernel") is None:
        raise ReportError("rendering a notebook needs ipykernel: pip install 'carecall_eval[report]'")
    name = f"{KERNEL_NAME}-here"
    with tempfile.TemporaryDirectory(prefix="carecall_kernel_") as td:
        spec_dir = Path(td) / "kernels" / name
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python ({sys.executable})", "language": "python"}), encoding="utf-8")
        if say is not None:
            say(f"kernel {KERNEL_NAME!r} is not registered: running the notebook in this interpreter "
                f"({sys.executable})")
        path = os.environ.get("JUPYTER_PATH")
        with _env(JUPYTER_PATH=os.pathsep.join([td] + ([path] if path else []))):
            yield name


def _timestamp() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
         else _dt.datetime.now(_dt.timezone.utc))
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render_report(data, quarter, out="reports", design=None, *, notebook=None, kernel_name: str | None = None,
                  timeout: int = 1200, progress: bool = True, placebo: bool = True, pool_quarters: int = 4,
                  keep_notebook: bool = False, rendered_at: str | None = None, stages=None,
                  selfcheck_replicates: int = 20) -> RenderedReport:
    """Execute the quarterly report notebook and write HTML, metrics.json and metrics.csv.

    Parameters
    ----------
    data : path, Dataset or IbisDataset
        Operator data directory (validated before anything runs), or data
        already opened: a :class:`~carecall_eval.contract.Dataset` (validated
        here) or the tables on Spark or a warehouse from
        :func:`~carecall_eval.contract.connect` (checked when connecting),
        left open for the caller.
    quarter : str
        Report quarter, e.g. ``"2025Q3"``, or ``"latest"`` for the last
        complete quarter in the data.
    out : path
        Reports root; files go to ``out/<operator>/<quarter>/``.
    design : path, optional
        Study design file (TOML or JSON); the default design when None.
    notebook : path, optional
        Jupytext source to execute (default: the shipped
        ``notebooks/quarterly_report.py``, see :func:`notebook_path`).
    kernel_name : str, optional
        Jupyter kernel to run in.  Default: ``carecall-eval`` (registered by
        ``make setup``) when registered, else this interpreter (see
        :func:`kernel`).
    timeout : int
        Seconds any one cell may run before the render is abandoned.
    progress : bool
        Show a progress bar and step messages on stderr.
    placebo : bool
        Run the placebo analysis (the slowest part; the CI setting turns it off).
    pool_quarters : int
        Quarters of cases pooled for the effect estimates.
    selfcheck_replicates : int
        Replicates of the plasmode self-check in "Can these figures be trusted?" (0: skip it); small by
        default so the report stays quick (``carecall-eval selfcheck`` runs the full check).
    keep_notebook : bool
        Also keep the executed ``report.ipynb`` (a build output, never commit it).
    rendered_at : str, optional
        Render timestamp shown in the footer (default: now, or
        ``SOURCE_DATE_EPOCH`` when set).
    stages : carecall_eval.stages.Stages, optional
        Records each step (validation, cohorts, matching, each estimator,
        the notebook) with its time and peak memory; the returned report's
        ``stages`` lists them either way.

    Returns
    -------
    RenderedReport

    Raises
    ------
    carecall_eval.errors.InputError
        Missing data directory or design file, malformed design, quarter or
        ``pool_quarters``, a quarter outside the data or without cases, or an
        output path that cannot be written (checked before anything is computed).
    carecall_eval.ContractError
        The data do not meet the data contract (an InputError).
    ReportError
        Missing kernel or notebook, a failing cell, or a timeout.

    Notes
    -----
    Every figure is computed in this process (with a progress line per step),
    then the notebook lays the saved figures out in its kernel.  The notebook
    and the kernel are found before anything is computed.

    Nothing is left behind when it fails: the report folder is written by
    :func:`carecall_eval.writer.output_dir` (staged beside the target, swapped in
    at the end, removed on an exception or SIGTERM), and the saved figures the
    notebook reads (they hold customer and case ids) live in a private folder
    inside the staging folder that is removed before the swap.
    """
    import jupytext
    import papermill as pm

    from .._validation import check_int
    from ..calendar import parse_quarter
    from ..cohorts import StudyDesign
    from ..contract import Dataset, open_dataset
    from ..contract.validation import validate_dataset
    from ..errors import InputError
    from ..outcomes.memo import memoised
    from ..stages import Stages
    from ..writer import check_output_path, output_dir, private_dir, write_bytes
    from .context import build_quarterly, check_quarter

    st = stages if stages is not None else Stages(quiet=not progress)
    say = st.say
    t0 = time.perf_counter()
    from ..contract.tables import TablesBase

    given = data if isinstance(data, TablesBase) else None     # a Dataset or IbisDataset: the caller's, kept open
    data = given.path if given is not None else Path(data)
    if given is None and not data.is_dir():
        raise InputError(f"data directory {data} does not exist" if not data.exists() else
                         f"data directory {data} is a file, not a folder; give the folder that holds the tables")
    design_path = design if isinstance(design, (str, os.PathLike)) else None
    if design_path is not None:
        design = StudyDesign.read(design_path)   # a missing or malformed design file fails before any work
    if pool_quarters is not None:      # None: every earlier case (build_quarterly); else a whole number >= 1
        pool_quarters = _check_positive("pool_quarters", pool_quarters, check_int)
    timeout = _check_positive("timeout", timeout, check_int)
    if str(quarter).strip().lower() != "latest":
        parse_quarter(quarter)  # a malformed quarter fails before the data are read
    check_output_path(Path(out) / ".carecall-check", directory=True, what="reports folder")
    # the notebook and the kernel are found before any figure is computed
    src = notebook_source(notebook, "quarterly_report")
    if kernel_name is not None:
        _check_kernel(kernel_name)
    ds = given if given is not None else open_dataset(data)[0]
    try:
        with st("validate"):   # once: the report shows this one (on Spark or a warehouse: what connect() checked)
            validation = memoised("validation", validate_dataset, ds).raise_if_failed() \
                if isinstance(ds, Dataset) else None
        q = latest_complete_quarter(ds) if str(quarter).strip().lower() == "latest" else parse_quarter(quarter)
        problems = check_quarter(ds, q)
        if problems:
            raise InputError("; ".join(problems))
        cfg = ds.config
        final = report_dir(out, cfg.operator, q.label)
        check_output_path(final, directory=True, what="report", kind=REPORT_KIND, adopt=_OLD_REPORT)
        notes = []
        if cfg.sms_policy_start is None:
            notes.append("operator.toml has no sms_policy_start: the report shows reach over time but cannot "
                         "compare answer rates before and after the missed-call SMS")
        if pd_date(ds.data_end) < q.end:
            notes.append(f"{q} is not complete in the data (data end {pd_date(ds.data_end)}): its figures cover "
                         "part of the quarter")
        for n in notes:
            say(f"note: {n}")
        with output_dir(final, kind=REPORT_KIND, what="report", adopt=_OLD_REPORT) as staging, \
                private_dir(staging, prefix=".context-") as private:
            say(f"computing the {cfg.operator} {q} report figures")
            # every number is computed here, in this process, with progress; the notebook only lays them out
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):   # as in the kernel: reproducible to the last digit
                rep = build_quarterly(ds, q, design, pool_quarters=pool_quarters, placebo=placebo,
                                      validation=validation, stages=st, selfcheck_replicates=selfcheck_replicates,
                                      details=False)
            cfile = rep.lean().save(private / "context.pickle")   # the notebook needs no fitted model
            if given is None:
                ds.close()
            _execute(src, staging, cfile, data=data, q=q, cfg=cfg, design=design_path, placebo=placebo,
                     pool_quarters=pool_quarters, rendered_at=rendered_at, kernel_name=kernel_name,
                     timeout=timeout, progress=progress, keep_notebook=keep_notebook, final=final, st=st,
                     say=say, pm=pm, jupytext=jupytext, write_bytes=write_bytes)
    finally:
        if given is None:
            ds.close()
    mj, mc = final / "metrics.json", final / "metrics.csv"
    seconds = time.perf_counter() - t0
    say(f"wrote {final}/report.html" + (", metrics.json, metrics.csv" if mj.exists() else "")
        + f" in {seconds:.0f} s")
    return RenderedReport(final, final / "report.html", mj if mj.exists() else None,
                          mc if mc.exists() else None, seconds, tuple(notes), tuple(st.records))


#: Kind of output recorded in a report folder's marker file.
REPORT_KIND = "quarterly report"


def _old_report(folder: Path) -> bool:
    """A report folder written before output markers existed: only the report's own files."""
    from ..writer import only_files

    return only_files("report.html", "metrics.json", "metrics.csv", "report.ipynb")(folder)


_OLD_REPORT = _old_report


def _check_positive(name: str, value, check_int) -> int:
    from ..errors import InputError

    try:
        return check_int(name, value, 1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{exc}" + ("; --pool-quarters is the number of quarters of cases pooled for the "
                                     "effect estimates (default 4)" if name == "pool_quarters" else "")) from None


def _execute(src, staging: Path, cfile: Path, *, data, q, cfg, design, placebo, pool_quarters, rendered_at,
             kernel_name, timeout, progress, keep_notebook, final, st, say, pm, jupytext, write_bytes) -> None:
    """Run the notebook in ``staging`` on the saved figures and export report.html there."""
    from .context import provenance

    nb = jupytext.read(src)
    nb.metadata.pop("jupytext", None)
    executed = staging / "report.ipynb"
    prov = provenance()
    params = {
        "data": str(Path(data).resolve()),
        "quarter": q.label,
        "design": str(Path(design).resolve()) if design else "",
        "out_dir": str(staging.resolve()),
        "placebo": bool(placebo),
        "pool_quarters": int(pool_quarters) if pool_quarters is not None else 0,
        "rendered_at": rendered_at or _timestamp(),
        "git_commit": prov["git_commit"] or "",
        "git_uncommitted_changes": bool(prov["git_uncommitted_changes"]),
        "context_file": str(cfile),
    }
    with st("report notebook"), kernel(kernel_name, say) as kname:
        say(f"executing {src.name} for {cfg.operator} {q} in kernel {kname!r} (timeout {timeout} s per cell)")
        nb.metadata["kernelspec"] = {"name": kname, "display_name": f"Python ({kname})", "language": "python"}
        try:
            # one BLAS/OpenMP thread: multithreaded reductions can change the last digits between runs
            with _env(PYTHONHASHSEED="0", MPLBACKEND="Agg", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                      MKL_NUM_THREADS="1"):
                pm.execute_notebook(nb, str(executed), parameters=params, kernel_name=kname,
                                    cwd=str(staging), execution_timeout=timeout, progress_bar=progress,
                                    log_output=False, start_timeout=120,
                                    # the kernel's own log (e.g. its transport notice) is not the reader's concern
                                    extra_arguments=["--IPKernelApp.log_level=ERROR"])
        except pm.PapermillExecutionError as exc:
            failed = final.parent / f"{q.label}.failed.ipynb"
            kept = ""
            if executed.exists():
                write_bytes(failed, executed.read_bytes(), what="failed notebook")
                kept = f" (executed notebook kept at {failed})"
            raise ReportError(f"the report notebook failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
                              f"{kept}") from None
        except TimeoutError as exc:
            raise ReportError(f"a notebook cell ran longer than {timeout} s ({exc}); raise --timeout") from None
    say("exporting HTML (no code, figures embedded)")
    import nbformat

    nb_done = nbformat.read(executed, as_version=4)
    html_text = export_html(nb_done, f"{cfg.operator} care calls {q}")
    (staging / "report.html").write_text(html_text, encoding="utf-8")
    if not keep_notebook:
        executed.unlink()


def latest_complete_quarter(ds):
    """The last quarter whose every day is in the data (``quarter="latest"``)."""
    import pandas as pd

    from ..calendar import last_complete_quarter
    from ..errors import InputError

    if pd.isna(pd.Timestamp(ds.data_end)) if ds.data_end is not None else True:
        raise InputError(f"--quarter latest: {ds.path} has no activity rows, so the data cover no period and have "
                         "no complete quarter; check activity.* (it is empty) or export the data again")
    return last_complete_quarter(ds.data_end, what=f"the data end of {ds.path}")


def pd_date(ts) -> _dt.date:
    import pandas as pd

    return pd.Timestamp(ts).date()
