"""The echo service's fake: a set of items behind GET /items, PUT /items/<item>, DELETE /items/<item>,
for one bearer token, on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EchoServer:
    def __init__(self, token: str) -> None:
        self.token = token
        self.items: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def write_calls(self) -> list[tuple[str, str]]:
        with self._lock:
            return [call for call in self.calls if call[0] != "GET"]

    def _handle(self, method: str, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls.append((method, path))
            if authorization != f"Bearer {self.token}":
                return 401, {"error": "unauthorized"}
            if method == "GET" and path == "/items":
                return 200, {"items": sorted(self.items)}
            item = path.removeprefix("/items/")
            if path.startswith("/items/") and item and "/" not in item:
                if method == "PUT":
                    self.items.add(item)
                    return 200, {"item": item}
                if method == "DELETE":
                    self.items.discard(item)
                    return 200, {"item": item}
            return 404, {"error": "not found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                status, body = server._handle(self.command, self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = _reply

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
