"""``pan360 preview`` in a real browser (Debian's chromium + chromedriver, driven by selenium): the page
loads a generated clip, draws the view as the renderer does, takes a keyframe by dragging the view, saves,
and ``render --path`` renders what was saved. Skips where no browser is installed (.ci/run installs it)."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

from pan360 import pipeline
from pan360 import preview as pv
from pan360.media import iter_frames
from pan360.reproject import Renderer
from tests.conftest import psnr, write_drum_clip

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and DRIVER):
        pytest.skip("no chromium / chromedriver installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--window-size=1400,900"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    yield driver
    driver.quit()


@contextlib.contextmanager
def served(session):
    """The preview server of ``session`` on a free port, in a thread; yields its URL."""
    server = pv.make_server(session, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield pv.url_of(server)
    finally:
        server.shutdown()
        server.server_close()


def wait_for(driver, script: str, timeout: float = 20.0):
    end = time.time() + timeout
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def canvas_rgb(driver, element_id: str) -> np.ndarray:
    url = driver.execute_script(f"return document.getElementById('{element_id}').toDataURL('image/png')")
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_preview_page_keyframe_save_and_render(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    clip = write_drum_clip(tmp_path / "clip.mp4", width=512, height=256, duration=2.0, sounding_until=2.0)
    saved = tmp_path / "edited.json"
    session = pv.open_session(clip, path=saved, saliency="foa", size="320x180")
    with served(session) as url:
        browser.get(url)
        wait_for(browser, "return document.body.dataset.ready && document.body.dataset.rendered")
        # the page's view is the renderer's picture: same angles, same pixels (up to the browser's decoder)
        browser.execute_script("pan360.seek(1.0)")
        wait_for(browser, "return pan360.frame === 30 && document.getElementById('video').readyState >= 2")
        time.sleep(0.3)
        page = canvas_rgb(browser, "nfov")
        info = session.info
        rgb = [f for i, (_, f) in enumerate(iter_frames(info, fmt="rgb24")) if i == 30][0]
        view = session.analysis.path.view(30)
        ref = Renderer(info.eye_width, info.eye_height, 320, 180, device="cpu").render_rgb(rgb, view)
        assert page.shape == ref.shape and psnr(page, ref) > 30.0, psnr(page, ref)

        # drag the view 80 px to the left: the camera turns right by 80 px x (90° / 320 px) = 22.5°
        yaw0 = browser.execute_script("return pan360.view.yaw")
        canvas = browser.find_element(By.ID, "nfov")
        ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(-80, 0).release().perform()
        yaw1 = browser.execute_script("return pan360.view.yaw")
        assert abs(yaw1 - yaw0 - 22.5) < 1.0, (yaw0, yaw1)
        browser.find_element(By.ID, "addkey").click()
        assert browser.execute_script("return pan360.keys.length") == 1
        browser.find_element(By.ID, "save").click()
        wait_for(browser, "return document.body.dataset.saved")
        assert "saved" in browser.find_element(By.ID, "status").text

    doc = json.loads(saved.read_text())
    (kf,) = doc["keyframes"]
    assert abs(kf["time"] - 1.0) < 1e-6 and abs(kf["yaw"] - yaw1) < 1e-6 and kf["interp"] == "ease"
    frames = doc["frames"]
    assert len(frames) == 60 and abs(frames[30]["yaw"] - yaw1) < 1e-4  # the plan keeps the keyframe
    assert abs(frames[-1]["yaw"] - 60.0) < 10.0  # and goes back to the drum after it
    # render --path renders what was saved, and --trajectory-out gives it back unchanged
    out, again = tmp_path / "out.mp4", tmp_path / "again.json"
    res = pipeline.render(clip, out, path=saved, trajectory_out=again, preset="ultrafast")
    assert out.is_file() and abs(res.path.yaw[30] - yaw1) < 1e-4
    back = json.loads(again.read_text())["frames"]
    for a, b in zip(frames, back):
        for k in ("time", "yaw", "pitch", "roll", "h_fov", "v_fov"):
            assert abs(a[k] - b[k]) < 1e-6, (k, a, b)
    # reopening the saved file brings the keyframes back for more editing
    assert pv.open_session(clip, path=saved, saliency="foa").keyframes == doc["keyframes"]


def test_preview_follow_a_clicked_subject(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from pan360.metrics import in_view
    from tests.test_follow import FPS, write_lookalikes

    clip = tmp_path / "two.mp4"
    _, yaw, pitch = write_lookalikes(clip, start_yaw=-80.0, width=512, height=256)
    saved = tmp_path / "follow.json"
    session = pv.open_session(clip, path=saved, saliency="foa", size="320x180", framing=False)
    with served(session) as url:
        browser.get(url)
        wait_for(browser, "return document.body.dataset.ready && document.body.dataset.rendered")
        browser.execute_script("pan360.seek(1.0)")
        wait_for(browser, f"return pan360.frame === {FPS}")
        equi = browser.find_element(By.ID, "equi")
        w, h = equi.size["width"], equi.size["height"]
        x = (yaw[FPS] / 360 + 0.5) * w - w / 2
        y = (0.5 - pitch[FPS] / 180) * h - h / 2
        browser.find_element(By.ID, "pick").click()
        ActionChains(browser).move_to_element_with_offset(equi, int(round(x)), int(round(y))).click().perform()
        assert browser.execute_script("return pan360.follow.length") == 1
        browser.find_element(By.ID, "save").click()
        wait_for(browser, "return document.body.dataset.saved")
    doc = json.loads(saved.read_text())
    (f,) = doc["follow"]
    assert abs(f["time"] - 1.0) < 1e-6 and abs(f["yaw"] - yaw[FPS]) < 2.0 and abs(f["pitch"] - 18.0) < 2.0
    path = pipeline.given_path(saved, session.info)
    assert in_view(path, yaw, pitch).mean() >= 0.95  # the clicked drum, not the sounding one


def test_preview_server_refuses_bad_requests_and_keeps_its_state(tmp_path):
    import http.client

    clip = write_drum_clip(tmp_path / "clip.mp4", width=256, height=128, duration=1.0, sounding_until=1.0)
    saved = tmp_path / "p.json"
    session = pv.open_session(clip, path=saved, saliency="foa", size="160x90")

    def post(body: bytes, headers: dict) -> int:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("POST", "/api/save", body=body, headers=headers)
        status = c.getresponse().status
        c.close()
        return status

    js = {"Content-Type": "application/json"}
    with served(session) as url:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        before = session.analysis.path
        assert post(b'{"keyframes": []}', {**js, "Host": "evil.example"}) == 403  # DNS rebinding
        assert post(b'{"keyframes": []}', {"Content-Type": "text/plain"}) == 403  # a cross-site form
        assert post(b"[1, 2]", js) == 400
        bad = json.dumps({"keyframes": [{"time": 0.5, "yaw": 0, "pitch": 0, "h_fov": 500}],
                          "follow": [{"time": 0.2, "yaw": 60, "pitch": 0}]}).encode()
        assert post(bad, js) == 400
        assert session.analysis.path is before and session.follow == [] and not saved.exists()
        late = json.dumps({"keyframes": [{"time": 50, "yaw": 0, "pitch": 0}]}).encode()
        assert post(late, js) == 400
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/static/../__init__.py")
        assert c.getresponse().status == 404
        c.close()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/video", headers={"Range": "bytes=0-9"})
        r = c.getresponse()
        assert r.status == 206 and len(r.read()) == 10
        c.close()
