"""A minimal Chrome DevTools-protocol client over ``--remote-debugging-pipe`` (headless
Chromium; no WebSocket library): open a page, take screenshots.

Chromium reads commands from its fd 3 and writes replies to fd 4, each a JSON message
ended by a NUL byte. Chromium's own ``--screenshot`` flag captures the loading page of a
WebGL/WASM app, hence the protocol (shared/VIEW.md)."""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import shutil
import subprocess
from typing import Any


class Chromium:
    def __init__(self, *, size: tuple[int, int] = (1280, 720)) -> None:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        assert binary, "apt-get install chromium (Makefile APT_PKGS)"
        to_chrome, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome = os.pipe()

        def as_fd3_fd4() -> None:  # in the child: dup above 4 first, so neither end is overwritten
            a, b = fcntl.fcntl(to_chrome, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--remote-debugging-pipe", "--no-first-run",
             # nothing but loopback: no font or update requests that block the first render
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--window-size={size[0]},{size[1]}",
             "about:blank"],
            preexec_fn=as_fd3_fd4, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(to_chrome)
        os.close(from_chrome)
        self._ids = itertools.count(1)
        self._buffer = b""
        self.session: str | None = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_chrome, 1 << 20)
                assert chunk, f"chromium closed the pipe (exit {self.proc.poll()})"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == msg_id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)
