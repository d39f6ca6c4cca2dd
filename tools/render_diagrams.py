"""Render the network's procedures to PNG for docs/procedures.md (docs/img/<process file>.png).

    .venv/bin/python tools/render_diagrams.py

Uses the app's own bpmn-js bundle (webapp/static/dist, built by `make setup`) in Debian's Chromium.
"""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
from functools import partial
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="diagram.css">
<style>body{margin:0;background:#fff} #d{width:%dpx;height:%dpx}</style></head>
<body><div id="d" data-diagram-url="model.bpmn"></div><script src="diagram.js"></script></body></html>"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def render(model: Path, target: Path, width: int = 1800, height: int = 560) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("diagram.js", "diagram.css"):
            shutil.copy(ROOT / "webapp" / "static" / "dist" / name, folder / name)
        shutil.copy(model, folder / "model.bpmn")
        (folder / "index.html").write_text(PAGE % (width, height), encoding="utf-8")
        handler = partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
                page.wait_for_selector(".djs-container svg .djs-element", timeout=15000)
                page.wait_for_timeout(300)
                page.locator("#d").screenshot(path=str(target))
                browser.close()
        finally:
            server.shutdown()


def main() -> None:
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    for model in sorted((ROOT / "processes").glob("*.bpmn")):
        render(model, out / f"{model.stem}.png")
        print(f"docs/img/{model.stem}.png")


if __name__ == "__main__":
    main()
