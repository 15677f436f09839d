"""A page that shows the served model: which models and versions are served, and a grid of samples
drawn live by the chosen one, with seed, count, label (conditional models) and version to choose.

    GET /samples?model=&version=&seed=&count=&label=                 the HTML page (a plain GET form)
    GET /v1/models/<m>[/versions/<v>]/samples.png?seed=&count=&label=  the grid as PNG, for scripts and curl

The PNG goes through the same core, batcher and metrics as any prediction. No JS framework: the
form reloads the page; a few lines of JS say what was drawn and its size in pixels, or that it could not
be shown (tests read the size from the status line's data-width).
"""

from __future__ import annotations

import asyncio
import html
import re
from urllib.parse import quote, urlencode

import numpy as np
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from common.grid import encode_png, tile, to_uint8
from common.signature import random_inputs
from serving.engine.core import RequestError
from serving.transports.rest_common import RestContext, answer, endpoint, error
from serving.protocols.open_inference.targets import Target, parse_target

MAX_COUNT, MAX_SEED = 64, 2**32 - 1
# Grids drawn at once per server process: the page is for people, and must not fill the prediction
# queue that API clients share (more at once answer 429 with Retry-After, as the queue does).
MAX_DRAWING = 2
_drawing = [0]  # grids being drawn now, on this process's event loop


def _int_param(request: Request, name: str, default, low: int, high: int):
    text = request.query_params.get(name, "")
    if text == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", text) or not low <= int(text) <= high:
        raise RequestError("INVALID_ARGUMENT", f"'{name}' must be a whole number from {low} to {high}, got "
                           f"{text[:24]!r}")
    return int(text)


def sample_request(request: Request, info) -> tuple[int, int, int | None]:
    """(seed, count, label) from the query, checked: label only for conditional models."""
    seed = _int_param(request, "seed", 0, 0, MAX_SEED)
    count = _int_param(request, "count", 16, 1, MAX_COUNT)
    if info.num_classes:
        label = _int_param(request, "label", None, 0, info.num_classes - 1)
    elif request.query_params.get("label", ""):
        raise RequestError("INVALID_ARGUMENT", "this model is unconditional: it takes no label")
    else:
        label = None
    return seed, count, label


def sample_inputs(info, seed: int, count: int, label: int | None) -> dict[str, np.ndarray]:
    """Standard-normal z from `seed`; one label for every sample, or the classes in turn."""
    return random_inputs(count, info.latent_dim, info.num_classes, seed, label)


async def samples_png(ctx: RestContext, request: Request, target: Target) -> Response:
    _, info = ctx.core.info(target.name, target.version, target.label)
    seed, count, label = sample_request(request, info)
    if _drawing[0] >= MAX_DRAWING:
        raise RequestError("RESOURCE_EXHAUSTED", f"the samples page draws {MAX_DRAWING} grids at a time, so that "
                           "API clients keep the prediction queue; try again in a moment")
    _drawing[0] += 1
    try:
        _, images = await ctx.core.predict(target.name, sample_inputs(info, seed, count, label), target.version,
                                           target.label)
        content = await asyncio.to_thread(lambda: encode_png(page_grid(to_uint8(images))))
    finally:
        _drawing[0] -= 1
    return Response(content, media_type="image/png", headers={"cache-control": "no-store"})


async def png_route(ctx: RestContext, request: Request) -> Response:
    async def handler(ctx, request, _):
        return await samples_png(ctx, request, parse_target(request))
    return await answer(ctx, "rest", "samples", handler, request, Target(request.path_params["name"], None, None))


async def page(ctx: RestContext, request: Request) -> Response:
    """The HTML page; a bad choice is shown on the page (400), never a traceback."""
    served = ctx.core.versions()
    if not served:
        return error(503, "no models are served yet")
    name = request.query_params.get("model") or next(iter(served))
    version = request.query_params.get("version", "")
    try:
        if name not in served:
            raise RequestError("NOT_FOUND", f"model '{name[:64]}' is not served; served: {sorted(served)[:10]}")
        target = Target(name, int(version) if version.isdigit() else None, None)
        _, info = ctx.core.info(target.name, target.version)
        seed, count, label = sample_request(request, info)
    except RequestError as err:
        return HTMLResponse(render(served, name, version, None, None, err.message, ctx.core.labels()),
                            status_code=err.http_status)
    return HTMLResponse(render(served, name, version, info, (seed, count, label), labels=ctx.core.labels()))


def png_url(name: str, version: str, seed: int, count: int, label: int | None) -> str:
    path = f"/v1/models/{quote(name, safe='')}" + (f"/versions/{version}" if version else "") + "/samples.png"
    query = {"seed": seed, "count": count, **({"label": label} if label is not None else {})}
    return f"{path}?{urlencode(query)}"


def about(info) -> str:
    """What the model is, from its signature and its model card: shapes, classes, how it was trained."""
    esc = html.escape
    facts = [f"latent size {info.latent_dim}", "images " + "x".join(map(str, info.image_shape))]
    card = info.card or {}
    names = card.get("class_names")
    if info.num_classes:
        facts.append(f"{info.num_classes} classes" + (f" ({', '.join(map(str, names[:20]))})" if names else ""))
    trained = (card.get("training") or {}).get("final_metrics") or {}
    if "global_step" in trained:
        facts.append(f"{trained['global_step']:,} training steps")
    if isinstance(trained.get("fid"), (int, float)):
        facts.append(f"FID {trained['fid']:.3g} at the end of training")
    if card.get("version") is not None:
        facts.append(f"exported as version {card['version']}" + (f" on {card['created_utc'][:10]}" if card.get("created_utc") else ""))
    variants = [v for v, r in (card.get("variants") or {}).items() if isinstance(r, dict) and r.get("published")]
    if variants:
        facts.append("variants " + ", ".join(variants))
    return f'<p id="about">{esc("; ".join(facts))}</p>'


def render(served: dict, name: str, version: str, info, choice, problem: str | None = None,
           labels: dict[str, dict[str, int]] | None = None) -> str:
    """The page's HTML: the served models table, the form, what the model is, and the grid (or the problem)."""
    esc = html.escape
    labels = labels or {}
    named = lambda m: ", ".join(f"{esc(k)}={v}" for k, v in sorted(labels.get(m, {}).items()))  # noqa: E731
    rows = "".join(f"<tr><td>{esc(m)}</td><td>{', '.join(map(str, vs))}</td><td>{named(m)}</td></tr>"
                   for m, vs in served.items())
    models = "".join(f'<option{" selected" if m == name else ""}>{esc(m)}</option>' for m in served)
    by_version = {v: [k for k, lv in labels.get(name, {}).items() if lv == v] for v in served.get(name, [])}
    versions = "".join(f'<option value="{v}"{" selected" if str(v) == version else ""}>{v}'
                       f'{esc(" (" + ", ".join(sorted(by_version[v])) + ")") if by_version[v] else ""}</option>'
                       for v in served.get(name, []))
    seed, count, label = choice or (0, 16, None)
    label_field = ""
    if info is not None and info.num_classes:
        label_field = (f'<label>label <input name="label" type="number" min="0" max="{info.num_classes - 1}" '
                       f'value="{"" if label is None else label}" placeholder="all"></label>')
    body = f'<p class="problem">{esc(problem)}</p>' if problem else (
        about(info) + f'<img id="grid" alt="{count} samples{"" if label is None else f" of class {label}"}" '
        f'src="{esc(png_url(name, version, seed, count, label))}"><p id="status">loading</p>')
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>gan-serve: {esc(name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} img{{image-rendering:pixelated;width:512px}}
td,th{{padding:0 1em;text-align:left}} .problem{{color:#b00}}</style></head>
<body><h1>Served models</h1>
<table><tr><th>model</th><th>versions</th><th>labels</th></tr>{rows}</table>
<form method="get" action="/samples">
<label>model <select name="model">{models}</select></label>
<label>version <select name="version"><option value="">latest</option>{versions}</select></label>
<label>seed <input name="seed" type="number" min="0" value="{seed}"></label>
<label>count <input name="count" type="number" min="1" max="{MAX_COUNT}" value="{count}"></label>
{label_field} <button>draw</button></form>
{body}
<script>
const img = document.getElementById("grid"), status = document.getElementById("status");
const report = () => {{
  if (!img.naturalWidth) {{ status.textContent = "the grid could not be shown: fetch " + img.src + " for the server's answer"; return; }}
  status.dataset.width = img.naturalWidth; status.dataset.height = img.naturalHeight;
  status.textContent = img.alt + ", " + img.naturalWidth + " x " + img.naturalHeight + " pixels";
}};
if (img) img.complete ? report() : (img.onload = img.onerror = report);
</script></body></html>"""


def routes(ctx: RestContext) -> list[Route]:
    return [Route("/samples", endpoint(ctx, page)),
            Route("/v1/models/{name}/samples.png", endpoint(ctx, png_route)),
            Route("/v1/models/{name}/versions/{version}/samples.png", endpoint(ctx, png_route))]


def page_grid(images: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """[N, H, W, C] uint8 images as one grid image, `columns` wide (default: about square), with
    `gap` pixels between images and none around them."""
    return tile(images, padding=gap, columns=columns or int(np.ceil(np.sqrt(len(images)))), border=False)
