"""The web pages people use: ``/`` (documents: list, open, create), ``/d/{doc}`` (the
collaborative editor) and ``/static/...`` (the esbuild bundle from client_js/ and the CSS).

The pages are small HTML templates from ``collab/static/pages``; the editor itself runs in the
browser (``collab/static/build/collab-editor.js``, built by ``make js``).
"""

from __future__ import annotations

import html
import logging
import secrets
from pathlib import Path
from string import Template
from urllib.parse import quote, urlencode

from aiohttp import web

from collab.protocol.doc_ids import validate_doc_id
from collab.protocol.tokens import TokenError
from collab.protocol.wire import ProtocolError
from collab.server.auth import is_admin, request_token
from collab.server.keys import STORE, VERIFIER
from collab.store.base import StoreError

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGES_DIR = STATIC_DIR / "pages"
BUILD_DIR = STATIC_DIR / "build"
EDITOR_BUNDLE = "build/collab-editor.js"
PAGE_SIZE = 50
TRANSPORTS = ("auto", "websocket", "polling")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _template(name: str) -> Template:
    return Template((PAGES_DIR / name).read_text(encoding="utf-8"))


def _page(name: str, status: int = 200, **values: str) -> web.Response:
    body = _template(name).substitute(values)
    return web.Response(
        text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def _error_page(status: int, title: str, message: str) -> web.Response:
    return _page(
        "error.html",
        status=status,
        title=html.escape(title),
        message=html.escape(message),
        css=_static_url("collab.css"),
    )


def _static_url(name: str) -> str:
    """``/static/<name>?v=<mtime-size>`` so browsers may cache it for good."""
    try:
        stat = (STATIC_DIR / name).stat()
    except OSError:
        return f"/static/{name}"
    return f"/static/{name}?v={stat.st_mtime_ns:x}-{stat.st_size:x}"


def _doc_url(doc_id: str, **query: str) -> str:
    extra = {k: v for k, v in query.items() if v}
    return "/d/" + quote(doc_id, safe="/") + (f"?{urlencode(extra)}" if extra else "")


# --- / -------------------------------------------------------------------------------------


def _listing_scope(request: web.Request) -> str | None:
    """The id prefix this visitor may list, or None when listing is not allowed.

    Auth off (or the admin key as Bearer): everything. Otherwise a ``?token=`` whose document
    claim is ``*`` or ``prefix/*`` lists that prefix, like the HTTP API does."""
    if is_admin(request):
        return ""
    verifier = request.app[VERIFIER]
    token = request_token(request)
    if verifier is None or not token:
        return None
    try:
        grant = verifier.verify(token)
    except TokenError:
        return None
    if grant.doc == "*":
        return ""
    if grant.doc.endswith("/*"):
        return grant.doc[:-1]
    return None


def _format_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


async def index(request: web.Request) -> web.Response:
    """Document list with open/create: ``?doc=<id>`` opens (or creates) one, ``?new`` a new one."""
    token = request.query.get("token", "")
    if "new" in request.query:
        raise web.HTTPSeeOther(_doc_url(f"doc-{secrets.token_hex(4)}", token=token))
    wanted = request.query.get("doc")
    error = ""
    if wanted is not None:
        wanted = wanted.strip().strip("/")
        try:
            validate_doc_id(wanted)
        except ProtocolError as exc:
            error = f"“{wanted}” is not a valid document id: {exc.reason}."
        else:
            raise web.HTTPSeeOther(_doc_url(wanted, token=token))

    prefix = request.query.get("prefix", "")
    after = request.query.get("after", "")
    scope = _listing_scope(request)
    rows, more = "", ""
    if scope is None:
        listing = (
            '<p class="muted">This server requires access tokens, so documents are not '
            "listed. Open one by its id.</p>"
        )
    else:
        effective = prefix if prefix.startswith(scope) else scope
        try:
            docs = await request.app[STORE].list_documents(
                prefix=effective, after=after, limit=PAGE_SIZE + 1
            )
        except StoreError as exc:
            log.error("listing documents failed: %s", exc)
            return _error_page(503, "Storage unavailable", "The documents cannot be listed now.")
        for info in docs[:PAGE_SIZE]:
            rows += (
                f'<tr><td><a href="{html.escape(_doc_url(info.doc_id, token=token))}">'
                f"{html.escape(info.doc_id)}</a></td>"
                f'<td class="num">{_format_size(info.stored_bytes)}</td>'
                f'<td><time data-ms="{info.updated_at}"></time></td></tr>'
            )
        if len(docs) > PAGE_SIZE:
            next_query = urlencode(
                {k: v for k, v in {"prefix": prefix, "token": token}.items() if v}
                | {"after": docs[PAGE_SIZE - 1].doc_id}
            )
            more = f'<p><a href="/?{html.escape(next_query)}">Next page →</a></p>'
        if rows:
            listing = (
                '<table class="docs"><thead><tr><th>Document</th><th class="num">Stored</th>'
                f"<th>Last change</th></tr></thead><tbody>{rows}</tbody></table>{more}"
            )
        elif prefix or after:
            listing = '<p class="muted">No documents match.</p>'
        else:
            listing = '<p class="muted">No documents yet: create the first one above.</p>'
    return _page(
        "index.html",
        status=400 if error else 200,
        css=_static_url("collab.css"),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        wanted=html.escape(wanted or ""),
        prefix=html.escape(prefix),
        token=html.escape(token),
        token_field=(
            f'<input type="hidden" name="token" value="{html.escape(token)}">' if token else ""
        ),
        listing=listing,
    )


# --- /d/{doc} ------------------------------------------------------------------------------


async def editor(request: web.Request) -> web.Response:
    doc_id = request.match_info["doc"]
    try:
        validate_doc_id(doc_id)
    except ProtocolError as exc:
        return _error_page(400, "Not a valid document id", f"{doc_id!r}: {exc.reason}.")
    transport = request.query.get("transport", "auto")
    if transport not in TRANSPORTS:
        return _error_page(
            400, "Unknown transport", "transport must be auto, websocket or polling."
        )
    if not (STATIC_DIR / EDITOR_BUNDLE).is_file():
        return _error_page(
            503,
            "Editor not built",
            "The editor's JavaScript bundle is missing: run `make js` (npm ci + esbuild).",
        )
    return _page(
        "editor.html",
        css=_static_url("collab.css"),
        bundle=_static_url(EDITOR_BUNDLE),
        doc=html.escape(doc_id),
        token=html.escape(request.query.get("token", "")),
        transport=html.escape(transport),
        list_url=html.escape(
            "/"
            + (
                f"?{urlencode({'token': request.query['token']})}"
                if "token" in request.query
                else ""
            )
        ),
    )


# --- /static -------------------------------------------------------------------------------

STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".txt": "text/plain",
}


async def static_file(request: web.Request) -> web.StreamResponse:
    """The bundle (``build/``) and top-level assets; never the page templates. Precompressed
    ``.br``/``.gz`` siblings are sent to browsers that accept them."""
    name = request.match_info["path"]
    path = (STATIC_DIR / name).resolve()
    allowed = path.parent == STATIC_DIR or path.parent == BUILD_DIR
    if not allowed or path.suffix not in STATIC_TYPES or not path.is_file():
        raise web.HTTPNotFound(text="not found")
    response = web.FileResponse(path)
    response.content_type = STATIC_TYPES[path.suffix]
    response.headers["X-Content-Type-Options"] = "nosniff"
    if "v" in request.query:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        response.headers["Cache-Control"] = "no-cache"
    if path.parent == BUILD_DIR:
        # the embed bundle may be loaded by other sites (a module script needs CORS)
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/d/{doc:.+}", editor)
    app.router.add_get("/static/{path:.+}", static_file)
