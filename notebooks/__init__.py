"""The notebooks carecall_eval renders, shipped in the package as ``carecall_eval.notebooks``.

Jupytext percent-format sources (read with :mod:`importlib.resources`, never imported):
``quarterly_report.py`` (``carecall-eval report``), ``compare.py`` (``carecall-eval compare``) and
``research_walkthrough.py`` (the matched analysis step by step).
"""
