"""The one atomic writer: every file and folder the toolkit writes goes through here.

Rules (the same for reports, metrics, bundles, comparisons, simulated data, pseudonymised copies):

* Output is written beside its target under a hidden name that cannot be taken for a result
  (``.<name>.carecall-partial-<pid>-<random>``) and swapped in only when complete, so a reader sees the old
  output or the new one, never half of one.
* A folder is replaced only when carecall_eval created it: it carries a marker file of its own
  (:data:`MARKER`), not merely any ``manifest.json``.  An existing folder without the marker, a file where a
  folder should go (or a folder where a file should go), or a path that runs through a regular file are
  refused with an :class:`~carecall_eval.errors.InputError` naming the path.
* Two runs into one target cannot interleave: the second is refused while the first holds the lock.
* Killed runs leave nothing that looks like a result: partial output is removed on an exception and on
  SIGTERM, and what a SIGKILLed run left behind (its pid no longer alive) is removed by the next run.
* Permissions follow the user's umask (colleagues on a shared server can read a report), unlike
  ``tempfile``'s private 0600/0700 defaults.

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
import threading
from pathlib import Path
from typing import Iterator

from .errors import InputError

__all__ = ["MARKER", "output_dir", "write_text", "write_bytes", "check_output_path", "cleanup_stale"]

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
              errno.ENOTDIR: "a part of the path is a file, not a folder",
              errno.EISDIR: "it is a folder, not a file"}.get(exc.errno or 0, exc.strerror or str(exc))
    return InputError(f"cannot write {what} {path}: {reason}; choose another output path or fix its permissions")


def check_output_path(target: str | os.PathLike, *, directory: bool, what: str = "output") -> Path:
    """Refuse output paths that cannot work, before any work is done; returns the absolute target.

    Refused: a path running through a regular file, a folder where a file should go (or the reverse),
    an existing folder the toolkit did not create, and a parent folder that cannot be written.
    """
    target = Path(os.path.abspath(os.fspath(target)))
    for parent in list(reversed(target.parents)):
        if parent.exists() and not parent.is_dir():
            raise InputError(f"cannot write {what} {target}: {parent} is a file, not a folder")
    if target.exists() or target.is_symlink():
        if directory:
            if not target.is_dir():
                raise InputError(f"cannot write {what} folder {target}: a file of that name exists; "
                                 "choose another output path")
            if not (target / MARKER).is_file() and any(target.iterdir()):
                raise InputError(f"refusing to replace {target}: it exists and was not written by carecall_eval "
                                 f"(no {MARKER} marker); choose a new output folder or remove it yourself")
        elif target.is_dir():
            raise InputError(f"cannot write {what} file {target}: it is an existing folder; give a file name")
    parent = _existing_ancestor(target)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {target}: {parent} is not writable; choose another output path")
    return target


def _existing_ancestor(p: Path) -> Path:
    for parent in p.parents:
        if parent.exists():
            return parent
    return Path("/")


def _mkdirs(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain(exc, path, what) from None


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
    for p in parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        try:
            pid = int(p.name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
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

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            raise _explain(exc, self.target, self.what) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise InputError(f"another carecall-eval run is writing {self.target} right now; wait for it to "
                             "finish or choose another output path") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """Turn SIGTERM into an exception while writing (main thread only), so partial output is cleaned up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
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


def _partial_name(target: Path) -> Path:
    return target.parent / f".{target.name}{_PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def output_dir(target: str | os.PathLike, *, kind: str = "output", what: str | None = None) -> Iterator[Path]:
    """Write a folder atomically: yields an empty staging folder; swapped in as ``target`` on success.

    ``target`` may not exist, may be an empty folder, or a folder this toolkit wrote earlier (marker present);
    anything else is refused.  On any exception (and on SIGTERM) the staging folder is removed and ``target``
    is left as it was.
    """
    what = what or kind
    target = check_output_path(target, directory=True, what=what)
    _mkdirs(target.parent, what)
    cleanup_stale(target.parent, target.name)
    with _Lock(target, what), _terminate_as_exception():
        check_output_path(target, directory=True, what=what)   # again, under the lock
        staging = _partial_name(target)
        try:
            staging.mkdir()
            _fix_mode(staging, True)
            (staging / MARKER).write_text(json.dumps({"tool": "carecall_eval", "kind": kind}) + "\n")
            _fix_mode(staging / MARKER, False)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _explain(exc, target, what) from None
        old = None
        try:
            yield staging
            for p in staging.rglob("*"):
                _fix_mode(p, p.is_dir())
            if target.exists():
                old = _partial_name(target)
                os.replace(target, old)
            try:
                os.replace(staging, target)
            except OSError:
                if old is not None:
                    os.replace(old, target)
                    old = None
                raise
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise _explain(exc, target, what) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "output") -> None:
    """Write one file atomically (beside it, then renamed); permissions follow the umask."""
    path = check_output_path(path, directory=False, what=what)
    _mkdirs(path.parent, what)
    cleanup_stale(path.parent, path.name)
    tmp = _partial_name(path)
    try:
        with _terminate_as_exception():
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                _fix_mode(tmp, False)
                os.replace(tmp, path)
            except OSError as exc:
                raise _explain(exc, path, what) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str, *, what: str = "output") -> None:
    """Write one text file (UTF-8) atomically."""
    write_bytes(path, text.encode("utf-8"), what=what)
