"""``mlx_video serve``: an OpenAI-style video API and a page in the browser (FastAPI).

Endpoints (JSON; errors are ``{"error": {"message", "type", "param"}}`` with a 4xx status):

- ``POST /v1/videos``: multipart form (images as ``input_reference`` files, repeatable) or JSON. Fields:
  ``prompt`` (required), ``model`` (a served model's name; default the first), ``size`` ("WxH" pixels),
  ``seconds`` or ``frames`` (pixel frames), ``seed`` (drawn and stored when absent), ``negative_prompt``,
  ``steps``, ``guidance_scale``, ``fps``, ``task`` (Wan), ``pipeline`` (LTX-2), ``no_audio`` and ``options``
  (a JSON object of further settings, :data:`mlx_video.server.runner.WAN_OPTIONS` / ``LTX_OPTIONS``). Every
  value is checked as the CLI checks it before the job is queued. Returns the video object (status ``queued``).
- ``GET /v1/videos`` (newest first), ``GET /v1/videos/{id}`` (status, progress 0-100, phase, error, params),
  ``GET /v1/videos/{id}/content`` (the mp4), ``DELETE /v1/videos/{id}`` (also cancels a running job).
- ``GET /v1/models`` (the served models), ``GET /v1/tasks`` (official defaults, as ``mlx_video tasks``),
  ``GET /v1/events`` (server-sent events: the job list on every change), ``GET /`` (the page).

With an API key every ``/v1`` path needs ``Authorization: Bearer KEY`` (or ``?api_key=KEY``, for the page's
event stream and video elements).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from mlx_video.server.jobs import Job, JobStore
from mlx_video.server.runner import Model, Runner, settings_for

STATIC = Path(__file__).parent / "static"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_IMAGES, MAX_PROMPT = 8, 20000
INT_FIELDS = ("frames", "seed", "steps", "width", "height")
FLOAT_FIELDS = ("seconds", "guidance_scale", "fps")
TEXT_FIELDS = ("prompt", "negative_prompt", "model", "size", "task", "pipeline")


class BadRequest(Exception):
    """A request the API refuses: ``status`` 4xx, ``message`` one line, ``param`` the field (or None)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def _number(name: str, value, kind):
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRequest(f"{name} must be a number, got {value!r}", name)
    try:
        v = float(value) if kind is float else value if isinstance(value, int) else int(str(value).strip())
    except (TypeError, ValueError):
        raise BadRequest(
            f"{name} must be {'a number' if kind is float else 'a whole number'}, got {value!r}", name
        ) from None
    if kind is float and not math.isfinite(v):
        raise BadRequest(f"{name} must be finite, got {value!r}", name)
    return v


def parse_size(size: str) -> tuple[int, int]:
    """ "WxH" (OpenAI's spelling) or "W*H" -> (width, height) in pixels. Raises BadRequest."""
    parts = str(size).lower().replace("*", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise BadRequest(f"size must be WIDTHxHEIGHT in pixels (e.g. 1280x720), got {size!r}", "size") from None
    return w, h


def create_app(
    models: list[Model],
    root: str | Path,
    api_key: str | None = None,
    max_upload_bytes: int = 64 << 20,
    start_runner: bool = True,
    memory_budget: float | None = None,
):
    """The FastAPI app serving ``models`` (the first is the default) with jobs persisted under ``root``.
    ``start_runner``: run queued jobs (a test may leave them queued). ``memory_budget``: bytes each Wan job is
    planned for (:class:`mlx_video.server.runner.Runner`; default what this machine lets MLX use)."""
    if not models:
        raise ValueError("serve needs at least one model")
    by_name = {m.name: m for m in models}
    store = JobStore(root)
    runner = Runner(store, by_name, memory_budget)

    @asynccontextmanager
    async def lifespan(app):
        if start_runner:
            runner.start()
        yield
        runner.stop()

    app = FastAPI(title="mlx_video", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.store, app.state.runner = store, runner

    def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "param": param}})

    @app.exception_handler(BadRequest)
    async def _bad(request, e: BadRequest):
        return error(e.status, e.message, e.param)

    @app.exception_handler(HTTPException)
    async def _http(request, e: HTTPException):
        return error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        return error(400, "; ".join(str(x.get("msg")) for x in e.errors()) or "invalid request")

    @app.exception_handler(Exception)
    async def _internal(request, e: Exception):  # a bug: still JSON, never a traceback page
        return error(500, f"internal error: {type(e).__name__}", kind="server_error")

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        path = request.url.path
        if api_key is not None and path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            given = given[7:] if given.lower().startswith("bearer ") else request.query_params.get("api_key", "")
            if not secrets.compare_digest(given.encode(), api_key.encode()):
                return error(401, "missing or wrong API key (Authorization: Bearer KEY)", kind="authentication_error")
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_upload_bytes):
            return error(413, f"request larger than {max_upload_bytes >> 20} MiB", kind="request_too_large")
        return await call_next(request)

    def job_or_404(video_id: str) -> Job:
        job = store.get(video_id)
        if job is None:
            raise BadRequest(f"no video {video_id!r}", "video_id", 404)
        return job

    def public(job: Job) -> dict:
        out = job.public()
        out["queue_position"] = store.position(job.id)
        return out

    async def read_request(request: Request) -> tuple[dict, list[tuple[str, bytes]]]:
        """(fields, [(filename, bytes)]) from a JSON or multipart body."""
        ctype = request.headers.get("content-type", "")
        uploads: list[tuple[str, bytes]] = []
        if ctype.startswith("application/json"):
            try:
                body = json.loads(await request.body() or b"null")
            except (ValueError, UnicodeDecodeError):
                raise BadRequest("the body is not valid JSON") from None
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            if "input_reference" in body:
                raise BadRequest("send input_reference images as multipart/form-data files", "input_reference")
            return body, uploads
        if not ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            raise BadRequest("send multipart/form-data (with input_reference files) or application/json", None, 415)
        try:
            form = await request.form(max_files=MAX_IMAGES, max_fields=100, max_part_size=max_upload_bytes)
        except Exception as e:  # starlette's MultiPartException, a malformed body
            raise BadRequest(f"cannot read the form: {e}") from None
        fields: dict = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key != "input_reference":
                    raise BadRequest(f"unexpected file field {key!r} (images go in input_reference)", key)
                uploads.append((value.filename or "image", await value.read()))
            elif key in fields:
                raise BadRequest(f"{key} given twice", key)
            else:
                fields[key] = value
        if "options" in fields:
            try:
                fields["options"] = json.loads(fields["options"]) if fields["options"].strip() else None
            except ValueError:
                raise BadRequest("options must be a JSON object", "options") from None
        return fields, uploads

    def normalize(fields: dict) -> dict:
        known = {*INT_FIELDS, *FLOAT_FIELDS, *TEXT_FIELDS, "options", "no_audio"}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise BadRequest(f"unknown fields {unknown}", unknown[0])
        req: dict = {}
        for k in TEXT_FIELDS:
            v = fields.get(k)
            if v is not None and not isinstance(v, str):
                raise BadRequest(f"{k} must be a string", k)
            req[k] = None if v == "" and k != "prompt" else v
        if not req.get("prompt") or not req["prompt"].strip():
            raise BadRequest("prompt is required", "prompt")
        for k in ("prompt", "negative_prompt"):
            if req.get(k) is not None and len(req[k]) > MAX_PROMPT:
                raise BadRequest(f"{k} longer than {MAX_PROMPT} characters", k)
        for k in INT_FIELDS:
            req[k] = _number(k, fields.get(k), int)
        for k in FLOAT_FIELDS:
            req[k] = _number(k, fields.get(k), float)
        if req.get("size"):
            req["width"], req["height"] = parse_size(req["size"])
        elif (req.get("width") is None) != (req.get("height") is None):
            raise BadRequest("give both width and height (or size WxH)", "size")
        if req.get("width") is not None:
            req["size"] = f"{req['width']}x{req['height']}"
        if req.get("frames") is not None and req.get("seconds") is not None:
            raise BadRequest("give seconds or frames, not both", "frames")
        if req.get("seconds") is not None and not 0 < req["seconds"] <= 3600:
            raise BadRequest(f"seconds must be in (0, 3600], got {req['seconds']}", "seconds")
        opts = fields.get("options")
        if opts is not None and not isinstance(opts, dict):
            raise BadRequest("options must be a JSON object", "options")
        req["options"] = opts or {}
        na = fields.get("no_audio")
        req["no_audio"] = str(na).lower() in ("1", "true", "yes", "on") if na is not None else False
        name = req.get("model") or models[0].name
        if name not in by_name:
            raise BadRequest(f"unknown model {name!r}; served: {', '.join(by_name)}", "model", 404)
        req["model"] = name
        req["seed_drawn"] = req["seed"] is None
        if req["seed"] is None:
            req["seed"] = secrets.randbelow(2**32)
        return req

    @app.post("/v1/videos")
    async def create_video(request: Request):
        from mlx_video.io.images import ImageError

        fields, uploads = await read_request(request)
        req = normalize(fields)
        if len(uploads) > MAX_IMAGES:
            raise BadRequest(f"at most {MAX_IMAGES} input_reference images", "input_reference")
        job = Job(id=store.new_id(), request=req)
        folder = store.folder(job.id)
        try:
            paths = []
            for i, (name, data) in enumerate(uploads):
                suffix = Path(name).suffix.lower()
                p = folder / "inputs" / f"input_{i}{suffix if suffix in IMAGE_SUFFIXES else '.img'}"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                paths.append(str(p))
            req["image_paths"] = paths
            req["images"] = [name for name, _ in uploads]
            try:  # the CLI's checks, before the job is queued
                await asyncio.to_thread(settings_for, by_name[req["model"]], req)
            except (ValueError, ImageError, TypeError) as e:
                raise BadRequest(str(e)) from None
            store.add(job)
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        return public(job)

    @app.get("/v1/videos")
    async def list_videos(limit: int = 100):
        return {"object": "list", "data": [public(j) for j in store.list()[: max(1, min(limit, 1000))]]}

    @app.get("/v1/videos/{video_id}")
    async def get_video(video_id: str):
        return public(job_or_404(video_id))

    @app.get("/v1/videos/{video_id}/content")
    async def get_content(video_id: str):
        job = job_or_404(video_id)
        out = store.output(job.id)
        if job.status != "completed" or not out.is_file():
            raise BadRequest(f"video {video_id} is {job.status}, not completed", "video_id", 409)
        return FileResponse(out, media_type="video/mp4", filename=f"{job.id}.mp4")

    @app.delete("/v1/videos/{video_id}")
    async def delete_video(video_id: str):
        job = store.delete(job_or_404(video_id).id)
        return {"id": job.id, "object": "video.deleted", "deleted": True}

    @app.get("/v1/models")
    async def list_models():
        return {
            "object": "list",
            "data": [{"id": m.name, "object": "model", "family": m.family, "owned_by": "local"} for m in models],
        }

    @app.get("/v1/tasks")
    async def list_tasks():
        from mlx_video.cli.tasks import catalog

        return catalog()

    @app.get("/v1/events")
    async def events(request: Request, until_idle: bool = False):
        """Server-sent events: ``data: {"data": [video objects]}`` now and on every change. ``until_idle``:
        end once no job is queued or running (for scripts and tests)."""

        async def stream():
            seen = -1
            while True:
                changed = store.changed
                if changed != seen:
                    seen = changed
                    jobs = [public(j) for j in store.list()]
                    yield f"data: {json.dumps({'data': jobs})}\n\n"
                    if until_idle and not any(j["status"] in ("queued", "in_progress") for j in jobs):
                        return
                if await request.is_disconnected():
                    return
                await asyncio.to_thread(store.wait_change, seen, 0.5)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app
