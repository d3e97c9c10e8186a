"""A TCP forwarder that can cut the link the way a network partition does: no FIN, no
RST, just nothing (both directions stop moving), and heal it again.

Used by the fault suite to put a "network" between two hosts of one graph on one
machine: host A binds 127.0.0.2:PORT, host B is told A is 127.0.0.3 and dials
127.0.0.3:PORT, where this proxy listens and forwards to 127.0.0.2:PORT.
"""

from __future__ import annotations

import selectors
import socket
import threading


class PartitionProxy:
    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(listen, reuse_port=False)
        self.server.setblocking(False)
        self.cut = threading.Event()
        self._stop = threading.Event()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._run, name="partition-proxy", daemon=True)
        self._thread.start()

    def partition(self) -> None:
        self.cut.set()

    def heal(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in list(self._pairs):
            s.close()
        self.server.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        registered: set[socket.socket] = set()
        while not self._stop.is_set():
            if self.cut.is_set():
                # a cut link: accept nothing, read nothing, write nothing (kernel buffers fill)
                for s in registered:
                    sel.unregister(s)
                registered.clear()
                self._stop.wait(0.05)
                continue
            wanted = {self.server, *self._pairs}
            for s in wanted - registered:
                sel.register(s, selectors.EVENT_READ)
            for s in registered - wanted:
                sel.unregister(s)
            registered = wanted
            for key, _ in sel.select(0.05):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if s is self.server:
                    self._accept()
                elif s in self._pairs:
                    self._pump(s)

    def _accept(self) -> None:
        try:
            down, _ = self.server.accept()
        except BlockingIOError:
            return
        try:
            up = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            down.close()
            return
        for s in (down, up):
            s.setblocking(True)
            s.settimeout(1.0)
        self._pairs[down] = up
        self._pairs[up] = down

    def _pump(self, s: socket.socket) -> None:
        peer = self._pairs[s]
        try:
            data = s.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for x in (s, peer):
            self._pairs.pop(x, None)
            x.close()
