"""The page at `/` in a real headless Chromium (Debian's package), driven over the DevTools protocol: type a prompt,
press Generate, wait for the video in the gallery and check that it plays.

Skipped only when no Chromium is installed; .ci/run installs it with apt-get and sets MLX_VIDEO_REQUIRE_BROWSER=1,
which turns the skip into a failure. ``MLX_VIDEO_SCREENSHOT=PATH`` also saves a screenshot of the page (the README's
docs/images/server.png is made so).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import websocket  # the test extra installs it, with fastapi (a missing one fails, never skips)

from mlx_video.cli import served_models  # noqa: E402
from mlx_video.server.app import create_app  # noqa: E402
from tests.helpers import ASSETS  # noqa: E402
from tests.wan_tiny import TINY  # noqa: E402


def chromium() -> str:
    exe = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if exe is None:
        if os.environ.get("MLX_VIDEO_REQUIRE_BROWSER"):
            pytest.fail("no Chromium, though .ci/run installed it (MLX_VIDEO_REQUIRE_BROWSER is set)")
        pytest.skip("no Chromium installed (apt-get install chromium)")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """A minimal DevTools protocol client over one page's websocket."""

    def __init__(self, url: str):
        self.ws, self.n = websocket.create_connection(url, timeout=60), 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 240.0):
        t0 = time.time()
        while time.time() - t0 < timeout:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expr}")


@pytest.fixture
def server(tmp_path, tmp_path_factory, monkeypatch):
    import uvicorn

    monkeypatch.setenv("MLX_VIDEO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    models = served_models([str(TINY), f"tiny-LTX-2={ASSETS / 'tiny-LTX-2'}"])
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(create_app(models, tmp_path / "jobs"), host="127.0.0.1", port=port, log_level="warning")
    )
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t0 = time.time()
    while not srv.started and time.time() - t0 < 30:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


@pytest.fixture
def page(tmp_path):
    exe = chromium()
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file, t0 = profile / "DevToolsActivePort", time.time()
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.time() - t0 > 60 or proc.poll() is not None:
                raise AssertionError("Chromium did not start its DevTools server")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        tab = next(t for t in targets if t["type"] == "page")
        dt = DevTools(tab["webSocketDebuggerUrl"])
        yield dt
        dt.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_page_submits_a_prompt_and_plays_the_video(server, page):
    page.call("Page.enable")
    page.call("Page.navigate", url=server + "/")
    page.wait("document.readyState === 'complete' && document.querySelectorAll('#model option').length === 2")
    assert page.js("document.querySelector('#task').value") == "t2v-5B"
    page.js(
        """(() => {
        const set = (id, v) => { const el = document.getElementById(id); el.value = v;
                                 el.dispatchEvent(new Event('input', {bubbles: true})); };
        set('prompt', 'a red kite over the sea'); set('width', '96'); set('height', '64');
        set('frames', '9'); set('steps', '2'); set('seed', '42');
        document.getElementById('submit').click(); })()"""
    )
    assert page.wait("document.querySelector('#queue .job') !== null || document.querySelector('.item video') !== null")
    page.wait("(() => { const v = document.querySelector('.item video'); return v && v.readyState >= 2; })()")
    played = page.js(
        """(async () => { const v = document.querySelector('.item video'); await v.play();
            await new Promise(r => setTimeout(r, 600));
            return {paused: v.paused, t: v.currentTime, w: v.videoWidth, h: v.videoHeight, d: v.duration}; })()"""
    )
    assert not played["paused"] and played["t"] > 0 and (played["w"], played["h"]) == (96, 64), played
    text = page.js("document.querySelector('.item').innerText")
    assert "a red kite over the sea" in text and "42" in text and "t2v-5B" in text
    page.js("document.querySelector('.item .again').click()")  # "use these settings again" fills the form
    assert page.js("[document.querySelector('#prompt').value, document.querySelector('#seed').value]") == [
        "a red kite over the sea",
        "42",
    ]
    shot = os.environ.get("MLX_VIDEO_SCREENSHOT")
    if shot:
        page.js(
            "document.querySelector('.item video').pause(); document.querySelector('.item video').currentTime = 0.2"
        )
        time.sleep(0.5)
        png = page.call("Page.captureScreenshot", format="png")["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))
