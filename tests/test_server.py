"""`mlx_video serve`: the OpenAI-style video API on the bundled tiny models (FastAPI's TestClient): submit, poll,
download, delete, queue order, restart recovery, bad requests (4xx with a JSON error, never a 500), the API key."""

from __future__ import annotations

import json
import time

import av
import pytest
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from mlx_video.cli import app as cli_app  # noqa: E402
from mlx_video.cli import served_models  # noqa: E402
from mlx_video.io.video import read_metadata  # noqa: E402
from mlx_video.memory import default_budget  # noqa: E402
from mlx_video.server.app import create_app  # noqa: E402
from tests.helpers import ASSETS, IMAGES  # noqa: E402
from tests.wan_tiny import TINY  # noqa: E402

WAN = dict(prompt="a cat", task="t2v-5B", size="64x32", frames="5", steps="1")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def models():
    return served_models([str(TINY), f"ltx={ASSETS / 'tiny-LTX-2'}"])


def wait(client, video_id, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = client.get(f"/v1/videos/{video_id}").json()
        if v["status"] in ("completed", "failed"):
            return v
        time.sleep(0.1)
    raise AssertionError(f"{video_id} still {v['status']} after {timeout} s")


def test_submit_poll_download_delete(models, tmp_path):
    with TestClient(create_app(models, tmp_path / "jobs")) as c:
        assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["tiny-Wan2.2-TI2V-5B", "ltx"]
        r = c.post("/v1/videos", data=dict(WAN, seed="3"))
        assert r.status_code == 200, r.text
        v = r.json()
        assert v["object"] == "video" and v["status"] in ("queued", "in_progress") and v["size"] == "64x32"
        done = wait(c, v["id"])
        assert done["status"] == "completed" and done["progress"] == 100, done
        assert done["params"]["seed"] == 3 and done["params"]["frame_num"] == 5
        plan = done["params"]["memory_plan"]  # planned for what this machine lets MLX use, as the CLI does
        assert abs(plan["budget_gib"] - default_budget() / (1 << 30)) < 1e-6 and plan["peak_gib"] > 0
        mp4 = c.get(f"/v1/videos/{v['id']}/content")
        assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
        out = tmp_path / "got.mp4"
        out.write_bytes(mp4.content)
        with av.open(str(out)) as f:
            s = f.streams.video[0]
            assert (s.width, s.height, sum(1 for _ in f.decode(s))) == (64, 32, 5)
        assert read_metadata(out)["server_job"] == v["id"]  # `mlx_video info` and `--from` work on it
        assert [x["id"] for x in c.get("/v1/videos").json()["data"]] == [v["id"]]
        events = c.get("/v1/events", params={"until_idle": True}).text
        assert events.startswith("data: ") and json.loads(events[6:].split("\n\n")[0])["data"][0]["id"] == v["id"]
        d = c.delete(f"/v1/videos/{v['id']}").json()
        assert d == {"id": v["id"], "object": "video.deleted", "deleted": True}
        assert c.get(f"/v1/videos/{v['id']}").status_code == 404
        assert not (tmp_path / "jobs" / v["id"]).exists()


def test_wan_jobs_are_memory_planned(models, tmp_path):
    """Each Wan job runs WanPipeline.fit_memory for the server's budget: a roomy one keeps the models resident
    between jobs (offload off), a tight one offloads and frees what the last job left, one below the smallest plan
    fails the job with the planner's message (and the worker goes on)."""
    app = create_app(models, tmp_path / "jobs", memory_budget=1e15)
    with TestClient(app) as c:
        done = wait(c, c.post("/v1/videos", data=WAN).json()["id"])
        assert done["status"] == "completed" and done["params"]["memory_plan"]["offload"] is False, done
        pipe = app.state.runner._loaded[1]
        assert pipe._text is not None and pipe._dits  # kept for the next job
        roomy = done["params"]["memory_plan"]["peak_gib"]
        app.state.runner.memory_budget = roomy * 0.999 * (1 << 30)
        done = wait(c, c.post("/v1/videos", data=WAN).json()["id"])
        plan = done["params"]["memory_plan"]
        assert done["status"] == "completed" and plan["peak_gib"] < roomy and plan["steps"], done
        app.state.runner.memory_budget = 1 << 20
        failed = wait(c, c.post("/v1/videos", data=WAN).json()["id"])
        assert failed["status"] == "failed" and failed["error"]["code"] == "generation_failed"
        assert "no memory plan fits 0.00 GiB" in failed["error"]["message"], failed


def test_ltx_json_request_with_an_image_and_seconds(models, tmp_path):
    with TestClient(create_app(models, tmp_path / "jobs")) as c:
        with open(IMAGES / "chelsea.png", "rb") as f:
            r = c.post(
                "/v1/videos",
                data=dict(prompt="a cat", model="ltx", size="128x128", seconds="0.4", no_audio="true"),
                files=[("input_reference", ("cat.png", f, "image/png"))],
            )
        assert r.status_code == 200, r.text
        done = wait(c, r.json()["id"])
        assert done["status"] == "completed", done
        p = done["params"]
        assert p["num_frames"] == 9 and p["pipeline"] == "distilled" and p["images"][0]["frame"] == 0  # 0.4 s at 24 fps
        assert done["request"]["seed"] == p["seed"] and done["request"]["seed_drawn"] is True


def test_queue_runs_in_submission_order_one_at_a_time(models, tmp_path):
    app = create_app(models, tmp_path / "jobs", start_runner=False)
    runner, order, running = app.state.runner, [], []
    run = runner.run

    def record(job):
        running.append(job.id)
        assert len(running) == 1  # one job on the device at a time
        order.append(job.id)
        run(job)
        running.pop()

    runner.run = record
    with TestClient(app) as c:
        ids = [c.post("/v1/videos", data=dict(WAN, seed=str(i))).json()["id"] for i in range(3)]
        assert [c.get(f"/v1/videos/{i}").json()["queue_position"] for i in ids] == [0, 1, 2]
        runner.start()
        assert all(wait(c, i)["status"] == "completed" for i in ids)
    assert order == ids


def test_restart_keeps_finished_jobs_and_reports_the_interrupted_one(models, tmp_path):
    root = tmp_path / "jobs"
    with TestClient(create_app(models, root)) as c:
        first = c.post("/v1/videos", data=WAN).json()["id"]
        assert wait(c, first)["status"] == "completed"
    app = create_app(models, root, start_runner=False)
    with TestClient(app) as c:
        cut, waiting = (c.post("/v1/videos", data=WAN).json()["id"] for _ in range(2))
        assert app.state.store.next().id == cut  # taken by the worker ... and the process dies
    with TestClient(create_app(models, root)) as c:  # the restart
        v = c.get(f"/v1/videos/{cut}").json()
        assert v["status"] == "failed" and v["error"]["code"] == "interrupted", v
        assert c.get(f"/v1/videos/{first}/content").status_code == 200
        assert wait(c, waiting)["status"] == "completed"


BAD = [  # (form fields or raw body, status, message fragment)
    (dict(WAN, prompt=""), 400, "prompt is required"),
    (dict(WAN, size="big"), 400, "size must be WIDTHxHEIGHT"),
    (dict(WAN, size="100x64"), 400, "multiples of 32"),
    (dict(WAN, frames="10"), 400, "4k+1"),
    (dict(WAN, steps="0"), 400, "sample_steps must be at least 1"),
    (dict(WAN, steps="2.5"), 400, "steps must be a whole number"),
    (dict(WAN, seed="x"), 400, "seed must be a whole number"),
    (dict(WAN, guidance_scale="nan"), 400, "guidance_scale must be finite"),
    (dict(WAN, fps="0"), 400, "fps"),
    (dict(WAN, seconds="2", frames="5"), 400, "seconds or frames"),
    (dict(WAN, frames="", seconds="-1"), 400, "seconds must be in"),
    (dict(WAN, task="t2v-99B"), 400, "unknown task"),
    (dict(WAN, model="nope"), 404, "unknown model"),
    (dict(WAN, colour="red"), 400, "unknown fields"),
    (dict(WAN, options="{bad"), 400, "options must be a JSON object"),
    (dict(WAN, options='{"video": "/etc/passwd"}'), 400, "unknown options"),
    (dict(WAN, size="99968x99968"), 400, "tokens"),
    (dict(WAN, model="ltx", size="96x96"), 400, "multiple of 64"),
    (dict(WAN, model="ltx", pipeline="fast"), 400, "unknown pipeline"),
    ("not json", 400, "not valid JSON"),
    ("[1]", 400, "must be a JSON object"),
]


@pytest.mark.parametrize("body,status,fragment", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_requests_are_4xx_json_errors(body, status, fragment, models, tmp_path):
    with TestClient(create_app(models, tmp_path / "jobs", start_runner=False)) as c:
        if isinstance(body, str):
            r = c.post("/v1/videos", content=body, headers={"content-type": "application/json"})
        else:
            r = c.post("/v1/videos", data=body)
        assert r.status_code == status, r.text
        assert fragment in r.json()["error"]["message"], r.text
        assert c.get("/v1/videos").json()["data"] == [] and list((tmp_path / "jobs").iterdir()) == []


def test_bad_uploads_ids_and_limits(models, tmp_path):
    with TestClient(create_app(models, tmp_path / "jobs", max_upload_bytes=1 << 20, start_runner=False)) as c:
        r = c.post("/v1/videos", data=dict(WAN, task="ti2v-5B"), files=[("input_reference", ("x.png", b"junk"))])
        assert r.status_code == 400 and "cannot read image" in r.json()["error"]["message"], r.text
        r = c.post("/v1/videos", data=WAN, files=[("input_reference", ("x.png", b"0" * (2 << 20)))])
        assert r.status_code == 413, r.text
        r = c.post("/v1/videos", data=WAN, files=[("other", ("x.png", b"0"))])
        assert r.status_code == 400 and "input_reference" in r.text
        assert c.post("/v1/videos", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        assert c.get("/v1/videos/video_nope").status_code == 404
        assert c.delete("/v1/videos/video_nope").json()["error"]["param"] == "video_id"
        queued = c.post("/v1/videos", data=WAN).json()["id"]
        r = c.get(f"/v1/videos/{queued}/content")
        assert r.status_code == 409 and "queued" in r.json()["error"]["message"]
        assert c.get("/v1/videos", params={"limit": "x"}).status_code == 400
        assert c.get("/").status_code == 200 and "<html" in c.get("/").text
        assert c.get("/v1/tasks").json()["wan"][0]["task"] == "t2v-5B"


def test_api_key_and_non_loopback_host(models, tmp_path):
    with TestClient(create_app(models, tmp_path / "jobs", api_key="k3y", start_runner=False)) as c:
        r = c.get("/v1/videos")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert c.get("/v1/videos", headers={"Authorization": "Bearer k3y"}).status_code == 200
        assert c.get("/v1/videos", params={"api_key": "k3y"}).status_code == 200
        assert c.get("/v1/videos", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/").status_code == 200  # the page asks for the key
    r = CliRunner().invoke(cli_app, ["serve", "--model", str(TINY), "--host", "0.0.0.0"], env={"MLX_VIDEO_API_KEY": ""})
    assert r.exit_code == 2 and "--api_key" in r.output


def test_serve_memory_budget_reaches_the_runner(monkeypatch, tmp_path):
    """`serve --memory_budget GB` plans every job for that many GiB; a bad budget fails before serving."""
    import uvicorn

    import mlx_video.server.app as server_app

    seen = {}
    real = server_app.create_app

    def spy(*a, **kw):
        seen.update(kw)
        return real(*a, **{**kw, "start_runner": False})

    monkeypatch.setattr(server_app, "create_app", spy)
    monkeypatch.setattr(uvicorn, "run", lambda app_, **kw: seen.setdefault("served", app_))
    args = ["serve", "--model", str(TINY), "--dir", str(tmp_path / "jobs")]
    r = CliRunner().invoke(cli_app, [*args, "--memory_budget", "10.5"])
    assert r.exit_code == 0, r.output
    assert seen["memory_budget"] == 10.5 * (1 << 30) and "served" in seen
    for bad in ("0", "-1", "inf"):
        r = CliRunner().invoke(cli_app, [*args, "--memory_budget", bad])
        assert r.exit_code == 2 and "--memory_budget" in r.output
