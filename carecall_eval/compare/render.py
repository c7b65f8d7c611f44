"""Render the comparison notebook to a single self-contained HTML file.

A small renderer of its own (papermill executes ``notebooks/compare.py``,
nbconvert exports HTML without code cells, plots embedded as PNG data, every
external URL removed).  Once :mod:`carecall_eval.report` offers a reusable
notebook renderer this module should become a thin wrapper over it.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

__all__ = ["NOTEBOOK", "render_notebook", "render_comparison"]

#: The comparison notebook (jupytext percent format).
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare.py"
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
_STYLE = re.compile(r"(<style\b[^>]*>)(.*?)(</style>)", re.IGNORECASE | re.DOTALL)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_URL = re.compile(r"https?://[^\s\"'<>)]*")


def _strip_external(html: str) -> str:
    """Make the page self-contained: no scripts (the report needs none: plots are PNG data, tables HTML),
    no CSS comments (they quote URLs), no remaining external URL."""
    html = _SCRIPT.sub("", html)
    html = _STYLE.sub(lambda m: m.group(1) + _CSS_COMMENT.sub("", m.group(2)) + m.group(3), html)
    return _URL.sub("", html)


def render_notebook(notebook: str | os.PathLike, parameters: dict, out_html: str | os.PathLike, *,
                    kernel: str = "python3", timeout: int = 600, cwd: str | os.PathLike | None = None,
                    keep_ipynb: bool = True) -> Path:
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
        Kernel name, per-cell timeout (s) and working directory of the execution.
    """
    import jupytext
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    from ..evaluate import write_atomic

    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(notebook)
    with tempfile.TemporaryDirectory() as td:
        src = Path(td) / "input.ipynb"
        executed = Path(td) / "executed.ipynb"
        nbformat.write(nb, src)
        pm.execute_notebook(str(src), str(executed), parameters=parameters, kernel_name=kernel,
                            cwd=str(cwd or Path.cwd()), execution_timeout=timeout, progress_bar=False,
                            log_output=False)
        result = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(result)
    write_atomic(out_html, _strip_external(body))
    if keep_ipynb:
        write_atomic(out_html.with_suffix(".ipynb"), nbformat.writes(result))
    return out_html


def render_comparison(bundles, out_dir: str | os.PathLike, *, allow_mismatch: bool = False,
                      timeout: int = 600) -> Path:
    """Render ``compare.html`` for the given bundle directories into ``out_dir``."""
    out_dir = Path(out_dir)
    params = {"bundles": [str(Path(b).resolve()) for b in bundles], "out_dir": str(out_dir.resolve()),
              "allow_mismatch": bool(allow_mismatch)}
    return render_notebook(NOTEBOOK, params, out_dir / "compare.html", timeout=timeout)
