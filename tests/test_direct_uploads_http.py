"""The direct-upload endpoints over real HTTP: the app on werkzeug's server, the bucket
on SeaweedFS, and the client's requests sent as a browser sends them (a session cookie,
JSON to the app, a plain PUT to the bucket)."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from itsdangerous import URLSafeTimedSerializer

from flask_hashfs import FlaskHashFS, HashFS
from flask_hashfs.direct_uploads import TICKET_SALT, DirectUploads
from flask_hashfs.store import UPLOAD_URL_EXPIRES

from .direct_app import BUCKET as DIRECT_BUCKET
from .direct_app import DirectApp, create_bucket, direct_app
from .direct_helpers import send_put, sha256_b64
from .s3_server import S3Server
from .serving_helpers import running
from .test_s3_backend import Requests

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


class Client:
    """JSON requests to the app, keeping its session cookie, as a browser tab does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            for value in response.headers.get_all("Set-Cookie") or []:
                cookie = SimpleCookie(value)
                self.cookie = "; ".join(f"{key}={morsel.value}" for key, morsel in cookie.items())
            is_json = response.headers.get("Content-Type") == "application/json"
            return response.status, json.loads(data) if is_json else data
        finally:
            connection.close()

    def post(self, path: str, data: object) -> tuple[int, Any]:
        return self.request("POST", path, json.dumps(data).encode())

    def login(self, user: str) -> None:
        assert self.request("GET", f"/login/{user}")[0] == 200

    def authorize(self, name: str, data: bytes) -> tuple[int, Any]:
        intent = {"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return self.post("/direct/authorize", intent)

    def upload(self, name: str, data: bytes) -> tuple[int, Any]:
        status, answer = self.authorize(name, data)
        assert status == 200, answer
        assert send_put(answer["url"], data, answer["headers"])[0] == 200
        return self.post("/direct/complete", {"ticket": answer["ticket"]})


@pytest.fixture
def direct(s3_server: S3Server) -> DirectApp:
    create_bucket(s3_server)
    return direct_app(s3_server, max_size=1 << 20)


@pytest.fixture
def store(direct: DirectApp) -> HashFS:
    return direct.fs.store_for(direct.app)


@pytest.fixture
def client(direct: DirectApp) -> Iterator[Client]:
    with running(direct.app) as port:
        yield Client(port)


def test_upload_is_published_and_recorded(client: Client, direct: DirectApp, store: HashFS) -> None:
    client.login("alice")
    status, answer = client.authorize("Photo.PNG", PNG)
    assert status == 200
    assert answer["headers"] == {
        "Content-Length": str(len(PNG)),
        "x-amz-checksum-sha256": sha256_b64(PNG),
    }
    assert f"X-Amz-Expires={UPLOAD_URL_EXPIRES}" in answer["url"]
    assert send_put(answer["url"], PNG, answer["headers"])[0] == 200
    status, answer = client.post("/direct/complete", {"ticket": answer["ticket"]})
    assert status == 201
    [row] = direct.rows
    assert row.user == "alice"
    assert row.intent.name == "Photo.PNG"
    assert row.intent.extension == ".png"
    assert row.address.id == hashlib.sha256(PNG).hexdigest() == answer["id"]
    assert row.address.relpath.endswith(".png")
    assert not row.address.is_duplicate
    # The object is served like any other.
    path = answer["url"].removeprefix(f"http://127.0.0.1:{client.port}")
    status, body = client.request("GET", path)
    assert (status, body) == (200, PNG)
    # A second complete of the same ticket finds nothing to publish.
    assert store.count() == 1


def test_the_browser_learns_nothing_of_what_is_stored(
    client: Client, direct: DirectApp, store: HashFS
) -> None:
    """Authorizing stored content and new content: the same answer, and no request to
    the bucket that could make one slower. Only the app hears of the duplicate."""
    client.login("alice")
    stored = store.put(io.BytesIO(PNG[:-1] + b"x"), ".png")
    requests = Requests(store)
    answers = [client.authorize("a.png", data)[1] for data in (PNG[:-1] + b"x", PNG)]
    assert requests.take() == [], "authorizing looks nothing up"
    assert [sorted(answer) for answer in answers] == [["headers", "ticket", "url"]] * 2
    assert answers[0]["url"] != answers[1]["url"]

    for answer, data in zip(answers, (PNG[:-1] + b"x", PNG), strict=True):
        assert send_put(answer["url"], data, answer["headers"])[0] == 200
    completions = [client.post("/direct/complete", {"ticket": a["ticket"]}) for a in answers]
    assert [status for status, _ in completions] == [201, 201]
    assert [sorted(answer) for _, answer in completions] == [["id", "url"]] * 2
    assert [row.address.is_duplicate for row in direct.rows] == [True, False]
    assert direct.rows[0].address == stored._replace(is_duplicate=True)


def test_a_request_the_app_does_not_authorize_is_refused(
    client: Client, direct: DirectApp, store: HashFS
) -> None:
    status, answer = client.authorize("a.png", PNG)
    assert status == 403
    assert answer == {"error": "You may not upload this file."}
    # A ticket authorized for someone else: still the hook decides at completion.
    client.login("alice")
    _, authorized = client.authorize("a.png", PNG)
    assert send_put(authorized["url"], PNG, authorized["headers"])[0] == 200
    stranger = Client(client.port)
    assert stranger.post("/direct/complete", {"ticket": authorized["ticket"]})[0] == 403
    # Another user's, taken from them: refused too, though this user may upload.
    stranger.login("mallory")
    status, answer = stranger.post("/direct/complete", {"ticket": authorized["ticket"]})
    assert (status, answer) == (403, {"error": "This upload was authorized for someone else."})
    # The bucket takes nothing without a signature of the app.
    url = authorized["url"].partition("?")[0]
    assert send_put(url, PNG, authorized["headers"])[0] == 403
    assert direct.rows == []
    assert store.count() == 0


def test_a_forged_ticket_is_refused(client: Client, direct: DirectApp, store: HashFS) -> None:
    client.login("alice")
    _, authorized = client.authorize("a.png", PNG)
    assert send_put(authorized["url"], PNG, authorized["headers"])[0] == 200
    ticket: str = authorized["ticket"]
    secret = direct.app.config["SECRET_KEY"]
    terms = URLSafeTimedSerializer(secret, salt=TICKET_SALT).loads(ticket)
    forgeries = [
        ticket[:-2] + ("AA" if not ticket.endswith("AA") else "BB"),
        # Well-formed, but signed with another app's key.
        URLSafeTimedSerializer("another app", salt=TICKET_SALT).dumps(terms),
        # Signed with this app's key for another purpose: its session cookie.
        client.cookie.partition("=")[2],
        "",
        None,
        7,
    ]
    for forged in forgeries:
        status, answer = client.post("/direct/complete", {"ticket": forged})
        assert status == 403, forged
        assert "ticket is not valid" in answer["error"]
    assert store.count() == 0
    assert client.post("/direct/complete", {"ticket": ticket})[0] == 201


def test_what_is_refused_before_anything_is_sent(client: Client, store: HashFS) -> None:
    client.login("alice")
    id = hashlib.sha256(PNG).hexdigest()
    cases: list[tuple[object, int, str]] = [
        ("not json", 400, "JSON object"),
        ({"name": "", "size": 1, "sha256": id}, 400, '"name"'),
        ({"name": "a.png", "size": -1, "sha256": id}, 400, '"size"'),
        ({"name": "a.png", "size": True, "sha256": id}, 400, '"size"'),
        ({"name": "a.png", "size": 1, "sha256": id.upper()}, 400, "invalid id"),
        ({"name": "a.png", "size": 1}, 400, '"sha256"'),
        ({"name": "a.exe", "size": 1, "sha256": id}, 415, "not accepted"),
        ({"name": "a.tar gz", "size": 1, "sha256": id}, 400, "cannot be stored"),
        ({"name": "a.png", "size": (1 << 20) + 1, "sha256": id}, 413, "larger than 1048576"),
    ]
    for body, status, message in cases:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        got, answer = client.request("POST", "/direct/authorize", data)
        assert got == status, body
        assert message in answer["error"], answer
    assert client.post("/direct/complete", ["ticket"])[0] == 400
    assert store.count() == 0


def test_tampered_bytes_and_a_false_type_publish_nothing(
    client: Client, direct: DirectApp, store: HashFS
) -> None:
    client.login("alice")
    _, authorized = client.authorize("a.png", PNG)
    tampered = PNG[:-1] + b"!"
    assert send_put(authorized["url"], tampered, authorized["headers"])[0] == 400
    status, answer = client.post("/direct/complete", {"ticket": authorized["ticket"]})
    assert status == 409
    assert "did not arrive" in answer["error"]

    # Bytes the bucket took, but that are no PNG: refused, and removed from the bucket.
    html = b"<html><script>alert(1)</script></html>"
    status, answer = client.upload("cat.png", html)
    assert status == 415
    assert "does not match its type (image/png)" in answer["error"]
    assert direct.rows == []
    assert store.count() == 0
    assert store.stale_temp_files() == []
    leftovers = store.backend.reserved_keys(".hashfs/incoming")
    assert list(leftovers) == []
    # The same bytes as text are fine.
    assert client.upload("cat.txt", html)[0] == 201


def test_registration_needs_a_bucket_sha256_and_a_secret(
    tmp_path: Path, s3_server: S3Server
) -> None:
    bucket: dict[str, object] = {
        "HASHFS_ROOT_FOLDER": s3_server.new_url(),
        "HASHFS_STORAGE_OPTIONS": s3_server.options,
    }
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({}, RuntimeError, "init_app"),
        (
            {"HASHFS_ROOT_FOLDER": str(tmp_path), "SECRET_KEY": "s"},
            ValueError,
            '"HASHFS_ROOT_FOLDER" must be object storage',
        ),
        (
            {**bucket, "HASHFS_ALGORITHM": "blake3", "SECRET_KEY": "s"},
            ValueError,
            "\"HASHFS_ALGORITHM\" must be 'sha256'",
        ),
        (bucket, RuntimeError, "SECRET_KEY"),
    ]
    for config, error, message in cases:
        app = Flask(__name__)
        app.config.update(config)
        fs = FlaskHashFS()
        if config:
            fs.init_app(app)
        with pytest.raises(error, match=message):
            app.register_blueprint(DirectUploads(fs).blueprint)


def test_empty_content_is_checked_and_published(client: Client, store: HashFS) -> None:
    client.login("alice")
    status, answer = client.upload("empty.txt", b"")
    assert status == 201
    with store.open(answer["id"]) as stream:
        assert stream.read() == b""
    assert client.upload("empty.png", b"")[0] == 415


def test_without_hooks_every_request_is_let_through_and_answered_with_the_id(
    s3_server: S3Server,
) -> None:
    create_bucket(s3_server)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        HASHFS_ROOT_FOLDER=f"s3://{DIRECT_BUCKET}/{uuid.uuid4().hex}",
        HASHFS_STORAGE_OPTIONS=s3_server.options,
    )
    fs = FlaskHashFS(app)
    app.register_blueprint(DirectUploads(fs).blueprint, url_prefix="/direct")
    with running(app) as port:
        status, answer = Client(port).upload("a.exe", PNG)
    assert (status, answer) == (201, {"id": hashlib.sha256(PNG).hexdigest()})
    assert fs.store_for(app).count() == 1
