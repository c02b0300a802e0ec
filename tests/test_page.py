"""The drawing page in a real headless Chromium (Playwright): draw, remember, recognise, refuse, upload.

Uses Debian's ``chromium`` (``.ci/run`` installs it) and the packaged Omniglot model. Set
``FEWSHOT_SCREENSHOT=path.png`` to keep the screenshot (the README's is made so).
"""
from __future__ import annotations

import io
import math
import os
import shutil

import pytest
from PIL import Image, ImageDraw
from serving_support import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")

TRIANGLE = [[(0.5, 0.2), (0.2, 0.75), (0.8, 0.75), (0.5, 0.2)]]
ZIGZAG = [[(0.15, 0.3), (0.35, 0.7), (0.5, 0.3), (0.65, 0.7), (0.85, 0.3)]]
SPIRAL = [[(0.5 + 0.04 * t * math.cos(t), 0.5 + 0.04 * t * math.sin(t)) for t in [i / 4 for i in range(36)]]]
CROSS = [[(0.2, 0.2), (0.8, 0.8)], [(0.8, 0.2), (0.2, 0.8)], [(0.5, 0.1), (0.5, 0.9)]]


def draw(page, strokes, shift=(0.0, 0.0), scale=1.0):
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + box["width"] * (0.5 + (x - 0.5) * scale + shift[0]),
                   box["y"] + box["height"] * (0.5 + (y - 0.5) * scale + shift[1])) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for a, b in zip(points, points[1:]):
            for k in range(1, 6):  # intermediate moves, as a hand would make
                page.mouse.move(a[0] + (b[0] - a[0]) * k / 5, a[1] + (b[1] - a[1]) * k / 5)
        page.mouse.up()


def ask(page) -> str:
    page.click("#ask")
    page.wait_for_function("document.querySelector('#answer .name, #answer .unknown') !== null && "
                           "document.querySelector('#answer').dataset.seen !== '1'")
    text = page.locator("#answer .name, #answer .unknown").first.inner_text()
    page.evaluate("document.querySelector('#answer').dataset.seen = '1'")
    return text


def remember(page, name):
    page.fill("#name", name)
    page.click("#remember")
    page.wait_for_function(f"document.querySelector('#status').textContent.includes('Remembered {name}')")


def test_draw_remember_recognise_refuse_upload(tmp_path):
    from playwright.sync_api import sync_playwright

    server = Server("--gallery", tmp_path / "page.gallery")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1100, "height": 720})
            page.goto(server.url + "/")
            draw(page, TRIANGLE)
            remember(page, "triangle")
            draw(page, ZIGZAG)
            remember(page, "zigzag")
            draw(page, SPIRAL)
            remember(page, "spiral")
            assert page.locator("#classes figure").count() == 3
            draw(page, TRIANGLE, shift=(0.04, -0.03), scale=0.9)  # a variant: smaller, moved
            assert ask(page) == "triangle"
            page.click("#clear")
            draw(page, CROSS)
            answer = ask(page)
            assert answer != "triangle"
            page.click("#clear")
            picture = Image.new("L", (105, 105), 255)
            ImageDraw.Draw(picture).line([(52, 14), (18, 80), (86, 80), (52, 14)], fill=0, width=4)
            upload = tmp_path / "triangle.png"
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG")
            upload.write_bytes(buffer.getvalue())
            page.set_input_files("#upload", str(upload))
            page.wait_for_function("document.querySelector('#status').textContent.includes('Loaded triangle.png')")
            assert ask(page) == "triangle"
            page.screenshot(path=os.environ.get("FEWSHOT_SCREENSHOT", str(tmp_path / "page.png")), full_page=True)
            browser.close()
    finally:
        server.kill()
