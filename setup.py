"""Package layout (everything else is in pyproject.toml).

Two folders outside ``carecall_eval/`` ship inside the package, so that a wheel install works outside any
checkout while the sources stay where people look for them:

* ``notebooks/`` -> ``carecall_eval.notebooks``: the reviewed jupytext sources of the report, comparison and
  research notebooks, read with :mod:`importlib.resources` (``carecall_eval.report.render.notebook_path``);
* ``data/sample/`` -> ``carecall_eval._sample_data``: the simulated sample operator
  (``carecall_eval.datasets.sample_path()`` / ``load_sample()``).

pyproject.toml cannot combine package discovery with such a mapping, hence this file.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["carecall_eval", "carecall_eval.*"])
    + ["carecall_eval.notebooks", "carecall_eval._sample_data"],
    package_dir={"carecall_eval.notebooks": "notebooks", "carecall_eval._sample_data": "data/sample"},
    package_data={
        "carecall_eval": ["py.typed"],
        "carecall_eval.report": ["templates/*"],
        "carecall_eval._sample_data": ["*.parquet", "*.toml", "truth.json"],
    },
    exclude_package_data={"carecall_eval.notebooks": ["__pycache__/*"]},
)
