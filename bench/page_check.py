"""End-to-end check of the page at / of `textcls serve` in a real headless browser (Debian's chromium).

    PYTHONPATH=. python bench/page_check.py --run runs/demo --screenshot docs/serve-page.png

Starts `textcls serve RUN` on a free loopback port and chromium in headless mode, drives chromium
through the Chrome DevTools Protocol over a pipe (`--remote-debugging-pipe`: NUL-separated JSON on
file descriptors 3 and 4, so no websocket client or driver is needed), types a text into the page's
text box (and the second box of a pair run) as keystrokes would insert it, presses Classify, reads the
label and the bars off the page, checks the label against POST /predict for the same text, and saves a
screenshot. Exits 1 when the page shows another label or none.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import free_port, start_server

TEXT = "Oil prices rose on Tuesday as traders worried about supplies from the Gulf"
PAIR = "Crude futures climbed two dollars a barrel in New York, the biggest gain in a month."


class DevTools:
    """A minimal CDP client over chromium's debugging pipe: send a command, wait for its answer."""

    def __init__(self, browser: str, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # chromium reads commands on fd 3 and writes answers and events on fd 4: the shell puts the pipes there
        args = ["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", f"--user-data-dir={profile}", "--window-size=900,700", "about:blank"]
        self.proc = subprocess.Popen(
            ["sh", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', browser, *args],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0

    def send(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk
        raise TimeoutError(f"{method}: no answer in {timeout} s")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def post_predict(port: int, body: dict) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/predict", json.dumps(body), {"Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


def evaluate(tools: DevTools, session: str, expression: str):
    result = tools.send("Runtime.evaluate", session, expression=expression, returnByValue=True, awaitPromise=True)
    return result.get("result", {}).get("value")


def poll(tools: DevTools, session: str, expression: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = evaluate(tools, session, expression)
        if value:
            return value
        time.sleep(0.1)
    return None


def type_into(tools: DevTools, session: str, element_id: str, text: str) -> None:
    evaluate(tools, session, f"document.getElementById({json.dumps(element_id)}).focus()")
    tools.send("Input.insertText", session, text=text)  # as typing or an IME inserts it: input events fire


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained run directory")
    parser.add_argument("--screenshot", type=Path, default=Path("serve-page.png"))
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--pair", default=PAIR, help="the second text, for a run on text pairs")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")

    port = free_port()
    server = start_server(args.run, port, max_batch=64, max_wait_ms=5)  # exits with the reason if it cannot
    with tempfile.TemporaryDirectory(prefix="page-check-") as profile:
        tools = None
        try:
            tools = DevTools(browser, Path(profile))
            target = tools.send("Target.createTarget", url="about:blank")["targetId"]
            session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            tools.send("Page.enable", session)
            tools.send("Runtime.enable", session)
            tools.send("Page.navigate", session, url=f"http://127.0.0.1:{port}/")
            if not poll(tools, session, "document.readyState === 'complete' && !!document.getElementById('text')"):
                raise SystemExit("the page did not load")
            pairs = bool(evaluate(tools, session, "!!document.getElementById('pair')"))
            type_into(tools, session, "text", args.text)
            if pairs:
                type_into(tools, session, "pair", args.pair)
            evaluate(tools, session, "document.getElementById('submit').click()")
            shown = poll(tools, session, "(document.getElementById('label') || {}).textContent || "
                                         "(document.getElementById('error') || {}).textContent")
            bars = evaluate(tools, session, "document.querySelectorAll('#result .row').length")
            shot = tools.send("Page.captureScreenshot", session, format="png")["data"]
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            args.screenshot.write_bytes(base64.b64decode(shot))
            body = {"texts": [args.text], "top_k": 1, **({"pairs": [args.pair]} if pairs else {})}
            expected = post_predict(port, body)["predictions"][0]["label"]
        finally:
            if tools is not None:
                tools.close()
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    print(f"page label: {shown!r}; /predict label: {expected!r}; {bars} probability bars; "
          f"screenshot: {args.screenshot}")
    if shown != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
