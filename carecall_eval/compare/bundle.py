"""The aggregate bundle: a versioned directory of a JSON manifest and CSV tables.

Layout (format ``carecall_eval.bundle``, version 1; see ``docs/cross-operator.md``)::

    bundle/
      manifest.json    operator, period, threshold, metric definitions, suppression log, table index
      metrics.csv      every KPI and effect estimate (tidy rows, with se and se_scale for effects)
      km.csv           Kaplan-Meier points on a coarse grid (group, day, survival, ci_low, ci_high, at_risk)
      reach_series.csv monthly case-level reach (month, post_policy, n, reached, reach)
      flow.csv         cohort flow (step, kind, contact, comparison): total, exclusions, eligible

:func:`write_bundle` writes the directory atomically with the one writer
(:func:`carecall_eval.writer.output_dir`); :func:`read_bundle` checks the format
version, the manifest's fields and every table's SHA-256 before returning a
:class:`Bundle`, and names the bundle and file in every error.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "TABLES", "Bundle", "write_bundle", "read_bundle"]

BUNDLE_FORMAT = "carecall_eval.bundle"
BUNDLE_VERSION = 1
#: Table name -> file name, in the order they are written.
TABLES = {"metrics": "metrics.csv", "km": "km.csv", "reach_series": "reach_series.csv", "flow": "flow.csv"}


@dataclass(frozen=True)
class Bundle:
    """One operator's aggregate bundle, as read from disk.

    Attributes
    ----------
    path : Path
    manifest : dict
    tables : dict of str -> DataFrame
    """

    path: Path
    manifest: dict
    tables: dict = field(default_factory=dict)

    @property
    def operator(self) -> str:
        return self.manifest["operator"]

    @property
    def metrics(self) -> pd.DataFrame:
        return self.tables["metrics"]

    @property
    def definitions(self) -> dict:
        return self.manifest["definitions"]

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"<Bundle {self.operator} {self.manifest.get('quarter') or 'all data'} at {self.path}>"


def _csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    return buf.getvalue().encode()


#: Kind of output recorded in a bundle folder's marker file.
BUNDLE_KIND = "bundle"


def _old_bundle(folder: Path) -> bool:
    """A bundle written before output markers existed: its manifest says so and it holds only bundle files."""
    from ..writer import only_files

    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT
            and only_files("manifest.json", *TABLES.values())(folder))


def write_bundle(out: str | os.PathLike, manifest: dict, tables: dict[str, pd.DataFrame]) -> Path:
    """Write a bundle directory atomically and return its path.

    ``out`` must not exist, be empty, or hold an earlier bundle (it is then
    replaced as a whole); any other directory (a user's folder that merely
    holds a ``manifest.json`` too) is left alone and an
    :class:`~carecall_eval.errors.InputError` raised.  Written by
    :func:`carecall_eval.writer.output_dir`.
    """
    from ..writer import output_dir

    with output_dir(out, kind=BUNDLE_KIND, what="bundle", adopt=_old_bundle) as tmp:
        manifest = dict(manifest)
        index = {}
        for name, file in TABLES.items():
            data = _csv_bytes(tables[name])
            (tmp / file).write_bytes(data)
            index[name] = {"file": file, "rows": int(len(tables[name])),
                           "columns": list(map(str, tables[name].columns)),
                           "sha256": hashlib.sha256(data).hexdigest()}
        manifest["tables"] = index
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return Path(out)


def read_bundle(path: str | os.PathLike) -> Bundle:
    """Read and verify a bundle directory.

    Raises
    ------
    carecall_eval.errors.InputError
        Naming the bundle and the file: no such folder, no manifest.json, a manifest that is not JSON or
        lacks a field, a format that is not a carecall_eval bundle, a version newer than this package reads,
        a missing or unreadable table, or a table that does not match its recorded SHA-256 (changed after
        export).
    """
    from ..errors import InputError

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"bundle {path} does not exist" if not path.exists() else
                         f"bundle {path} is a file, not a folder; give the folder `carecall-eval export` wrote")
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise InputError(f"{path}: no manifest.json; is this a bundle written by `carecall-eval export`?")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{mpath} is not UTF-8 text (byte {exc.start}); the bundle was changed after export, "
                         "export it again") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{mpath} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); the "
                         "bundle was changed after export, export it again") from None
    except OSError as exc:
        raise InputError(f"cannot read {mpath}: {exc.strerror}") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{mpath}: expected a JSON object, found {type(manifest).__name__}; the bundle was "
                         "changed after export, export it again")
    if manifest.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{mpath}: format is {manifest.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > BUNDLE_VERSION:
        raise InputError(f"{mpath}: bundle format version {version!r} is newer than this carecall_eval reads "
                         f"({BUNDLE_VERSION}); upgrade carecall_eval")
    required = ("operator", "tables", "definitions", "small_cell_threshold", "period", "suppression")
    absent = [k for k in required if k not in manifest]
    entries = manifest.get("tables")
    if absent or not isinstance(entries, dict) or set(entries) != set(TABLES):
        what = (f"field(s) {', '.join(absent)} missing" if absent else
                f"its table index lists {sorted(entries) if isinstance(entries, dict) else entries!r}, expected "
                f"{sorted(TABLES)}")
        raise InputError(f"{mpath}: {what}; the bundle was changed after export, export it again")
    tables = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "sha256" not in entry \
                or Path(entry["file"]).name != entry["file"]:
            raise InputError(f"{mpath}: the entry of table {name!r} is malformed ({entry!r}); the bundle was "
                             "changed after export, export it again")
        fpath = path / entry["file"]
        try:
            data = fpath.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{fpath}: missing (listed in {mpath.name}); the bundle is incomplete, export it "
                             "again") from None
        except OSError as exc:
            raise InputError(f"cannot read {fpath}: {exc.strerror}") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise InputError(f"{fpath}: contents do not match the manifest's SHA-256; "
                             "the bundle was changed after export, export it again")
        try:
            tables[name] = pd.read_csv(io.BytesIO(data), keep_default_na=True)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"{fpath}: not a readable CSV table ({str(exc).splitlines()[0]}); export the "
                             "bundle again") from None
    return Bundle(path, manifest, tables)
