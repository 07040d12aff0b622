"""Direct uploads over HTTP: the browser sends the bytes to the bucket; the app only
authorizes them and records what arrived.

:class:`DirectUploads` is a blueprint with two endpoints, under the prefix the app
registers it with:

- ``POST <prefix>/authorize`` with ``{"name", "size", "sha256"}`` (the browser hashed the
  file first): the app's ``authorize`` hook decides, the extension and size are checked,
  and the answer is a presigned PUT whose signature covers the length and the SHA-256,
  with a ticket. Every authorized request gets a PUT, whether the content is stored or
  not: the answer (and its timing: nothing is looked up) says nothing about what others
  uploaded (Harnik, Pinkas and Shulman-Peleg, 2010).
- ``POST <prefix>/complete`` with ``{"ticket"}``: once the PUT succeeded, the store
  checks what arrived (length, digest, the type signature of its first bytes) and
  publishes it; the app's ``on_upload`` hook gets the address, duplicate or not, and
  returns the browser's answer.

The ticket carries the upload's terms, signed with the app's ``SECRET_KEY``
(itsdangerous, as Flask's session cookie is): the app keeps no state between the two
requests, and the browser cannot change what was authorized. ``direct-upload.js``, in
the blueprint's static folder, is the browser's side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Literal, NamedTuple

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPException,
    RequestEntityTooLarge,
)
from werkzeug.wrappers import Response

from .address import DirectUpload, HashAddress
from .backends.base import INCOMING_MAX_AGE
from .errors import (
    ConfigurationError,
    InvalidExtension,
    InvalidId,
    InvalidUpload,
    StorageError,
    UploadNotReceived,
)
from .extension import EXTENSION_NAME, FlaskHashFS, store_config_error
from .http_errors import http_error
from .store import HashFS
from .uploads import accepted_extension, check_content, filename_extension

#: Signs tickets apart from every other use of the app's secret key.
TICKET_SALT = "flask-hashfs.direct-upload"


class UploadIntent(NamedTuple):
    """What the browser asked to upload, as the app's hooks see it.

    :param name: the file name the browser sent (for the app's row; never used as a path).
    :param size: in bytes; the storage takes exactly this many.
    :param id: the SHA-256 the browser computed; the storage takes only bytes that have it.
    :param extension: what the object is stored with: the name's, lowercased.
    """

    name: str
    size: int
    id: str
    extension: str


Action = Literal["authorize", "complete"]
Authorize = Callable[[Action, UploadIntent], bool]
Identify = Callable[[], str | None]
OnUpload = Callable[[UploadIntent, HashAddress], ResponseReturnValue | None]


class DirectUploads:
    """The direct-upload endpoints of one or more apps: register :attr:`blueprint`
    under a prefix, after ``init_app``, on an app with an ``s3://`` root, sha256 ids and
    a ``SECRET_KEY``. The bucket must let the app's origin PUT (CORS; see
    ``docs/uploads.md``). ::

        direct = DirectUploads(fs, allowed_extensions={".jpg", ".mp4"})

        @direct.authorizer
        def may_upload(action, intent):
            return current_user.is_authenticated

        @direct.on_upload
        def record(intent, address):
            db.add(Attachment(object_id=address.id, name=intent.name))
            db.commit()
            return {"id": address.id}, 201

        app.register_blueprint(direct.blueprint, url_prefix="/direct-uploads")

    :param fs: the extension whose store takes the uploads.
    :param max_size: bytes; a larger upload is refused (413) before it is sent.
        Default and most: what one request to the storage carries (5 GiB on S3).
    :param allowed_extensions: e.g. ``{".jpg", ".png"}``; any other is refused (415).
    :param authorize: called on both requests, in their request context, with the
        action (``"authorize"`` or ``"complete"``) and what is uploaded: True lets it
        through, anything else is a 403 (or raise an HTTP error of your own). Without
        it, anyone who can reach the app may store files in its bucket.
    :param identify: who is asking (a user id), put in the ticket at ``authorize``: a
        ticket that reaches ``complete`` from anyone else is refused (403), so that a
        stolen ticket cannot make a row of someone else's file.
    :param on_upload: called once the upload is published, before the browser hears of
        it: write the row here, and return the browser's answer (by default
        ``{"id": ...}``, 201). ``address.is_duplicate`` is for the app; do not pass it
        on (docs/uploads.md).
    :param name: the blueprint's name; ``url_for(name + ".static",
        filename="direct-upload.js")`` is the browser's script.

    Registering the blueprint raises RuntimeError without ``init_app`` or
    ``SECRET_KEY``, and ValueError, naming the config key, for a store that takes no
    direct uploads (a folder root, or ids of another algorithm).

    .. versionadded:: 1.1
    """

    def __init__(
        self,
        fs: FlaskHashFS,
        *,
        max_size: int | None = None,
        allowed_extensions: Collection[str] | None = None,
        authorize: Authorize | None = None,
        identify: Identify | None = None,
        on_upload: OnUpload | None = None,
        name: str = "hashfs_direct",
    ) -> None:
        self._fs = fs
        self.max_size = max_size
        self.allowed_extensions = allowed_extensions
        self._authorize = authorize
        self._identify = identify
        self._on_upload = on_upload
        self.blueprint = Blueprint(name, __name__, static_folder="static")
        self.blueprint.record_once(self._check_app)
        self.blueprint.add_url_rule(
            "/authorize", "authorize", self._authorize_view, methods=["POST"]
        )
        self.blueprint.add_url_rule("/complete", "complete", self._complete_view, methods=["POST"])
        self.blueprint.register_error_handler(HTTPException, _as_json)

    def authorizer(self, function: Authorize) -> Authorize:
        """Set ``authorize`` with a decorator."""
        self._authorize = function
        return function

    def identifier(self, function: Identify) -> Identify:
        """Set ``identify`` with a decorator."""
        self._identify = function
        return function

    def on_upload(self, function: OnUpload) -> OnUpload:
        """Set ``on_upload`` with a decorator."""
        self._on_upload = function
        return function

    def _allow(self, action: Action, intent: UploadIntent) -> None:
        if self._authorize is not None and self._authorize(action, intent) is not True:
            raise Forbidden("You may not upload this file.")

    def _who(self) -> str | None:
        return None if self._identify is None else self._identify()

    def _store(self) -> HashFS:
        return self._fs.store_for(current_app._get_current_object())  # type: ignore[attr-defined]

    def _check_app(self, state: BlueprintSetupState) -> None:
        app: Flask = state.app  # type: ignore[assignment]
        if app.extensions.get(EXTENSION_NAME) is not self._fs:
            raise RuntimeError("Call init_app of this DirectUploads' FlaskHashFS first.")
        if not app.secret_key:
            raise RuntimeError("Direct uploads sign their tickets with SECRET_KEY: set it.")
        try:
            self._fs.store_for(app).check_direct_uploads()
        except ConfigurationError as exc:
            raise store_config_error(exc) from exc

    # -- views ---------------------------------------------------------------------------

    def _authorize_view(self) -> ResponseReturnValue:
        body = _json_object()
        name, size, id = body.get("name"), body.get("size"), body.get("sha256")
        if not isinstance(name, str) or not name:
            raise BadRequest('"name" is the file name, a non-empty string.')
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest('"size" is the file\'s length in bytes.')
        if not isinstance(id, str):
            raise BadRequest('"sha256" is the hex SHA-256 of the file.')
        extension = filename_extension(name)
        self._allow("authorize", UploadIntent(name, size, id, extension))
        ext = accepted_extension(extension, self.allowed_extensions)
        store = self._store()
        limit = store.max_upload_size
        if self.max_size is not None:
            limit = min(limit, self.max_size)
        if size > limit:
            raise RequestEntityTooLarge(f"The file is larger than {limit} bytes.")
        try:
            terms, put = store.presign_upload(id, size, ext)
        except (InvalidId, InvalidExtension, InvalidUpload) as exc:
            raise BadRequest(str(exc)) from None
        ticket = _tickets().dumps([*terms, name, self._who()])
        return {"url": put.url, "headers": put.headers, "ticket": ticket}

    def _complete_view(self) -> ResponseReturnValue:
        ticket = _json_object().get("ticket")
        try:
            if not isinstance(ticket, str):
                raise BadSignature("no ticket")
            id, size, ext, key, name, owner = _tickets().loads(ticket, max_age=INCOMING_MAX_AGE)
        except (BadSignature, TypeError, ValueError):
            raise Forbidden(
                "The upload ticket is not valid: forged, from another app, or expired."
                " Authorize the upload again."
            ) from None
        intent = UploadIntent(name, size, id, ext)
        self._allow("complete", intent)
        if owner != self._who():
            raise Forbidden("This upload was authorized for someone else.")
        try:
            address = self._store().publish_upload(
                DirectUpload(id, size, ext, key), lambda head: check_content(ext, head)
            )
        except UploadNotReceived:
            raise Conflict(
                "The file did not arrive, or not as authorized: nothing was stored."
                " Upload it again."
            ) from None
        except StorageError as exc:
            raise http_error(exc, key) from exc
        answer = None if self._on_upload is None else self._on_upload(intent, address)
        return ({"id": address.id}, 201) if answer is None else answer


def _tickets() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=TICKET_SALT)  # type: ignore[arg-type]


def _as_json(error: HTTPException) -> Response:
    """Refusals as JSON, for the script that sent the request."""
    response = error.get_response()
    response.data = jsonify(error=error.description).data
    response.content_type = "application/json"
    return response


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("Send a JSON object.")
    return body
