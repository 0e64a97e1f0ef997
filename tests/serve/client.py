"""A small HTTP client for the serve tests (the standard library's, so nothing is mocked)."""

from __future__ import annotations

import http.client
import io
import json
import uuid

from PIL import Image


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    @property
    def error(self) -> str:
        return self.json()["error"]

    def image(self) -> Image.Image:
        img = Image.open(io.BytesIO(self.body))
        img.load()
        return img

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:200]!r})"


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            *, timeout: float = 120) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def get(port: int, path: str, **kw) -> Reply:
    return request(port, "GET", path, **kw)


def multipart(fields: dict[str, str] | None = None, files: dict[str, tuple[str, bytes, str]] | None = None,
              *, boundary: str | None = None) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data form."""
    boundary = boundary or uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in (files or {}).items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n").encode()
        parts.append(head + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_form(port: int, path: str, fields=None, files=None, **kw) -> Reply:
    body, ctype = multipart(fields, files)
    return request(port, "POST", path, body, {"Content-Type": ctype}, **kw)


def post_image(port: int, run: str, data: bytes, *, kind: str | None = None, ctype: str = "image/png") -> Reply:
    fields = {"kind": kind} if kind else None
    return post_form(port, f"/api/runs/{run}/predict", fields, {"image": ("x.png", data, ctype)})


def predict_sample(port: int, run: str, index: int | str) -> Reply:
    return post_form(port, f"/api/runs/{run}/predict", {"sample": str(index)})


def png_bytes(img: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()
