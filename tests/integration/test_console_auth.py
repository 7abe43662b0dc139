"""The console's sign-in, session cookie and CSRF protection, against the real app (real Kafka, chdb)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.console.app import SESSION_COOKIE, ConsoleConfig
from tests.console import ADMIN_KEY, console_app, csrf_token

pytestmark = pytest.mark.integration


@pytest.fixture
def client(settings):
    with TestClient(console_app(settings, ConsoleConfig(session_seconds=3600)), base_url="http://127.0.0.1") as c:
        yield c


def sign_in(client: TestClient, key: str = ADMIN_KEY):
    token = csrf_token(client.get("/login").text)
    return client.post("/login", data={"admin_key": key, "csrftoken": token, "next": "/people"}, follow_redirects=False)


def test_pages_need_a_sign_in_and_come_back_after_it(client):
    response = client.get("/people?q=ann", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/people%3Fq%3Dann"
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    page = client.get("/login?next=/people%3Fq%3Dann").text
    assert 'name="next" value="/people?q=ann"' in page
    assert '<label for="admin_key">Admin key</label>' in page


def test_wrong_key_is_refused_and_gets_no_session(client):
    response = sign_in(client, "not-the-key")
    assert response.status_code == 403
    assert "That is not the admin key." in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert client.get("/people", follow_redirects=False).status_code == 303


def test_session_cookie_is_signed_httponly_strict_and_expiring(client):
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/people"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["max-age"].lower() == "max-age=3600"
    assert ADMIN_KEY not in cookie
    assert client.get("/people").status_code == 200


def test_a_forged_or_altered_session_cookie_is_not_a_sign_in(client):
    sign_in(client)
    value = client.cookies.get(SESSION_COOKIE)
    payload, _, signature = value.partition(".")
    client.cookies.set(SESSION_COOKIE, payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:])
    assert client.get("/people", follow_redirects=False).status_code == 303
    client.cookies.set(SESSION_COOKIE, "eyJzaWduZWRfaW4iOiB0cnVlfQ==")  # {"signed_in": true}, unsigned
    assert client.get("/people", follow_redirects=False).status_code == 303


def test_session_expires(settings):
    with TestClient(console_app(settings, ConsoleConfig(session_seconds=5)), base_url="http://127.0.0.1") as client:
        sign_in(client)
        assert client.get("/people", follow_redirects=False).status_code == 200
        time.sleep(6.5)
        assert client.get("/people", follow_redirects=False).status_code == 303


def test_form_posts_without_the_csrf_token_are_refused(client):
    login = client.get("/login")
    token = csrf_token(login.text)
    assert client.post("/login", data={"admin_key": ADMIN_KEY}).status_code == 403
    assert client.post("/login", data={"admin_key": ADMIN_KEY, "csrftoken": "forged"}).status_code == 403
    sign_in(client)
    for path, form in [
        ("/people/new", {"prop.email": "a@b.co"}),
        ("/logout", {}),
        ("/people/bulk", {"scope": "filter", "action": "delete"}),
    ]:
        refused = client.post(path, data=form, follow_redirects=False)
        assert refused.status_code == 403, path
    assert client.get("/people", follow_redirects=False).status_code == 200  # still signed in: the logout was refused
    assert client.post("/logout", data={"csrftoken": token}, follow_redirects=False).status_code == 303
    assert client.get("/people", follow_redirects=False).status_code == 303


def test_every_form_on_the_pages_carries_the_token(client):
    sign_in(client)
    for path in ("/people", "/people/new", "/people/columns"):
        page = client.get(path).text
        assert page.count("<form") >= 1
        posts = page.count('method="post"')
        assert page.count('name="csrftoken"') >= posts, path


def test_assets_are_served_from_the_npm_packages_and_nothing_from_elsewhere(client, settings):
    sign_in(client)
    page = client.get("/people").text
    assert "http://" not in page.split("<main")[0] and "https://" not in page.split("<main")[0]
    modules = Path(settings.web_assets_dir)
    for url, file in [
        ("/assets/htmx/htmx.min.js", "htmx.org/dist/htmx.min.js"),
        ("/assets/pico/pico.min.css", "@picocss/pico/css/pico.min.css"),
        ("/assets/chartjs/chart.umd.min.js", "chart.js/dist/chart.umd.min.js"),
    ]:
        assert url in page or url.endswith("chart.umd.min.js")
        response = client.get(url)
        assert response.status_code == 200 and response.content == (modules / file).read_bytes()
    assert client.get("/assets/htmx/../package.json").status_code == 404


def test_the_api_still_answers_its_own_errors_beside_the_console(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404 and response.json()["errors"][0]["field"] == "path"
    assert client.get("/api/v1/users").status_code == 401


def test_create_user_shows_the_servers_refusal_at_the_field(client):
    """The page's own checks are JavaScript; a post that skips them gets the API's rule back at the same field."""
    sign_in(client)
    token = csrf_token(client.get("/people/new").text)
    response = client.post(
        "/people/new", data={"csrftoken": token, "prop.user_id": "u-1", "prop.email": "not-an-email", "prop.first_name": "Ann"}
    )
    assert response.status_code == 422
    page = response.text
    error = page.split('id="prop.email-error"')[1].split("</small>")[0]
    assert "email" in error.lower() and "hidden" not in error.split(">")[0]
    assert 'value="not-an-email"' in page and 'value="Ann"' in page  # what was typed is kept
    email_input = page.split('id="prop.email"')[1].split(">")[0]
    assert 'aria-invalid="true"' in email_input


def test_create_user_needs_an_identifier_before_anything_is_sent(client):
    sign_in(client)
    token = csrf_token(client.get("/people/new").text)
    response = client.post("/people/new", data={"csrftoken": token, "prop.first_name": "Ann"})
    assert response.status_code == 422
    assert "give at least one identifier" in response.text.split('id="prop.user_id-error"')[1].split("</small>")[0]


def test_uploads_need_the_csrf_header_and_never_fail_with_a_5xx(client):
    sign_in(client)
    token = csrf_token(client.get("/admin/imports").text)
    body = {"file": ("people.csv", b"user_id,email\nu-1,a@example.com\n", "text/csv")}
    refused = client.post("/admin/imports/upload", data={"csrftoken": token}, files=body)
    assert refused.status_code == 403  # the token in the body only: asgi-csrf cannot read multipart bodies
    assert client.post("/admin/imports/upload", files=body, headers={"x-csrftoken": "forged"}).status_code == 403
    accepted = client.post("/admin/imports/upload", data={"csrftoken": token}, files=body, headers={"x-csrftoken": token})
    assert accepted.status_code == 200 and 'aria-label="Column mapping"' in accepted.text
