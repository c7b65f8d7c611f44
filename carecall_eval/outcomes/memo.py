"""On-disk memo of estimator results, so a second report or evaluation on unchanged data refits nothing.

The aggregation layer's cache (:mod:`carecall_eval.cohorts.cache`) saves the scans; what a re-run then
still spends is the estimators' model fitting.  An estimator's result is a function of the data, the
matched sample, its level and options and the code, and the figures are reproducible (seeds are explicit),
so a result computed once can be read back.  :func:`cached` wraps an estimator called through the registry
(:data:`carecall_eval.outcomes.registry.ESTIMATORS`, which :func:`carecall_eval.evaluate` and the quarterly
report use); calling an estimator function directly always computes.

An entry is named by a SHA-256 of

* the data's fingerprint (every byte of the input files and ``operator.toml``; only file data, since the
  weaker fingerprint of a warehouse is not trusted for a whole result),
* the sample's content: the cohort's rows, the matched rows with weights and subclasses, the design and
  the matching settings (so a changed matching option or a hand-edited cohort misses),
* the estimator's name, level and options (``n_jobs`` left out: it changes no figure),
* a digest of the package's own source files (so any change to the code misses, not only a new release).

Entries live beside the aggregates (``$CARECALL_CACHE_DIR``; ``CARECALL_CACHE=0`` or
``cohorts.cache.caching(False)`` turns both off), as pickles written by the toolkit's one atomic writer;
they are kept within 10 GB (``CARECALL_RESULTS_MAX_GB``), the least recently used removed first.
A result's ``details`` (fitted models and row-level tables: most of an entry's bytes) are stored in a file
of their own and read only when first looked at (:class:`StoredDetails`), so a re-run's report, which
never opens them, does not unpickle them.
Like the aggregates they are as sensitive as the data, and they are only ever read from the user's own
cache folder.
"""
from __future__ import annotations

import collections.abc
import contextlib
import dataclasses
import functools
import hashlib
import json
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable

from ..cohorts import cache

__all__ = ["cached", "memoised", "code_digest", "sample_digest"]

#: Folder of the entries under the cache folder (:func:`carecall_eval.cohorts.cache.clear` empties it too).
FOLDER = "results"

#: Layout of an entry; part of every key.
LAYOUT = 3

#: Largest total size of the memoised results (bytes; ``CARECALL_RESULTS_MAX_GB`` to change it): the
#: oldest entries are removed first when a new one would exceed it (every code change makes new entries).
MAX_BYTES = 10 * 2**30
ENV_MAX = "CARECALL_RESULTS_MAX_GB"

#: Options that change no figure (left out of the key).
NEUTRAL_OPTIONS = frozenset({"n_jobs", "progress"})


#: Libraries whose version can move a figure (a fitted model's last digits): part of every key.
LIBRARIES = ("numpy", "pandas", "scipy", "statsmodels", "lifelines", "duckdb", "pyarrow", "ibis-framework")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 of every Python source file of the package (path and bytes) and of the versions of the
    numerical libraries it runs on (:data:`LIBRARIES`)."""
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    for lib in LIBRARIES:
        try:
            version = metadata.version(lib)
        except metadata.PackageNotFoundError:
            version = "absent"
        h.update(f"{lib}=={version}\0".encode())
    return h.hexdigest()


def _plain(value) -> bool:
    """Whether ``value`` is made of plain values only (numbers, text, None, and lists, tuples and mappings of
    them): only those name an entry exactly.  A frame, a function or any other object is not memoised."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def sample_digest(sample) -> str:
    """Digest of a MatchedSample's content (kept on the object: it is immutable once built)."""
    got = getattr(sample, "_memo_digest", None)
    if got is not None:
        return got
    matching = getattr(sample, "matching", None)
    body = json.dumps({
        "cohort": cache._frame_digest(sample.cohort.table),
        "table": cache._frame_digest(sample.table),
        "design": cache._canon(sample.design.to_dict()),
        "matching": cache._canon(getattr(matching, "settings", None)),
        "replace": sample.replace, "cluster": sample.cluster,
    }, default=str)
    got = hashlib.sha256(body.encode()).hexdigest()
    object.__setattr__(sample, "_memo_digest", got)   # a frozen dataclass: cached like its cached_property
    return got


def _key(name: str, data, sample, options: dict, args: tuple = ()) -> str | None:
    from ..contract.dataset import Dataset

    if not cache.enabled() or not isinstance(data, Dataset):
        return None
    opts = {k: v for k, v in options.items() if k not in NEUTRAL_OPTIONS}
    if not _plain(list(opts.values())) or not _plain(list(args)):
        return None
    try:
        sd = None if sample is None else sample_digest(sample)
    except Exception:   # pragma: no cover - a sample whose content cannot be hashed is not memoised
        return None
    return cache.key(data, f"result:{name}", {"layout": LAYOUT, "code": code_digest(), "sample": sd,
                                              "args": cache._canon(args),
                                              "options": sorted((k, cache._canon(v)) for k, v in opts.items())})


def _compute(name: str, key: str | None, compute: Callable[[], object]):
    """Read entry ``key`` back, or run ``compute`` and store its result with the warnings it gave."""
    if key is None:
        return compute()
    with contextlib.suppress(Exception):          # absent or damaged: recompute and overwrite
        path = _path(key)
        result, said, apart = pickle.loads(path.read_bytes())
        if apart:
            dpath = _details_path(key)
            if not dpath.is_file():                    # pruned apart from its entry: recompute
                raise FileNotFoundError(dpath)
            result = dataclasses.replace(result, details=StoredDetails(dpath, apart))
        with contextlib.suppress(OSError):
            path.touch()                               # used now: pruning removes the least recently used
            if apart:
                dpath.touch()
        cache._note(f"result:{name}", "hit")
        _say(said)
        return result
    cache._note(f"result:{name}", "miss")
    # the warnings of the computation are kept with the result and said again on every read, so a
    # re-run's report carries the same notes as the first
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compute()
    said = [(w.category, str(w.message), w.filename, w.lineno, _module_of(w.filename)) for w in caught]
    from ..writer import write_bytes

    with contextlib.suppress(Exception):          # a failure to store only costs the next run its time
        stored: Any = result
        apart = _has_details(result)
        if apart:                                    # the details first: an entry never names a missing file
            write_bytes(_details_path(key), pickle.dumps(dict(stored.details), protocol=pickle.HIGHEST_PROTOCOL),
                        what="result cache entry")
            stored = dataclasses.replace(stored, details={})
        names = list(getattr(result, "details", {})) if apart else None      # the details' keys, known without reading them
        write_bytes(_path(key), pickle.dumps((stored, said, names), protocol=pickle.HIGHEST_PROTOCOL),
                    what="result cache entry")
        prune()
    _say(said)
    return result


def prune(max_bytes: int | None = None) -> int:
    """Remove the least recently used results until the rest fit in ``max_bytes`` (default
    :data:`MAX_BYTES`, or ``$CARECALL_RESULTS_MAX_GB``); returns how many entries were removed (an entry
    with its details file)."""
    import os

    if max_bytes is None:
        env = os.environ.get(ENV_MAX)
        max_bytes = int(float(env) * 2**30) if env else MAX_BYTES
    entries: dict = {}                  # an entry and its details file go together
    for p in (cache.cache_dir() / FOLDER).glob("*/*.pickle"):
        with contextlib.suppress(OSError):
            st = p.stat()
            e = entries.setdefault(p.name.split(".")[0], [0.0, 0, []])
            e[0], e[1] = max(e[0], st.st_mtime), e[1] + st.st_size
            e[2].append(p)
    total = sum(e[1] for e in entries.values())
    removed = 0
    for _, size, paths in sorted(entries.values(), key=lambda e: e[0]):
        if total <= max_bytes:
            break
        with contextlib.suppress(OSError):
            for p in sorted(paths, key=lambda q: ".details" not in q.name):   # details first, then the entry
                p.unlink()
            total -= size
            removed += 1
    return removed


def memoised(name: str, func: Callable, data, *args, key=None, **kwargs):
    """``func(data, *args, **kwargs)`` for a function of the data and its arguments (validation, the
    quarter's key figures, a cohort), read from the memo when the same data, arguments and code ran before.

    ``key`` stands for the positional arguments in the entry's name when they are objects without a plain
    value (a study design: its ``to_dict()``; quarters: their labels).  Keyword arguments always enter it;
    a call whose arguments are not plain values (:func:`_plain`) is not memoised.
    """
    entry = _key(name, data, None, kwargs, args if key is None else (key,))
    return _compute(name, entry, lambda: func(data, *args, **kwargs))


def _path(key: str) -> Path:
    return cache.cache_dir() / FOLDER / key[:2] / f"{key}.pickle"


def _details_path(key: str) -> Path:
    return cache.cache_dir() / FOLDER / key[:2] / f"{key}.details.pickle"


def _has_details(result) -> bool:
    """A result (a frozen dataclass) with non-empty ``details``: stored apart."""
    details = getattr(result, "details", None)
    return dataclasses.is_dataclass(result) and isinstance(details, collections.abc.Mapping) and len(details) > 0


class StoredDetails(collections.abc.Mapping):
    """A memoised result's ``details``, unpickled from their own file when first looked at.

    A read-only mapping like the dict it stands for (``dict(details)`` makes that dict); its keys are
    known without reading the file (``"table" in details`` reads nothing); pickling it pickles the dict.
    """

    def __init__(self, path: Path, keys) -> None:
        self._path = Path(path)
        self._keys = list(keys)
        self._data: dict | None = None

    def _load(self) -> dict:
        if self._data is None:
            self._data = pickle.loads(self._path.read_bytes())
        return self._data

    def __getitem__(self, key):
        return self._load()[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key) -> bool:
        return key in self._keys

    def copy(self) -> dict:
        return dict(self._load())

    def __reduce__(self):
        return dict, (self.copy(),)

    def __repr__(self) -> str:
        return repr(self._load()) if self._data is not None else f"<details stored in {self._path.name}>"


def _module_of(filename: str) -> str:
    """The module name ``warnings`` gives a warning issued from ``filename`` (what module filters match)."""
    name = Path(filename).name
    return name[:-3] if name.endswith(".py") else name


def _say(said: list) -> None:
    """Issue the recorded warnings again, each as it was first issued (its category, text and place)."""
    for category, message, filename, lineno, module in said:
        warnings.warn_explicit(message, category, filename, lineno, module=module)


def cached(name: str, func: Callable) -> Callable:
    """``func`` (an estimator with the one signature) memoised on disk under ``name``."""

    @functools.wraps(func)
    def wrapper(data, sample=None, /, **options):
        from ..cohorts.sample import MatchedSample

        if sample is not None and not isinstance(sample, MatchedSample):
            return func(data, sample, **options)      # a Cohort is matched inside: no content to key on yet
        return _compute(name, _key(name, data, sample, options),
                        lambda: func(data, sample, **options) if sample is not None else func(data, **options))

    return wrapper

