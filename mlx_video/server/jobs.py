"""The server's jobs, persisted in a folder so a restart loses nothing finished.

Layout of ``root``: ``<id>/job.json`` (the job, rewritten atomically on every change), ``<id>/inputs/`` (the
uploaded images), ``<id>/video.mp4`` (the result, written atomically by the runner). Statuses follow the OpenAI
video API: ``queued`` -> ``in_progress`` -> ``completed`` | ``failed``. On start, a job found ``in_progress``
was cut off by the previous process: it becomes ``failed`` with error code ``interrupted``; ``queued`` jobs are
queued again in their creation order.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlx_video.io.atomic import write_bytes_atomic

STATUSES = ("queued", "in_progress", "completed", "failed")


@dataclass
class Job:
    """One video request. ``request``: the validated request fields (JSON-able; image paths inside ``inputs/``);
    ``params``: the full parameter set of the finished run (the mp4's metadata); progress 0..100;
    created_at / completed_at: Unix seconds; error: None or {"code", "message"}."""

    id: str
    request: dict
    status: str = "queued"
    progress: int = 0
    phase: str = ""
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None
    error: dict | None = None
    params: dict | None = None

    def public(self) -> dict:
        """The OpenAI-style video object the API returns."""
        r = self.request
        return dict(
            id=self.id,
            object="video",
            model=r.get("model"),
            status=self.status,
            progress=self.progress,
            phase=self.phase,
            created_at=self.created_at,
            completed_at=self.completed_at,
            size=r.get("size"),
            seconds=r.get("seconds"),
            prompt=r.get("prompt"),
            error=self.error,
            request={k: v for k, v in r.items() if k != "image_paths"},
            params=self.params,
        )


class JobStore:
    """Jobs in memory and on disk, and the queue of waiting ones (thread-safe). ``changed`` is a counter bumped on
    every change (the event stream waits on it)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Condition()
        self.jobs: dict[str, Job] = {}
        self.queue: list[str] = []
        self.changed = 0
        self._load()

    def _load(self) -> None:
        found = []
        for p in sorted(self.root.glob("*/job.json")):
            try:
                job = Job(**json.loads(p.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a folder that is not a job (or a damaged one) is left alone
            if job.status == "in_progress":
                job.status, job.completed_at = "failed", int(time.time())
                job.error = dict(code="interrupted", message="the server stopped while this video was being made")
                self._save(job)
            found.append(job)
        for job in sorted(found, key=lambda j: (j.created_at, j.id)):
            self.jobs[job.id] = job
            if job.status == "queued":
                self.queue.append(job.id)

    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def output(self, job_id: str) -> Path:
        return self.folder(job_id) / "video.mp4"

    def _save(self, job: Job) -> None:
        write_bytes_atomic(self.folder(job.id) / "job.json", json.dumps(asdict(job), indent=1).encode())

    @staticmethod
    def new_id() -> str:
        return "video_" + secrets.token_hex(12)

    def add(self, job: Job) -> Job:
        with self.lock:
            self._save(job)
            self.jobs[job.id] = job
            self.queue.append(job.id)
            self._bump()
        return job

    def update(self, job: Job, **changes) -> None:
        with self.lock:
            for k, v in changes.items():
                setattr(job, k, v)
            if job.id in self.jobs:  # a deleted job is not written back
                self._save(job)
            self._bump()

    def _bump(self) -> None:
        self.changed += 1
        self.lock.notify_all()

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        """All jobs, newest first."""
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)

    def position(self, job_id: str) -> int | None:
        with self.lock:
            return self.queue.index(job_id) if job_id in self.queue else None

    def next(self, timeout: float = 0.5) -> Job | None:
        """Take the oldest queued job (waits up to ``timeout`` s); None when there is none."""
        with self.lock:
            if not self.queue:
                self.lock.wait(timeout)
            if not self.queue:
                return None
            job = self.jobs[self.queue.pop(0)]
            job.status, job.progress, job.phase = "in_progress", 0, "starting"
            self._save(job)
            self._bump()
            return job

    def delete(self, job_id: str) -> Job | None:
        """Forget a job and remove its folder (inputs, result); None when unknown."""
        with self.lock:
            job = self.jobs.pop(job_id, None)
            if job is None:
                return None
            if job_id in self.queue:
                self.queue.remove(job_id)
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
            self._bump()
            return job

    def wait_change(self, seen: int, timeout: float) -> int:
        """Block until ``changed`` differs from ``seen`` (or ``timeout`` s); returns the counter."""
        with self.lock:
            if self.changed == seen:
                self.lock.wait(timeout)
            return self.changed
