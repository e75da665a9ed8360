"""Progress of the file phases (a download, a conversion), reported to a callback the caller renders.

The library never prints: :func:`mlx_video.io.hub.download` and the converters
(:func:`mlx_video.wan.checkpoint.convert_wan`, :func:`mlx_video.ltx2.checkpoint.convert_ltx2`) take an optional
``progress`` callable and call it with :class:`FileProgress` reports; ``mlx_video generate`` / ``convert`` render
them (:func:`mlx_video.cli.common.file_progress`).

Order of the reports of one phase: a phase report (``file`` None, ``done`` 0, ``total`` the bytes of every file,
``files`` their count), then for each file a report when it starts (``done`` 0) and one or more as it proceeds
(download: as bytes arrive; conversion: when the file's component is written, ``done == total``), each followed by a
phase report with the bytes done so far; then one last phase report with ``finished`` True (and ``done == total``).
Downloads of several files may report from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileProgress:
    """One report. phase: "download" | "convert"; what: the repo id (download) or the converted folder's name
    (convert); file: the file's name (repo-relative for a download, the source file's name for a conversion), None
    for the phase as a whole; done / total: bytes (total None when unknown); files: the phase's file count (phase
    reports only); finished: the phase's last report."""

    phase: str
    what: str
    file: str | None
    done: int
    total: int | None
    files: int = 0
    finished: bool = False  # the phase's last report


Progress = Callable[[FileProgress], None]


class Phase:
    """The reports of one phase over ``files`` ({name: size in bytes}); a no-op when ``callback`` is None.
    Thread-safe: downloads report from several threads."""

    def __init__(self, callback: Progress | None, phase: str, what: str, files: dict[str, int | None]):
        self.callback, self.phase, self.what = callback, phase, what
        self.sizes = dict(files)
        self._done: dict[str, int] = {}
        self.total = sum(s or 0 for s in self.sizes.values())
        self.lock = threading.Lock()
        self._emit(None, 0, self.total, len(self.sizes))

    def _emit(self, file, done, total, files=0, finished=False):
        if self.callback is not None:
            self.callback(FileProgress(self.phase, self.what, file, done, total, files, finished))

    def file(self, name: str, done: int, total: int | None = None) -> None:
        """``done`` bytes of file ``name`` (``total`` replaces its size when given)."""
        with self.lock:
            if total is not None and self.sizes.get(name) != total:
                self.total += total - (self.sizes.get(name) or 0)
                self.sizes[name] = total
            self._done[name] = done
            size, so_far = self.sizes.get(name), sum(self._done.values())
            self._emit(name, done, size)
            self._emit(None, min(so_far, self.total), self.total, len(self.sizes))

    def start(self, names) -> None:
        """Files ``names`` start (0 bytes done)."""
        for n in names:
            self.file(n, 0)

    def finish_files(self, names) -> None:
        """Files ``names`` are done (all their bytes)."""
        for n in names:
            self.file(n, self.sizes.get(n) or 0)

    def finish(self) -> None:
        """The phase is over: every file done."""
        with self.lock:
            pending = [n for n in self.sizes if self._done.get(n, 0) < (self.sizes[n] or 0)]
        self.finish_files(pending)
        with self.lock:
            self._emit(None, self.total, self.total, len(self.sizes), finished=True)


def _size(p: Path) -> int | None:
    try:
        return p.stat().st_size
    except OSError:
        return None


class ConvertSteps(Phase):
    """A conversion phase (``what``: the output folder) over the source tensor files of each component
    (``groups``: {component: [files]}): ``start(component)`` before a component is read, ``done(component)`` once
    it is written. Files are named relative to ``root`` when under it (``high_noise_model/...``), else by name.
    A file that cannot be stat'ed (missing) counts with an unknown size: the converter reading it says what is
    wrong (WeightsError), not the progress report."""

    def __init__(
        self, callback: Progress | None, what: str | Path, groups: dict[str, list[Path]], root: Path | None = None
    ):
        self.root = Path(root) if root is not None else None
        self.groups = {k: [Path(p) for p in v] for k, v in groups.items() if v}
        files = {self._name(p): _size(p) for v in self.groups.values() for p in v}
        super().__init__(callback, "convert", Path(what).name, files)

    def _name(self, p: Path) -> str:
        if self.root is not None and p.is_relative_to(self.root):
            return str(p.relative_to(self.root))
        return p.name

    def start(self, component: str) -> None:  # type: ignore[override]
        super().start(self._name(p) for p in self.groups.get(component, ()))

    def done(self, component: str) -> None:
        self.finish_files(self._name(p) for p in self.groups.get(component, ()))
