"""Render the comparison notebook to a single self-contained HTML file.

papermill executes ``notebooks/compare.py`` in the project's kernel; the HTML
export (no code cells, plots embedded, refusal of any external URL) is the
quarterly report's :func:`carecall_eval.report.render.export_html`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["NOTEBOOK", "render_notebook", "render_comparison"]

#: The comparison notebook's name among the shipped notebooks (``notebooks/compare.py``; found with
#: :func:`carecall_eval.report.render.notebook_path`, in a wheel install as in a checkout).
NOTEBOOK = "compare"


def render_notebook(notebook: str | os.PathLike, parameters: dict, out_html: str | os.PathLike, *,
                    kernel: str | None = None, timeout: int = 600, cwd: str | os.PathLike | None = None,
                    keep_ipynb: bool = True, title: str = "carecall_eval") -> Path:
    """Execute a jupytext ``.py`` notebook with papermill and export HTML without code.

    Parameters
    ----------
    notebook : path
        Percent-format notebook with a cell tagged ``parameters``.
    parameters : dict
        Injected by papermill.
    out_html : path
        HTML file to write (atomically); the executed ``.ipynb`` is kept beside it
        when ``keep_ipynb``.
    kernel, timeout, cwd
        Kernel name (default: the project's ``carecall-eval`` kernel when
        registered, else this interpreter; see
        :func:`carecall_eval.report.render.kernel`), per-cell timeout (s) and
        working directory of the execution.
    title : str
        Page title.
    """
    import jupytext
    import nbformat
    import papermill as pm

    from ..report.render import ReportError, export_html
    from ..report.render import kernel as kernel_for
    from ..writer import write_text

    if not Path(notebook).is_file():
        raise ReportError(f"notebook {notebook} not found")
    from ..writer import check_output_path

    out_html = check_output_path(out_html, directory=False, what="comparison page")
    nb = jupytext.read(notebook)
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "input.ipynb"
        executed = Path(td) / "executed.ipynb"
        nbformat.write(nb, src)
        with kernel_for(kernel) as kname:
            pm.execute_notebook(str(src), str(executed), parameters=parameters, kernel_name=kname,
                                cwd=str(cwd or Path.cwd()), execution_timeout=timeout, progress_bar=False,
                                log_output=False)
        result = nbformat.read(executed, as_version=4)
    write_text(out_html, export_html(result, title), what="comparison page")
    if keep_ipynb:
        write_text(out_html.with_suffix(".ipynb"), nbformat.writes(result), what="executed notebook")
    return out_html


def render_comparison(bundles, out_dir: str | os.PathLike, *, allow_mismatch: bool = False,
                      timeout: int = 600) -> Path:
    """Render ``compare.html`` for the given bundle directories into ``out_dir``."""
    from ..report.render import notebook_path

    notebook = notebook_path(NOTEBOOK)   # found before anything is read or written
    out_dir = Path(out_dir)
    params = {"bundles": [str(Path(b).resolve()) for b in bundles], "out_dir": str(out_dir.resolve()),
              "allow_mismatch": bool(allow_mismatch)}
    return render_notebook(notebook, params, out_dir / "compare.html", timeout=timeout,
                           title="Care calls: cross-operator comparison")
