"""A small client for ``emorl serve`` on the standard library only (urllib), for programs, tests
and the load benchmark::

    from emorl.serve.client import Client
    c = Client("http://127.0.0.1:8000", token=None)
    status, body, headers = c.predict("clip.mp4", ablation=True)   # body: the JSON answer or {"error": ...}
"""

from __future__ import annotations

import json
import mimetypes
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def multipart(files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data body with ``(field, filename, data)`` parts."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, name, data in files:
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: bytes | None = None, ctype: str | None = None, headers: dict | None = None
    ) -> tuple[int, dict | str, dict]:
        """(status, JSON body or text, headers); HTTP errors are returned, not raised."""
        h = dict(headers or {})
        if ctype:
            h["Content-Type"] = ctype
        if self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                status, raw, hdrs = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            status, raw, hdrs = e.code, e.read(), dict(e.headers)
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text), hdrs
        except json.JSONDecodeError:
            return status, text, hdrs

    def health(self):
        return self.request("GET", "/health")

    def metrics(self):
        return self.request("GET", "/metrics")

    def predict(self, path: str | Path, *, ablation: bool = False, name: str | None = None, data: bytes | None = None):
        """Upload one file (its bytes, or ``data`` sent under ``name``)."""
        p = Path(path)
        body, ctype = multipart([("file", name or p.name, data if data is not None else p.read_bytes())])
        return self.request("POST", f"/v1/predict?ablation={'true' if ablation else 'false'}", body, ctype)

    def predict_path(self, rel: str, *, ablation: bool = False):
        """A file under the server's --media-root, by its relative path."""
        return self.request(
            "POST", "/v1/predict", json.dumps({"path": rel, "ablation": ablation}).encode(), "application/json"
        )

    def predict_batch(self, paths: list[str | Path], *, ablation: bool = False):
        body, ctype = multipart([("files", Path(p).name, Path(p).read_bytes()) for p in paths])
        return self.request("POST", f"/v1/predict/batch?ablation={'true' if ablation else 'false'}", body, ctype)
