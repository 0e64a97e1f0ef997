"""The web server: Starlette routes over :mod:`cnnlab.serve.inference`.

Routes (docs/serve.md has the fields):

    GET  /                                         the page (static/index.html)
    GET  /static/{app.js,style.css}                its script and style (nothing else is served)
    GET  /api/health                               liveness and load
    GET  /api/colormaps                            the colour tables the page paints maps with
    GET  /api/runs                                 the run folders (and models with --weights) served
    GET  /api/runs/{run}                           model, dataset, classes, layer table
    GET  /api/runs/{run}/filters.png               first convolution's kernels
    POST /api/runs/{run}/predict                   multipart ``image`` (``kind=drawing`` for a
                                                   canvas) or ``sample=N|random``: top-k and maps
    GET  /api/runs/{run}/inputs/{key}/input.png    the input as the network sees it
    GET  /api/runs/{run}/inputs/{key}/layers/{i}.png   layer i's maps as one atlas
    GET  /api/runs/{run}/inputs/{key}/unit?layer&channel&row&col   receptive field, dot product
    GET  /api/runs/{run}/inputs/{key}/gradcam?target=N             Grad-CAM (computed once)
    GET  /api/runs/{run}/inputs/{key}/gradcam/{N}.png
    POST /api/runs/{run}/inputs/{key}/occlusion?target=N           start occlusion
    GET  /api/runs/{run}/inputs/{key}/occlusion/{N}                its progress
    GET  /api/runs/{run}/inputs/{key}/occlusion/{N}.png

Nothing in a request becomes a file path: runs are looked up by id in a table made at start,
inputs by a random key in the cache, and the three static files are read into memory at start.
Every error is JSON ``{"error": "<one line>"}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cnnlab.errors import CnnlabError
from cnnlab.serve.inference import Analysis, ImageTooLarge, RunUnavailable, ServedRun, ServedWeights, unique_ids
from cnnlab.serve.limits import Gate, HTTPProblem, Limits, protocol_with, read_body
from cnnlab.serve.png import AtlasLayout, Scale, atlas_layout, atlas_png, colormap_tables, filters_png, heat_png, image_png, scale_for

log = logging.getLogger("cnnlab.serve")

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
# The page loads nothing from elsewhere; say so to the browser too.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
TOP_K = 5
MAX_FORM_FIELDS = 8


@dataclass
class Job:
    """An occlusion computation in the background."""

    target: int
    state: str = "running"  # running, done, error
    done: int = 0
    total: int = 0
    error: str | None = None
    result: dict | None = None
    png: bytes | None = None
    scale: Scale | None = None


@dataclass
class Entry:
    """One analysed input: kept in the cache, addressed by a random key."""

    run: ServedRun
    analysis: Analysis
    scales: dict[int, Scale]
    layouts: dict[int, AtlasLayout]
    pngs: dict[str, bytes] = field(default_factory=dict)
    gradcams: dict[int, dict] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return self.analysis.nbytes + sum(len(b) for b in self.pngs.values())


class Cache:
    """Least recently used entries, within a byte budget and an item count."""

    def __init__(self, max_bytes: int, max_items: int) -> None:
        self.max_bytes, self.max_items = max_bytes, max_items
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, entry: Entry) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = entry
            self._trim()
        return key

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
            return entry

    def _trim(self) -> None:
        while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
            self._items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
            await send(message)

        await self.app(scope, receive, with_headers)


def _static_files() -> dict[str, bytes]:
    folder = resources.files("cnnlab.serve") / "static"
    return {route: (folder / name).read_bytes() for route, (name, _) in STATIC.items()}


def _int(value: str | None, what: str, *, default: int | None = None) -> int:
    if value is None or value == "":
        if default is None:
            raise HTTPProblem(400, f"missing {what}: expected an integer")
        return default
    try:
        return int(value)
    except ValueError:
        raise HTTPProblem(400, f"bad {what} {value[:40]!r}: expected an integer") from None


def create_app(run_paths: list[Path], *, models: Sequence[ServedWeights] = (), limits: Limits = Limits(),
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The Starlette app serving ``run_paths`` and ``models`` (registered models with weights,
    no run folder; their ids are theirs, the runs' are made unique against them).
    ``allowed_hosts``: Host header values accepted (None: loopback names only, which stops
    DNS-rebinding pages from reaching a local server)."""
    runs: dict[str, ServedRun] = {m.id: m for m in models}
    if len(runs) != len(models):
        raise CnnlabError(f"two served models share an id: {', '.join(m.id for m in models)}")
    runs.update({rid: ServedRun(rid, path) for rid, path in zip(unique_ids(run_paths, taken=tuple(runs)), run_paths)})
    cache = Cache(limits.cache_bytes, limits.cache_items)
    work = Gate(limits.running, limits.waiting, "inference")
    decode = Gate(limits.decoding, limits.waiting, "decoding")
    static = _static_files()
    tables: dict[str, str] = {}

    def served(request: Request) -> ServedRun:
        run = runs.get(request.path_params["run"])
        if run is None:
            raise HTTPProblem(404, f"no run {request.path_params['run'][:80]!r}; GET /api/runs lists them")
        return run

    def entry_of(request: Request) -> Entry:
        run = served(request)
        entry = cache.get(request.path_params["key"])
        if entry is None or entry.run is not run:
            raise HTTPProblem(404, "unknown or expired input; predict again")
        return entry

    async def compute(gate: Gate, func, *args):
        try:
            return await gate.run(func, *args)
        except HTTPProblem:
            raise
        except ImageTooLarge as e:
            raise HTTPProblem(413, str(e).splitlines()[0]) from None
        except RunUnavailable as e:
            raise HTTPProblem(500, str(e).splitlines()[0]) from None
        except CnnlabError as e:
            raise HTTPProblem(400, str(e).splitlines()[0]) from None

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    # --- pages and health ----------------------------------------------------------------
    async def page(request: Request) -> Response:
        route = request.url.path
        return Response(static[route], media_type=STATIC[route][1], headers={"Cache-Control": "no-cache"})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "runs": len(runs), "jobs": work.admitted, "peak_jobs": work.peak,
                             "limits": {"running": limits.running, "waiting": limits.waiting,
                                        "max_upload_bytes": limits.max_upload_bytes, "max_pixels": limits.max_pixels},
                             "cache": {"inputs": len(cache), "bytes": cache.nbytes, "max_bytes": limits.cache_bytes}})

    async def colormaps(request: Request) -> Response:
        if not tables:
            tables.update(colormap_tables())
        return JSONResponse(tables, headers={"Cache-Control": "max-age=86400"})

    async def list_runs(request: Request) -> Response:
        return JSONResponse({"runs": [r.brief() for r in runs.values()]})

    async def run_info(request: Request) -> Response:
        run = served(request)
        return JSONResponse(await compute(work, run.info))

    async def filters(request: Request) -> Response:
        run = served(request)
        weight = await compute(work, run.first_layer_weights)
        data, _ = filters_png(weight)
        return png(data)

    # --- predict -------------------------------------------------------------------------
    async def read_form(request: Request) -> dict:
        declared = request.headers.get("content-length")
        body = await read_body(request.stream(), limit=limits.max_upload_bytes, timeout_s=limits.body_timeout_s,
                               declared=int(declared) if declared and declared.isdigit() else None)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields: dict = {k: v for k, v in request.query_params.items() if k in ("sample", "kind")}
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return {"type": "http.request", "body": b"", "more_body": False}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                form = await Request(request.scope, replay).form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=64 * 1024)
            except HTTPException as e:
                raise HTTPProblem(400, f"malformed form: {e.detail}") from None
            except Exception as e:  # the multipart parser's own errors: a broken body is the client's
                raise HTTPProblem(400, f"malformed form: {type(e).__name__}") from None
            for key, value in form.multi_items():
                if key == "image" and hasattr(value, "read"):
                    fields["image"] = await value.read()
                elif key in ("sample", "kind") and isinstance(value, str):
                    fields[key] = value
                elif key == "image":
                    raise HTTPProblem(400, "field 'image' must be a file part (filename=...)")
            await form.close()
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            fields["image"] = body
        elif body or "sample" not in fields:
            raise HTTPProblem(415, f"unsupported content type {ctype[:60]!r}: send multipart/form-data with a file "
                                   "field 'image', or sample=N")
        return fields

    async def predict(request: Request) -> Response:
        run = served(request)
        fields = await read_form(request)
        if "image" in fields:
            kind = fields.get("kind", "upload")
            if kind not in ("upload", "drawing"):
                raise HTTPProblem(400, f"bad kind {kind[:20]!r}: expected upload or drawing")
            reader = run.drawing if kind == "drawing" else run.upload
            image, source = await compute(decode, lambda: reader(fields["image"], max_pixels=limits.max_pixels))
        elif "sample" in fields:
            text = fields["sample"]
            if text == "random":
                test = await compute(decode, run.test_set)
                index = random.randrange(len(test))
            else:
                index = _int(text, "sample")
            image, source = await compute(decode, run.sample, index)
        else:
            raise HTTPProblem(400, "nothing to predict: send a file field 'image' or sample=N")
        analysis: Analysis = await compute(work, run.analyse, image, source)
        return JSONResponse(await asyncio.to_thread(describe, run, analysis))

    def describe(run: ServedRun, analysis: Analysis) -> dict:
        scales, layouts = {}, {}
        for index, maps in analysis.maps.items():
            scales[index] = scale_for(maps)
            _, h, w = maps.shape
            layouts[index] = atlas_layout(maps.shape[0], h, w, max_pixels=limits.atlas_pixels)
        key = cache.put(Entry(run, analysis, scales, layouts))
        base = f"/api/runs/{run.id}/inputs/{key}"
        classes = run.data_info["classes"]
        probs = analysis.probs
        top = probs.topk(min(TOP_K, len(probs)))
        return {
            "run": run.id, "key": key, "source": analysis.source,
            "input": {"url": f"{base}/input.png", "shape": list(analysis.image.shape)},
            "top": [{"index": int(i), "class": classes[int(i)], "p": float(p)} for p, i in zip(top.values, top.indices)],
            "probabilities": [round(float(p), 6) for p in probs],
            "layers": [{"index": i, "url": f"{base}/layers/{i}.png", "scale": scales[i].to_dict(), "atlas": layouts[i].to_dict()}
                       for i in sorted(analysis.maps)],
            "unit_url": f"{base}/unit", "gradcam_url": f"{base}/gradcam", "occlusion_url": f"{base}/occlusion",
        }

    # --- images of one input ---------------------------------------------------------------
    async def input_png(request: Request) -> Response:
        entry = entry_of(request)
        if "input" not in entry.pngs:
            entry.pngs["input"] = image_png(entry.analysis.image)
        return png(entry.pngs["input"])

    async def layer_png(request: Request) -> Response:
        entry = entry_of(request)
        index = request.path_params["index"]
        if index not in entry.analysis.maps:
            raise HTTPProblem(404, f"layer {index} has no maps for this input")
        name = f"layer{index}"
        if name not in entry.pngs:
            entry.pngs[name] = await asyncio.to_thread(atlas_png, entry.analysis.maps[index], entry.scales[index], entry.layouts[index])
        return png(entry.pngs[name])

    async def unit(request: Request) -> Response:
        entry = entry_of(request)
        q = request.query_params
        args = (_int(q.get("layer"), "layer"), _int(q.get("channel"), "channel", default=0),
                _int(q.get("row"), "row", default=0), _int(q.get("col"), "col", default=0))
        return JSONResponse(await compute(work, entry.run.unit, entry.analysis, *args))

    def target_of(request: Request, entry: Entry) -> int:
        classes = entry.run.data_info["classes"]
        raw = request.path_params.get("target", request.query_params.get("target"))
        target = int(entry.analysis.probs.argmax()) if raw in (None, "", "top") else _int(str(raw), "target")
        if not 0 <= target < len(classes):
            raise HTTPProblem(400, f"class {target} out of range: the model has {len(classes)} classes (0..{len(classes) - 1})")
        return target

    async def gradcam(request: Request) -> Response:
        entry = entry_of(request)
        target = target_of(request, entry)
        if target not in entry.gradcams:
            result = await compute(work, entry.run.attribution, entry.analysis, "gradcam", target)
            data, scale = heat_png(result.pop("heatmap"))
            entry.pngs[f"gradcam{target}"] = data
            entry.gradcams[target] = {**result, "scale": scale.to_dict(),
                                      "url": f"/api/runs/{entry.run.id}/inputs/{request.path_params['key']}/gradcam/{target}.png"}
        return JSONResponse(entry.gradcams[target])

    async def gradcam_png(request: Request) -> Response:
        entry = entry_of(request)
        data = entry.pngs.get(f"gradcam{target_of(request, entry)}")
        if data is None:
            raise HTTPProblem(404, "no Grad-CAM for this class yet: GET .../gradcam?target=N first")
        return png(data)

    def job_json(request: Request, entry: Entry, job: Job) -> dict:
        base = f"/api/runs/{entry.run.id}/inputs/{request.path_params['key']}/occlusion/{job.target}"
        out = {"target": job.target, "state": job.state, "done": job.done, "total": job.total, "error": job.error,
               "status_url": base}
        if job.state == "done":
            out.update(job.result or {}, url=f"{base}.png", scale=job.scale.to_dict() if job.scale else None)
        return out

    async def occlusion_start(request: Request) -> Response:
        entry = entry_of(request)
        target = target_of(request, entry)
        job = entry.jobs.get(target)
        if job is None or job.state == "error":
            job = entry.jobs[target] = Job(target)

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            def occlude() -> dict:
                return entry.run.occlusion(entry.analysis, target, progress)

            async def background() -> None:
                try:
                    result = await work.run(occlude)
                    job.png, job.scale = heat_png(result.pop("heatmap"))
                    job.result, job.state = result, "done"
                except HTTPProblem as e:
                    job.state, job.error = "error", e.reason
                except Exception as e:  # reported to the page, never raised into the server
                    log.exception("occlusion failed")
                    job.state, job.error = "error", (str(e).splitlines() or [type(e).__name__])[0]

            job.task = asyncio.get_running_loop().create_task(background())  # type: ignore[attr-defined]
        return JSONResponse(job_json(request, entry, job), status_code=202 if job.state == "running" else 200)

    async def occlusion_status(request: Request) -> Response:
        entry = entry_of(request)
        job = entry.jobs.get(target_of(request, entry))
        if job is None:
            raise HTTPProblem(404, "no occlusion started for this class: POST .../occlusion?target=N")
        return JSONResponse(job_json(request, entry, job))

    async def occlusion_png(request: Request) -> Response:
        entry = entry_of(request)
        job = entry.jobs.get(target_of(request, entry))
        if job is None or job.png is None:
            raise HTTPProblem(404, "occlusion not finished for this class")
        return png(job.png)

    # --- errors ----------------------------------------------------------------------------
    async def problem(request: Request, exc: HTTPProblem) -> Response:
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        reason = {404: f"not found: {request.url.path[:100]}", 405: f"method {request.method} not allowed here"}.get(
            exc.status_code, str(exc.detail))
        return JSONResponse({"error": reason}, status_code=exc.status_code)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("error answering %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    routes = [
        Route("/", page), Route("/static/app.js", page), Route("/static/style.css", page),
        Route("/api/health", health), Route("/api/colormaps", colormaps),
        Route("/api/runs", list_runs), Route("/api/runs/{run}", run_info),
        Route("/api/runs/{run}/filters.png", filters),
        Route("/api/runs/{run}/predict", predict, methods=["POST"]),
        Route("/api/runs/{run}/inputs/{key}/input.png", input_png),
        Route("/api/runs/{run}/inputs/{key}/layers/{index:int}.png", layer_png),
        Route("/api/runs/{run}/inputs/{key}/unit", unit),
        Route("/api/runs/{run}/inputs/{key}/gradcam", gradcam),
        Route("/api/runs/{run}/inputs/{key}/gradcam/{target:int}.png", gradcam_png),
        Route("/api/runs/{run}/inputs/{key}/occlusion", occlusion_start, methods=["POST"]),
        Route("/api/runs/{run}/inputs/{key}/occlusion/{target:int}.png", occlusion_png),
        Route("/api/runs/{run}/inputs/{key}/occlusion/{target:int}", occlusion_status),
    ]
    hosts = allowed_hosts if allowed_hosts is not None else ["127.0.0.1", "localhost", "::1", "[::1]"]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False),
                    Middleware(SecurityHeaders)],
        exception_handlers={HTTPProblem: problem, HTTPException: http_error, Exception: crash},
    )
    app.state.runs = runs
    app.state.limits = limits
    app.state.cache = cache
    app.state.work = work
    return app


# --- running it --------------------------------------------------------------------------------
def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port) (port 0: any free one); failure is one CnnlabError line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port or --host") from None
    sock.listen(128)
    return sock


def make_server(app: Starlette) -> uvicorn.Server:
    """uvicorn with the connection limits the server relies on: request heads of at most 64 kB
    that arrive within the head timeout, idle keep-alive connections closed after 5 s, at
    most 256 connections at once (503 beyond)."""
    limits: Limits = app.state.limits
    config = uvicorn.Config(app, http=protocol_with(limits.head_timeout_s), log_level="warning", timeout_keep_alive=5,
                            limit_concurrency=256, h11_max_incomplete_event_size=64 * 1024, access_log=False)
    return uvicorn.Server(config)
