"""The one atomic writer: every file and folder the toolkit writes goes through here.

Rules (the same for reports, metrics, bundles, comparisons, simulated data, pseudonymised copies):

* Output is written beside its target under a hidden name that cannot be taken for a result
  (``.<name>.carecall-partial-<pid>-<random>``) and swapped in only when complete, so a reader sees the old
  output or the new one, never half of one.
* A folder is replaced only when carecall_eval created it: it carries a marker file of its own
  (:data:`MARKER`, naming the kind of output), not merely any ``manifest.json``.  An existing folder without
  the marker (or with another kind's marker), a file where a folder should go (or a folder where a file
  should go), or a path that runs through a regular file are refused with an
  :class:`~carecall_eval.errors.InputError` naming the path.  A caller may recognise its own output written
  before markers existed (``adopt=``: a predicate that lists only file names it writes itself).
* Two runs into one target cannot interleave: the second is refused while the first holds the lock.
* Killed runs leave nothing that looks like a result: partial output is removed on an exception and on
  SIGTERM, and what a SIGKILLed run left behind (its pid no longer alive) is removed by the next run.
  Parent folders created for the output are removed again when the output fails.
* Permissions follow the user's umask (colleagues on a shared server can read a report), unlike
  ``tempfile``'s private 0600/0700 defaults; :func:`private_dir` is the one exception, for working files
  that hold identifiers (never an output).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with output_dir(root / "out", kind="demo") as d:
...     _ = (d / "a.txt").write_text("hello")
>>> sorted(p.name for p in (root / "out").iterdir())
['.carecall-output', 'a.txt']
>>> write_text(root / "out" / "b.txt", "x")
>>> (root / "out" / "b.txt").read_text()
'x'
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from .errors import InputError

__all__ = ["MARKER", "output_dir", "write_text", "write_bytes", "check_output_path", "cleanup_stale",
           "private_dir", "terminate_as_exception", "marker_kind"]

#: Marker file written into every folder the toolkit creates (JSON: tool, kind).
MARKER = ".carecall-output"
_PARTIAL = ".carecall-partial-"
_LOCK = ".carecall-lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fix_mode(path: Path, directory: bool) -> None:
    mode = (0o777 if directory else 0o666) & ~_umask()
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


def _explain(exc: OSError, path: Path, what: str) -> InputError:
    reason = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the device",
              errno.EDQUOT: "the disk quota is exceeded",
              errno.ENOTDIR: "a part of the path is a file, not a folder",
              errno.EISDIR: "it is a folder, not a file",
              errno.ENAMETOOLONG: "the name is too long",
              errno.EXDEV: "the staging folder and the target are on different file systems"}.get(
        exc.errno or 0, exc.strerror or str(exc))
    return InputError(f"cannot write {what} {path}: {reason}; choose another output path or fix its permissions")


def marker_kind(folder: str | os.PathLike) -> str | None:
    """The kind of output recorded in ``folder``'s marker file (None: no readable marker)."""
    try:
        doc = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("kind") if isinstance(doc, dict) and doc.get("tool") == "carecall_eval" else None


def check_output_path(target: str | os.PathLike, *, directory: bool, what: str = "output",
                      kind: str | None = None, adopt: Callable[[Path], bool] | None = None) -> Path:
    """Refuse output paths that cannot work, before any work is done; returns the absolute target.

    Refused: a path running through a regular file, a folder where a file should go (or the reverse),
    an existing non-empty folder the toolkit did not create (no marker; ``adopt(folder)`` may recognise
    older output of the caller's own), a folder holding another kind of output than ``kind``, and a
    parent folder that cannot be written.
    """
    target = Path(os.path.abspath(os.fspath(target)))
    for parent in list(reversed(target.parents)):
        if parent.exists() and not parent.is_dir():
            raise InputError(f"cannot write {what} {target}: {parent} is a file, not a folder; "
                             "choose another output path")
    if target.exists() or target.is_symlink():
        if directory:
            if not target.is_dir():
                raise InputError(f"cannot write {what} folder {target}: a file of that name exists; "
                                 "choose another output path")
            try:
                empty = not any(target.iterdir())
            except OSError as exc:
                raise _explain(exc, target, what) from None
            if not empty:
                found = marker_kind(target)
                if found is None and not (adopt is not None and _safe_adopt(adopt, target)):
                    raise InputError(f"refusing to replace {target}: it exists and was not written by "
                                     f"carecall_eval (no {MARKER} marker); choose a new output folder or "
                                     "remove it yourself")
                if found is not None and kind is not None and found != kind:
                    raise InputError(f"refusing to replace {target}: it holds carecall_eval {found}, not "
                                     f"{kind}; choose another output folder")
        elif target.is_dir():
            raise InputError(f"cannot write {what} file {target}: it is an existing folder; give a file name")
    parent = _existing_ancestor(target)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {target}: {parent} is not writable; choose another output path")
    return target


def _safe_adopt(adopt: Callable[[Path], bool], target: Path) -> bool:
    try:
        return bool(adopt(target))
    except OSError:
        return False


def _existing_ancestor(p: Path) -> Path:
    for parent in p.parents:
        if parent.exists():
            return parent
    return Path("/")


def _mkdirs(path: Path, what: str) -> list[Path]:
    """Create ``path`` and missing parents; returns the folders created (deepest first)."""
    created = []
    p = path
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_created(created)
        raise _explain(exc, path, what) from None
    return created


def _remove_created(created: list[Path]) -> None:
    for p in created:            # deepest first; only if still empty
        with contextlib.suppress(OSError):
            p.rmdir()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(parent: Path, name: str) -> None:
    """Remove partial output of ``name`` in ``parent`` left by runs that are no longer alive (SIGKILL)."""
    if not parent.is_dir():
        return
    prefix = f".{name}{_PARTIAL}"
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for p in entries:
        if not p.name.startswith(prefix):
            continue
        try:
            pid = int(p.name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            _remove(p)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            p.unlink()


class _Lock:
    """An exclusive, non-blocking lock on ``.<name>.carecall-lock`` beside the target."""

    def __init__(self, target: Path, what: str):
        self.path = target.parent / f".{target.name}{_LOCK}"
        self.target, self.what, self.fd = target, what, None

    def __enter__(self):
        import fcntl

        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            except OSError as exc:
                raise _explain(exc, self.target, self.what) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise InputError(f"another carecall-eval run is writing {self.target} right now; wait for it to "
                                 "finish or choose another output path") from None
            # the holder before us may have unlinked the file between our open and our lock: then this lock
            # is on an orphaned file and a third run could lock a new one; try again on the current file
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except OSError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)
        raise InputError(f"could not lock {self.path}; another run keeps replacing it, try again")

    def __exit__(self, *exc):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


#: Signals received by :func:`terminate_as_exception`'s handler.  Python ignores an exception raised in some
#: places (an at-fork hook, a finaliser), so the commit points (:func:`check_terminated`) look here too.
_TERMINATED: set[int] = set()


_DEFERRED: list[bool] = []


@contextlib.contextmanager
def terminate_later() -> Iterator[None]:
    """While the block runs, SIGTERM is only noted (for code where Python would swallow the exception, such
    as forking worker processes); it is raised when the block ends normally."""
    _DEFERRED.append(True)
    try:
        yield
    finally:
        _DEFERRED.pop()
    check_terminated()


def check_terminated() -> None:
    """Raise ``SystemExit(143)`` if SIGTERM arrived even where its exception was swallowed: called before
    anything is committed, so a terminated run never swaps in its output."""
    if _TERMINATED:
        raise SystemExit(128 + min(_TERMINATED))


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while the block runs (main thread only), so that every
    ``finally`` and context manager on the way out runs: partial output and private working files are
    removed.  Nested use is harmless."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _TERMINATED.add(signum)      # remembered: a raise inside an at-fork or __del__ hook is swallowed
        if not _DEFERRED:
            raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # pragma: no cover - not in the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


_terminate_as_exception = terminate_as_exception   # the name used before


def _partial_name(target: Path) -> Path:
    return target.parent / f".{target.name}{_PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def private_dir(parent: str | os.PathLike | None = None, prefix: str = "carecall-private-") -> Iterator[Path]:
    """A folder only the user can read (0700), removed on every exit (exception, SIGTERM).

    For working files that hold customer or case identifiers (the report's saved figures), never for
    output.  With ``parent`` (for example an output's staging folder) it is created there, so that even a
    SIGKILLed run's leftovers are removed with the staging folder by the next run.
    """
    with terminate_as_exception():
        d = Path(tempfile.mkdtemp(prefix=prefix, dir=None if parent is None else os.fspath(parent)))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def output_dir(target: str | os.PathLike, *, kind: str = "output", what: str | None = None,
               adopt: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Write a folder atomically: yields an empty staging folder; swapped in as ``target`` on success.

    ``target`` may not exist, may be an empty folder, or a folder this toolkit wrote earlier for the same
    ``kind`` (marker present; ``adopt(folder)`` true for older output of the caller's own); anything else
    is refused.  On any exception (and on SIGTERM) the staging folder is removed and ``target`` is left as
    it was.
    """
    what = what or kind
    target = check_output_path(target, directory=True, what=what, kind=kind, adopt=adopt)
    created = _mkdirs(target.parent, what)
    ok = False
    try:
        cleanup_stale(target.parent, target.name)
        with _Lock(target, what), terminate_as_exception():
            check_output_path(target, directory=True, what=what, kind=kind, adopt=adopt)   # again, under the lock
            staging = _partial_name(target)
            try:
                staging.mkdir()
                _fix_mode(staging, True)
                (staging / MARKER).write_text(json.dumps({"tool": "carecall_eval", "kind": kind}) + "\n")
                _fix_mode(staging / MARKER, False)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise _explain(exc, target, what) from None
            try:
                yield staging            # the caller's exceptions pass through unchanged
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            try:
                check_terminated()
                _swap_in(staging, target)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise _explain(exc, target, what) from None
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            ok = True
    finally:
        if not ok:
            _remove_created(created)


def _swap_in(staging: Path, target: Path) -> None:
    for p in staging.rglob("*"):
        if not p.is_symlink():
            _fix_mode(p, p.is_dir())
    old = None
    try:
        if target.exists() or target.is_symlink():
            old = _partial_name(target)
            os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
                old = None
            raise
    finally:
        if old is not None:
            _remove(old)


def write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "output") -> None:
    """Write one file atomically (beside it, then renamed); permissions follow the umask."""
    path = check_output_path(path, directory=False, what=what)
    created = _mkdirs(path.parent, what)
    cleanup_stale(path.parent, path.name)
    tmp = _partial_name(path)
    ok = False
    try:
        with terminate_as_exception():
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                _fix_mode(tmp, False)
                if path.is_dir():
                    raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
                check_terminated()
                os.replace(tmp, path)
                ok = True
            except OSError as exc:
                raise _explain(exc, path, what) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if not ok:
            _remove_created(created)


def write_text(path: str | os.PathLike, text: str, *, what: str = "output") -> None:
    """Write one text file (UTF-8) atomically."""
    write_bytes(path, text.encode("utf-8"), what=what)


def only_files(*names: str, patterns: tuple[str, ...] = ()) -> Callable[[Path], bool]:
    """An ``adopt=`` predicate: the folder holds nothing but files of these names (or glob patterns),
    which is what a caller's own output looked like before markers existed."""
    import fnmatch

    allowed = set(names)

    def adopt(folder: Path) -> bool:
        for p in folder.iterdir():
            if p.name.startswith(".") and (_PARTIAL in p.name or p.name.endswith(_LOCK)):
                continue
            if not (p.is_file() and not p.is_symlink()) or stat.S_ISLNK(p.lstat().st_mode):
                return False
            if p.name not in allowed and not any(fnmatch.fnmatch(p.name, pat) for pat in patterns):
                return False
        return True

    return adopt


__all__ += ["only_files"]
