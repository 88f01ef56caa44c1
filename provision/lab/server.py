"""The lab mirror's HTTP server (stdlib only; `lab up` starts it detached, by file path).

    python3 server.py --root DIR --port PORT [--bind 127.0.0.1] [--faults FILE]

Serves DIR like repo.radeon.com. Control endpoints (never part of the mirror tree):
    GET  /_lab/health                  "ok"
    GET  /_lab/stats                   JSON: bytes and requests served, per path and in total
    POST /_lab/stats/reset             (GET works too) zero the counters
    GET  /_lab/fault                   JSON: the active faults
    POST /_lab/fault?mode=M&path=P     (GET works too) make paths starting with P fail with mode M:
         down     503 Service Unavailable
         reset    close the connection without an answer
         notfound 404
         garbage  200 with random bytes of the same length (hash and signature checks must catch it)
         slow     send in small chunks with delay=S seconds (default 2) between them
         none     clear faults for P (or all faults when P is not given)
    GET  /_as/LABEL/PATH               PATH, served as if asked directly: gives one lab host a mirror URL of its
                                       own (provision_repo_base_url=.../_as/LABEL) whose faults hit no one else
    POST /_lab/auth  {"user": U, "password": P}   (JSON body, so the password is in no URL or log line)
                                       require HTTP Basic U:P for /_auth/U/PATH, which serves PATH
    GET  /_lab/auth                    JSON: per user, how many requests were refused and accepted
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO

MODES = ("down", "reset", "notfound", "garbage", "slow", "none")


ALIAS_PREFIX = "/_as/"
AUTH_PREFIX = "/_auth/"


def strip_auth(path: str) -> str:
    """/_auth/USER/rest -> /rest (the user's credentials were checked before)."""
    if not path.startswith(AUTH_PREFIX):
        return path
    _, _, rest = path[len(AUTH_PREFIX):].partition("/")
    return "/" + rest


def strip_alias(path: str) -> str:
    """/_as/LABEL/rest -> /rest (faults and counters still see the full path)."""
    path = strip_auth(path)
    if not path.startswith(ALIAS_PREFIX):
        return path
    _, _, rest = path[len(ALIAS_PREFIX):].partition("/")
    return "/" + rest


class LabState:
    def __init__(self, faults_file: str | None) -> None:
        self.lock = threading.Lock()
        self.paths: dict[str, dict[str, int]] = {}
        self.total_bytes = 0
        self.total_requests = 0
        self.faults: list[dict[str, Any]] = []
        self.faults_file = faults_file
        self.credentials: dict[str, str] = {}  # user -> password, for /_auth/USER/ (memory only)
        self.auth_counts: dict[str, dict[str, int]] = {}
        if faults_file and os.path.exists(faults_file):
            try:
                with open(faults_file, encoding="utf-8") as handle:
                    self.faults = json.load(handle)
            except (OSError, ValueError):
                self.faults = []

    def count(self, path: str, nbytes: int, request: bool) -> None:
        with self.lock:
            entry = self.paths.setdefault(path, {"requests": 0, "bytes": 0})
            entry["bytes"] += nbytes
            self.total_bytes += nbytes
            if request:
                entry["requests"] += 1
                self.total_requests += 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"total_bytes": self.total_bytes, "total_requests": self.total_requests,
                    "paths": {k: dict(v) for k, v in sorted(self.paths.items())}}

    def reset(self) -> None:
        with self.lock:
            self.paths.clear()
            self.total_bytes = 0
            self.total_requests = 0

    def set_fault(self, mode: str, prefix: str, delay: float) -> None:
        with self.lock:
            self.faults = [f for f in self.faults if prefix and f["path"] != prefix]
            if mode != "none":
                self.faults.append({"mode": mode, "path": prefix or "/", "delay": delay})
            self._save()

    def fault_for(self, path: str) -> dict[str, Any] | None:
        with self.lock:
            matches = [f for f in self.faults if path.startswith(f["path"])]
        return max(matches, key=lambda f: len(f["path"])) if matches else None

    def _save(self) -> None:
        if self.faults_file:
            tmp = self.faults_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(self.faults, handle)
            os.replace(tmp, self.faults_file)


class Handler(SimpleHTTPRequestHandler):
    state: LabState
    protocol_version = "HTTP/1.1"
    server_version = "rocm-provision-lab-mirror/1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {self.address_string()} {format % args}\n")

    # control endpoints -------------------------------------------------------------------------------
    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = (json.dumps(data, indent=2) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _control(self) -> bool:
        url = urllib.parse.urlsplit(self.path)
        if not url.path.startswith("/_lab/"):
            return False
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/_lab/health":
            self._json({"ok": True})
        elif url.path == "/_lab/stats":
            self._json(self.state.stats())
        elif url.path == "/_lab/stats/reset":
            self.state.reset()
            self._json({"reset": True})
        elif url.path == "/_lab/auth":
            if self.command == "POST" and self._body:
                try:
                    data = json.loads(self._body)
                    user, password = str(data["user"]), str(data["password"])
                except (ValueError, KeyError, TypeError):
                    self._json({"error": 'body must be {"user": ..., "password": ...}'}, HTTPStatus.BAD_REQUEST)
                    return True
                with self.state.lock:
                    self.state.credentials[user] = password
            with self.state.lock:
                self._json({"users": {u: dict(self.state.auth_counts.get(u, {"refused": 0, "accepted": 0}))
                                      for u in self.state.credentials}})
        elif url.path == "/_lab/fault":
            mode = query.get("mode")
            if mode is None:
                self._json({"faults": self.state.faults})
            elif mode not in MODES:
                self._json({"error": f"mode must be one of {', '.join(MODES)}"}, HTTPStatus.BAD_REQUEST)
            else:
                prefix = query.get("path", "")
                if prefix and not prefix.startswith("/"):
                    prefix = "/" + prefix
                try:
                    delay = float(query.get("delay", "2"))
                except ValueError:
                    delay = 2.0
                self.state.set_fault(mode, prefix, delay)
                self._json({"faults": self.state.faults})
        else:
            self._json({"error": "unknown control endpoint"}, HTTPStatus.NOT_FOUND)
        return True

    _body = b""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self._body = self.rfile.read(length)
        if not self._control():
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    def do_GET(self) -> None:
        if self._control():
            return
        if self._auth_refused() or self._fault_before():
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if self._auth_refused() or self._fault_before():
            return
        super().do_HEAD()

    def _auth_refused(self) -> bool:
        """Under /_auth/USER/, answer 401 unless the request carries USER's registered password (HTTP Basic)."""
        path = self._url_path()
        if not path.startswith(AUTH_PREFIX):
            return False
        user = path[len(AUTH_PREFIX):].partition("/")[0]
        with self.state.lock:
            expected = self.state.credentials.get(user)
        given = self.headers.get("Authorization") or ""
        ok = False
        if expected is not None and given.startswith("Basic "):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                ok = base64.b64decode(given[6:].strip(), validate=True).decode() == f"{user}:{expected}"
        with self.state.lock:
            counts = self.state.auth_counts.setdefault(user, {"refused": 0, "accepted": 0})
            counts["accepted" if ok else "refused"] += 1
        if ok:
            return False
        body = b"401 lab mirror: credentials required\n"
        self.send_response(HTTPStatus.UNAUTHORIZED)
        self.send_header("WWW-Authenticate", 'Basic realm="rocm-provision lab mirror"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return True

    def translate_path(self, path: str) -> str:
        return super().translate_path(strip_alias(path))

    # faults and counting -----------------------------------------------------------------------------
    def _url_path(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)

    def _fault_before(self) -> bool:
        fault = self.state.fault_for(self._url_path())
        self._fault = fault
        if fault is None:
            return False
        mode = fault["mode"]
        if mode == "down":
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "lab mirror fault: down")
            return True
        if mode == "notfound":
            self.send_error(HTTPStatus.NOT_FOUND, "lab mirror fault: notfound")
            return True
        if mode == "reset":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
            return True
        return False

    def copyfile(self, source: BinaryIO, outputfile: BinaryIO) -> None:  # type: ignore[override]
        path = self._url_path()
        fault = getattr(self, "_fault", None)
        self.state.count(path, 0, request=True)
        rng = random.Random()
        while True:
            chunk = source.read(64 * 1024 if not fault or fault["mode"] != "slow" else 4096)
            if not chunk:
                break
            if fault and fault["mode"] == "garbage":
                chunk = rng.randbytes(len(chunk))
            if fault and fault["mode"] == "slow":
                time.sleep(float(fault.get("delay", 2)))
            # Count before writing: a client that has read the last byte then sees it in /_lab/stats.
            self.state.count(path, len(chunk), request=False)
            outputfile.write(chunk)


def make_server(root: str, port: int, bind: str = "127.0.0.1", faults: str | None = None) -> ThreadingHTTPServer:
    if not bind.startswith("127."):
        raise ValueError("the lab mirror only listens on loopback (127.0.0.0/8)")
    state = LabState(faults)

    class BoundHandler(Handler):
        pass

    BoundHandler.state = state

    def factory(*a: Any, **kw: Any) -> Handler:
        return BoundHandler(*a, directory=root, **kw)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    return Server((bind, port), factory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="rocm-provision lab mirror")
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--faults")
    args = parser.parse_args(argv)
    try:
        server = make_server(args.root, args.port, args.bind, args.faults)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stderr.write(f"lab mirror serving {args.root} on http://{args.bind}:{args.port}/\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
