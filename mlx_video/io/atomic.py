"""Atomic files and folders: write beside the target under a temporary name, then rename.

A reader (or a user looking at the folder after Ctrl-C or SIGTERM) sees the old file or the complete
new one, never a partial one, and no temporary name is left behind: the temporary path is removed in a
``finally`` block, which also runs when the CLI turns SIGTERM into an exception
(:func:`terminate_as_exception`). Results get the permissions any tool gives new files under the
user's umask (normally 0644 files, 0755 folders), not ``mkstemp``'s private 0600 / 0700.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".tmp-"  # every temporary name we create contains this (tests look for leftovers by it)


def umask() -> int:
    """The process umask (read without changing it for longer than two system calls)."""
    old = os.umask(0o022)
    os.umask(old)
    return old


def public_mode(is_dir: bool = False) -> int:
    """0666 (files) or 0777 (folders) less the umask: what ``open``/``mkdir`` would have created."""
    return (0o777 if is_dir else 0o666) & ~umask()


def temp_name(target: Path) -> Path:
    """A fresh hidden temporary path beside ``target`` (same folder, so the rename stays atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}{TMP_MARK}", dir=target.parent)
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it gets the umask's permissions and
    replaces ``path``; on any exception (KeyboardInterrupt and SIGTERM included) it is removed.
    The temporary name keeps ``path``'s suffix (writers that choose a format by suffix still work)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}{TMP_MARK}", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, public_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_folder(dst: str | os.PathLike) -> Iterator[Path]:
    """Yield a new temporary folder beside ``dst``; on success it gets the umask's permissions (and so do
    its sub-folders) and takes ``dst``'s place: an existing ``dst`` is first renamed aside, then removed
    once the new folder is in place. On failure the temporary folder is removed and ``dst`` is untouched.
    Callers decide beforehand whether ``dst`` may be replaced (:func:`mlx_video.io.checkpoint.staged_folder`).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}{TMP_MARK}", dir=dst.parent))
    old = None
    try:
        yield tmp
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            os.chmod(d, public_mode(is_dir=True))
        if dst.exists() or dst.is_symlink():
            old = temp_name(dst)
            old.unlink()
            os.rename(dst, old)
        os.rename(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old.exists() or old.is_symlink()):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so ``finally`` blocks (temporary files) run."""


TERMINATED = False  # set once SIGTERM arrived (the CLI's exit status then says so)


def _raise_terminated(signum, frame):
    global TERMINATED
    if TERMINATED:  # a second SIGTERM while cleaning up: keep cleaning up
        return
    TERMINATED = True
    raise Terminated(f"terminated by signal {signum}")


def terminate_as_exception() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (the CLI calls this at start).
    SIGINT already raises KeyboardInterrupt; SIGTERM would otherwise kill the process at once."""
    signal.signal(signal.SIGTERM, _raise_terminated)
