"""The console's Starlette app: sessions, CSRF, templates, static assets and the pages' routes.

Sign-in takes the admin key once and gives a session cookie: signed (itsdangerous, through Starlette's
SessionMiddleware), HttpOnly, SameSite=Strict, expiring after `session_seconds`. Every form post carries a
CSRF token (asgi-csrf, double-submit: a signed cookie and a form field or the `x-csrftoken` header htmx
sends); a post without it is refused with 403 before any page code runs. Both secrets are derived from the
admin key, so rotating the key signs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from asgi_csrf import asgi_csrf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from api.console.api_client import ConsoleApi

HERE = Path(__file__).parent
SESSION_COOKIE = "footfall_session"
# Front-end packages the console serves (web/package.json), each at its own path: only their dist folders.
ASSET_DIRS = {"pico": "@picocss/pico/css", "htmx": "htmx.org/dist", "chartjs": "chart.js/dist"}


@dataclass
class ConsoleConfig:
    """FOOTFALL_CONSOLE_SESSION_SECONDS: how long a sign-in lasts. FOOTFALL_COLLECTOR_PUBLIC_URL: the collector's
    address as sites reach it (the Sources page's snippet)."""

    session_seconds: int = int(os.environ.get("FOOTFALL_CONSOLE_SESSION_SECONDS", 8 * 3600))
    https_only: bool = os.environ.get("FOOTFALL_CONSOLE_HTTPS_ONLY", "") in ("1", "true")
    collector_url: str | None = os.environ.get("FOOTFALL_COLLECTOR_PUBLIC_URL")


def derived_secret(admin_key: str, purpose: str) -> str:
    return hmac.new(admin_key.encode(), f"footfall-console:{purpose}".encode(), hashlib.sha256).hexdigest()


class Console:
    """What the pages share: the API client, templates, the key check and the configuration."""

    def __init__(self, admin_key: str, config: ConsoleConfig, settings: Any, sources: list[tuple[str, str]]):
        self._key_digest = hashlib.sha256(admin_key.encode()).digest()
        self._admin_key = admin_key
        self.config = config
        self.settings = settings
        self.sources = sources  # (source id, write key) pairs the collector accepts
        self.api: ConsoleApi | None = None
        self.router: Any = None
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.globals.update(quote=quote)

    def path(self, route: str, /, **params: Any) -> str:
        """A console route's path (the console is mounted at `/`, so its paths are the site's)."""
        return str(self.router.url_path_for(route, **params))

    def bind(self, app: Any) -> None:
        self.api = ConsoleApi(app, self._admin_key)

    def key_matches(self, supplied: str) -> bool:
        """Constant time over SHA-256 digests (the length does not leak either)."""
        return hmac.compare_digest(hashlib.sha256(supplied.encode()).digest(), self._key_digest)

    async def render_page(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        """A full page: the navigation lists the admin pages whose APIs answer."""
        from api.console.pages import admin_nav

        context["admin_nav"] = await admin_nav(request) if signed_in(request) else []
        return self.render(request, template, status_code, **context)

    async def confirm_then_delete(
        self,
        request: Request,
        *,
        what: str,
        section: str,
        consequences: list[str],
        back: str,
        api_path: str,
        done: str,
        api_params: dict[str, str] | None = None,
    ) -> Response:
        """GET: a Yes/No page that says what deleting `what` does; POST (a form, so CSRF-checked): the API's
        DELETE, its answer flashed, then `done` (or `back` when refused)."""
        if request.method == "GET":
            return await self.render_page(
                request,
                "confirm.html",
                section=section,
                heading=f"Delete {what}?",
                yes="Yes, delete",
                lines=consequences,
                action=request.url.path,
                carried=[],
                back=back,
            )
        answer = await self.api.call("DELETE", api_path, params=api_params)
        if not answer.ok:
            flash(request, f"Delete refused: {answer.message}", "error")
            return RedirectResponse(back, status_code=303)
        flash(request, f"{what[:1].upper()}{what[1:]} deleted.")
        return RedirectResponse(done, status_code=303)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        """A page or a fragment; full pages go through render_page (for the navigation)."""
        flashes = request.session.pop("flash", []) if "session" in request.scope else []
        context.update(
            request=request,
            csrftoken=request.scope["csrftoken"]() if "csrftoken" in request.scope else "",
            signed_in=signed_in(request),
            flashes=flashes,
        )
        context.setdefault("admin_nav", [])
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)


def signed_in(request: Request) -> bool:
    return "session" in request.scope and request.session.get("signed_in") is True


def flash(request: Request, text: str, kind: str = "info") -> None:
    request.session["flash"] = [*request.session.get("flash", []), (kind, text)]


def safe_next(target: str | None) -> str:
    """Only a path on this site after sign-in (no open redirect to another host)."""
    if not target:
        return "/people"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/people"
    return target


Handler = Callable[[Request], Awaitable[Response]]


def login_required(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        if not signed_in(request):
            if request.headers.get("hx-request"):
                return Response(status_code=401, headers={"HX-Redirect": "/login"})
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def console(request: Request) -> Console:
    return request.app.state.console


async def login_page(request: Request) -> Response:
    if signed_in(request):
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request)


def _login_form(request: Request, error: str | None = None, next_url: str | None = None, status_code: int = 200) -> Response:
    c = console(request)
    hint = str(Path(c.settings.data_dir) / "admin.key") if c.settings is not None else "admin.key"
    return c.render(
        request,
        "login.html",
        status_code=status_code,
        error=error,
        next_url=next_url or request.query_params.get("next", ""),
        key_hint=hint,
    )


async def login(request: Request) -> Response:
    form = await request.form()
    next_url = safe_next(str(form.get("next") or ""))
    if not console(request).key_matches(str(form.get("admin_key") or "")):
        return _login_form(request, "That is not the admin key.", next_url, status_code=403)
    request.session.clear()
    request.session["signed_in"] = True
    return RedirectResponse(next_url, status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def home(request: Request) -> Response:
    return RedirectResponse("/people" if signed_in(request) else "/login", status_code=303)


async def not_found(request: Request, exc: Exception) -> Response:
    """Unknown paths: the API's JSON error under /api/ (the console is mounted after it), a page elsewhere."""
    if request.url.path.startswith("/api/"):
        from fastapi.responses import ORJSONResponse

        from api.errors import FieldError, error_body

        return ORJSONResponse(error_body(404, [FieldError("path", "exists", "Not Found")], "Not Found"), 404)
    if not signed_in(request):
        return RedirectResponse("/login", status_code=303)
    return await console(request).render_page(
        request, "message.html", status_code=404, heading="Not found", lines=["There is no such page."], back="/people"
    )


class MultipartNeedsCsrfHeader:
    """Multipart posts (the CSV upload) must carry the CSRF token in the `x-csrftoken` header, as htmx sends it.

    asgi-csrf reads a token from a multipart body with python-multipart's old FormParser signature, which
    python-multipart 0.0.26 removed (simonw/asgi-csrf#38; the release fixes CVE-2026-40347, so no pin back).
    It checks the header first; this guard answers 403 to a multipart post whose header is not the signed
    cookie's token, so asgi-csrf never reaches its broken body parser."""

    def __init__(self, app: Any, signing_secret: str):
        from itsdangerous.url_safe import URLSafeSerializer

        self.app = app
        self.signer = URLSafeSerializer(signing_secret)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            headers = dict(scope.get("headers") or [])
            multipart = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower() == b"multipart/form-data"
            if multipart and not self._header_matches_cookie(headers):
                response = Response("multipart posts need the x-csrftoken header", status_code=403, media_type="text/plain")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _header_matches_cookie(self, headers: dict[bytes, bytes]) -> bool:
        from http.cookies import CookieError, SimpleCookie

        from itsdangerous import BadSignature

        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except CookieError:  # an unreadable Cookie header is no token
            return False
        token = cookie["csrftoken"].value if "csrftoken" in cookie else ""
        supplied = headers.get(b"x-csrftoken", b"").decode("latin-1")
        if not token or not hmac.compare_digest(supplied, token):
            return False
        try:
            self.signer.loads(token, "csrftoken")
        except BadSignature:
            return False
        return True


def create_console_app(
    admin_key: str, settings: Any = None, config: ConsoleConfig | None = None, sources: list[tuple[str, str]] | None = None
) -> tuple[Starlette, Console]:
    """The console as an ASGI app (to mount at `/`), wrapped in CSRF protection, and its shared state."""
    from api.console.pages import page_routes

    config = config or ConsoleConfig()
    state = Console(admin_key, config, settings, sources or [])
    assets_root = Path(settings.web_assets_dir) if settings is not None else HERE.parents[2] / "web" / "node_modules"
    routes = [
        Route("/", home, name="home"),
        Route("/login", login_page, methods=["GET"], name="login"),
        Route("/login", login, methods=["POST"], name="login_post"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        *[
            Mount(f"/assets/{name}", StaticFiles(directory=assets_root / path, check_dir=False), name=name)
            for name, path in ASSET_DIRS.items()
        ],
        *page_routes(),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=derived_secret(admin_key, "session"),
            session_cookie=SESSION_COOKIE,
            max_age=config.session_seconds,
            same_site="strict",
            https_only=config.https_only,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found})
    app.state.console = state
    # Links name the console's own routes (it is mounted at `/`, so its paths are the site's paths).
    state.router = app.router
    state.templates.env.globals["url_for"] = state.path
    protected = asgi_csrf(
        app,
        signing_secret=derived_secret(admin_key, "csrf"),
        always_protect={"/login", "/logout"},
        cookie_samesite="Strict",
        cookie_secure=config.https_only,
    )
    return MultipartNeedsCsrfHeader(protected, derived_secret(admin_key, "csrf")), state


def mount_console(
    app: Any, admin_key: str, settings: Any = None, config: ConsoleConfig | None = None, sources: list[tuple[str, str]] | None = None
) -> None:
    """Serve the console at `/` of `app` (after its own routes, so /api/v1 keeps answering first)."""
    console_app, state = create_console_app(admin_key, settings, config, sources)
    state.bind(app)
    app.mount("/", console_app, name="console")
