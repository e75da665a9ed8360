"""The server's worker: one job on the device at a time, the models of the last job kept loaded.

A request (the dict :func:`mlx_video.server.app` validated) becomes the family's settings here, with the same
checks as the CLI (:meth:`WanSettings.validate`, :meth:`LTXSettings.validate`, :mod:`mlx_video.checks`):
:func:`settings_for` is called once when the request arrives (a bad value is a 400 then) and again when the job
runs. Images: Wan passes them as the task takes them (ti2v/mi2v anchors, i2v first frame, flf2v first and last);
LTX-2 puts the first at frame 0 and a second at the last frame (strength 1).
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, fields, replace
from pathlib import Path

from mlx_video.server.jobs import Job, JobStore

# settings fields a request may set through "options" (no server-side paths: video, extend, LoRA files)
WAN_OPTIONS = {"sample_shift", "solver", "bidirectional", "recipe", "segments", "overlap"}
LTX_OPTIONS = {"video_guidance", "audio_guidance", "lora_strength_stage_1", "lora_strength_stage_2", "image_crf"}


class Cancelled(Exception):
    """The job was deleted while it ran."""


@dataclass(frozen=True)
class Model:
    """A model the server offers: ``name`` (what requests send as ``model``), ``path`` (a folder, file or repo id
    as the CLI takes it) and ``family`` ("wan" | "ltx2")."""

    name: str
    path: str
    family: str


def frames_for(family: str, seconds: float, fps: float) -> int:
    """Pixel frames for a clip of ``seconds`` at ``fps``: the largest 4k+1 (Wan) or 8k+1 (LTX-2) not above
    ``seconds * fps`` (at least 1)."""
    step = 4 if family == "wan" else 8
    return max(0, int(seconds * fps + 1e-6) - 1) // step * step + 1


def settings_for(model: Model, req: dict):
    """(settings, images) for a request: WanSettings (validated; images inside it) or LTXSettings (validated with
    its ImageConditions, seed fixed). Raises ValueError / ImageError naming the value, as the CLI does."""
    opts = dict(req.get("options") or {})
    allowed = WAN_OPTIONS if model.family == "wan" else LTX_OPTIONS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"unknown options {unknown} for {model.family}; allowed: {', '.join(sorted(allowed))}")
    images = [str(p) for p in req.get("image_paths") or []]
    w, h = req.get("width"), req.get("height")
    if model.family == "wan":
        from mlx_video.wan.config import TASKS
        from mlx_video.wan.settings import WanSettings

        task = req.get("task") or "ti2v-5B"
        frames = req.get("frames")
        if frames is None and req.get("seconds") is not None and task in TASKS:
            frames = frames_for("wan", req["seconds"], req.get("fps") or TASKS[task].fps)
        s = WanSettings(
            task=task,
            prompt=req["prompt"],
            negative_prompt=req.get("negative_prompt"),
            images=tuple(images),
            size=None if w is None else f"{w}*{h}",
            frame_num=frames,
            sample_steps=req.get("steps"),
            guide_scale=req.get("guidance_scale"),
            fps=req.get("fps"),
            seed=req.get("seed"),
            **opts,
        )
        return s.validate(), []
    import numpy as np

    from mlx_video.io.images import load_image
    from mlx_video.ltx2.settings import ImageCondition, LTXSettings

    kw = {k: v for k, v in dict(opts, pipeline=req.get("pipeline"), steps=req.get("steps")).items() if v is not None}
    kw.update({k: req[k] for k in ("height", "width", "fps", "seed", "negative_prompt") if req.get(k) is not None})
    if req.get("guidance_scale") is not None:
        kw["video_guidance"] = {**(kw.get("video_guidance") or {}), "cfg_scale": req["guidance_scale"]}
    s = LTXSettings(**kw)
    s.num_frames = req.get("frames") or (
        frames_for("ltx2", req["seconds"], s.fps) if req.get("seconds") is not None else s.num_frames
    )
    s = s.validate().with_seed()
    if len(images) > 2:
        raise ValueError("LTX-2 takes at most 2 input_reference images (the first and the last frame)")
    conds = [
        ImageCondition(np.asarray(load_image(p), dtype=np.uint8), 0 if i == 0 else s.num_frames - 1, 1.0)
        for i, p in enumerate(images)
    ]
    s.validate(conds)
    return s, conds


def settings_fields(family: str) -> set[str]:
    """The settings dataclass' field names (for the page's "use these settings again")."""
    if family == "wan":
        from mlx_video.wan.settings import WanSettings as S
    else:
        from mlx_video.ltx2.settings import LTXSettings as S
    return {f.name for f in fields(S)}


class Runner:
    """Runs the store's queued jobs on one worker thread, in order. ``models``: name -> Model. Keeps the last
    job's loaded pipeline (Wan) or components (LTX-2) for the next job with the same model; loading another
    frees it first (one model set in memory).

    Each Wan job is planned as ``mlx_video generate`` plans a run (``WanPipeline.fit_memory``, before any weights
    of the job load): ``memory_budget`` bytes, default what this machine lets MLX use
    (:func:`mlx_video.memory.default_budget`). Nothing is fixed, so the plan may keep the models resident
    between jobs when they fit (offload off) and frees them when they do not; the plan is stored in the job's
    params (``memory_plan``). A job whose smallest plan does not fit fails with the planner's message."""

    def __init__(self, store: JobStore, models: dict[str, Model], memory_budget: float | None = None):
        self.store, self.models, self.memory_budget = store, models, memory_budget
        self._loaded: tuple | None = None  # (key, object)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mlx_video-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            job = self.store.next(timeout=0.2)
            if job is not None:
                self.current = job.id
                try:
                    self.run(job)
                finally:
                    self.current = None

    def _keep(self, key: tuple, load):
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None  # free the previous model set before loading the next
            import mlx.core as mx

            mx.clear_cache()
            self._loaded = (key, load())
        return self._loaded[1]

    def run(self, job: Job) -> None:
        """Run one job to completed or failed (a deleted job is dropped)."""
        from mlx_video.io.hub import DownloadError
        from mlx_video.io.images import ImageError
        from mlx_video.io.weights import WeightsError
        from mlx_video.result import NonFiniteError

        store, t0 = self.store, time.perf_counter()
        try:
            model = self.models[job.request["model"]]
            res = self._generate(job, model)
            if store.get(job.id) is None:
                raise Cancelled
            store.update(job, progress=97, phase="writing the video")
            meta = dict(
                res.params,
                family=model.family,
                model=model.path,
                generator="mlx_video",
                seed_drawn=job.request.get("seed_drawn", False),
                server_job=job.id,
            )
            if model.family == "ltx2":
                meta["prompt"] = job.request["prompt"]
            from mlx_video.io.video import write_video

            write_video(store.output(job.id), res.frames, res.fps, meta, audio=res.audio, sample_rate=res.sample_rate)
            if store.get(job.id) is None:  # deleted while writing
                store.output(job.id).unlink(missing_ok=True)
                raise Cancelled
            timings = {k: round(v, 3) for k, v in res.timings.items()}
            meta["timings"] = dict(timings, total=round(time.perf_counter() - t0, 3))
            store.update(
                job, status="completed", progress=100, phase="done", completed_at=int(time.time()), params=meta
            )
        except Cancelled:
            return
        except (ValueError, ImageError, WeightsError, DownloadError, NonFiniteError, OSError) as e:
            self._fail(job, "generation_failed", str(e))
        except Exception as e:  # noqa: BLE001 - a job's bug must not stop the worker; the message says what
            traceback.print_exc()
            self._fail(job, "internal_error", f"{type(e).__name__}: {e}")

    def _fail(self, job: Job, code: str, message: str) -> None:
        if self.store.get(job.id) is not None:
            self.store.update(
                job,
                status="failed",
                phase="failed",
                completed_at=int(time.time()),
                error=dict(code=code, message=message),
            )

    def _progress(self, job: Job, stages: int):
        """A pipeline progress callback that maps (stage, step, total) to 5..90 % over ``stages`` denoising
        stages, and raises Cancelled once the job is deleted."""
        seen: list = []
        last = {"step": None}

        def progress(stage: str, step: int, total: int) -> None:
            if self.store.get(job.id) is None:
                raise Cancelled
            if stage.startswith("decode"):
                pct, phase = 92, "decoding"
            elif stage == "text encode":
                pct, phase = 3, "encoding the prompt"
            else:
                if not seen or seen[-1] != stage or (last["step"] is not None and step < last["step"]):
                    seen.append(stage)
                last["step"] = step
                done = (len(seen) - 1 + step / max(total, 1)) / max(stages, len(seen))
                pct, phase = 5 + int(85 * done), f"{stage} step {step}/{total}"
            self.store.update(job, progress=max(job.progress, min(pct, 95)), phase=phase)

        return progress

    def _generate(self, job: Job, model: Model):
        req = job.request
        settings, images = settings_for(model, req)
        self.store.update(job, progress=1, phase="loading the model")
        if model.family == "wan":
            from mlx_video.resolve import resolve
            from mlx_video.wan.pipeline import WanPipeline

            def load():
                return WanPipeline(resolve(model.path, "wan"))

            pipe = self._keep(("wan", model.path), load)
            pipe.check_task(settings.preset)
            self.store.update(job, progress=2, phase="planning memory")
            mp = pipe.fit_memory(pipe.plan(settings), self.memory_budget)
            settings = replace(settings, batch_cfg=mp.batch_cfg)
            self.store.update(job, progress=2, phase="encoding the prompt")
            return pipe.generate(settings, progress=self._progress(job, settings.segments))
        from mlx_video.ltx2 import pipelines as P
        from mlx_video.ltx2.loading import encode_text, load_components, read_config, resolve_ltx2_model

        model_dir = Path(resolve_ltx2_model(model.path, settings.variant, None))
        cfg = read_config(model_dir)
        self.store.update(job, progress=2, phase="encoding the prompt")
        pos, neg = encode_text(model_dir, cfg, req["prompt"], settings.negative_text)
        key = ("ltx2", model.path, settings.pipeline, settings.lora_strengths, bool(images))
        self.store.update(job, progress=4, phase="loading the transformer")
        comps = self._keep(
            key, lambda: load_components(model_dir, cfg, settings.pipeline, settings.lora_strengths, bool(images))
        )
        stages = 2 if settings.pipeline in P.TWO_STAGE else 1
        return P.generate(
            comps,
            settings,
            pos,
            neg,
            images,
            decode_audio=not req.get("no_audio", False),
            progress=self._progress(job, stages),
        )
