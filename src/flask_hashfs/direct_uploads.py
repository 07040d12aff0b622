"""Direct uploads over HTTP: the browser sends the bytes to the bucket; the app only
authorizes them and records what arrived.

The blueprint has two endpoints, under the prefix the app registers it with:

- ``POST <prefix>/authorize`` with ``{"name", "size", "sha256"}`` (the browser hashed the
  file first): the app's ``authorize`` hook decides, the extension and size are checked,
  and the answer is a presigned PUT whose signature covers the length and the SHA-256,
  with a ticket. Every authorized request gets a PUT, whether the content is stored or
  not: the answer (and its timing: nothing is looked up) says nothing about what others
  uploaded (Harnik, Pinkas and Shulman-Peleg, 2010).
- ``POST <prefix>/complete`` with ``{"ticket"}``: once the PUT succeeded, the store
  checks what arrived (length, digest, the type signature of its first bytes) and
  publishes it; the app's ``on_upload`` callback gets the address, duplicate or not, and
  returns the browser's answer.

The ticket carries the upload's terms, signed with the app's ``SECRET_KEY``
(itsdangerous, as Flask's session cookie is): the app keeps no state between the two
requests, and the browser cannot change what was authorized. ``direct-upload.js``, in
the blueprint's static folder, is the browser's side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, NamedTuple

from flask import Blueprint, current_app, jsonify, request
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
from .extension import _CONFIG_KEYS, EXTENSION_NAME, FlaskHashFS, _config_error
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


#: Called on both requests, in the request's context: True lets it through, anything
#: else is a 403 (or raise an HTTP error of your own, such as a 401).
Authorize = Callable[[UploadIntent], bool]
#: Called once the upload is published: write the app's row, and return the browser's
#: answer. ``address.is_duplicate`` is for the app; do not pass it on (docs/uploads.md).
OnUpload = Callable[[HashAddress, UploadIntent], ResponseReturnValue]


def direct_uploads(
    *,
    authorize: Authorize,
    on_upload: OnUpload,
    allowed_extensions: Collection[str] | None = None,
    max_size: int | None = None,
    name: str = "hashfs_direct",
) -> Blueprint:
    """The direct-upload endpoints, as a blueprint to register under a prefix::

        app.register_blueprint(
            direct_uploads(authorize=may_upload, on_upload=record, allowed_extensions={".jpg"}),
            url_prefix="/direct-uploads",
        )

    Register it after ``init_app``, on an app with an ``s3://`` root, sha256 ids and a
    ``SECRET_KEY``. The bucket must allow the app's origin to PUT (CORS; see
    ``docs/uploads.md``).

    :param authorize: decides each request (see :data:`Authorize`).
    :param on_upload: records a published upload (see :data:`OnUpload`).
    :param allowed_extensions: e.g. ``{".jpg", ".png"}``; any other is refused (415).
    :param max_size: bytes; a larger upload is refused (413) before it is sent.
        Default and most: what one request to the storage carries (5 GiB on S3).
    :param name: the blueprint's name, for ``url_for(name + ".static", filename=
        "direct-upload.js")``.
    :raises RuntimeError: at registration, ``init_app`` was not called or there is no
        ``SECRET_KEY``.
    :raises ValueError: at registration, the store takes no direct uploads (a folder
        root, or ids of another algorithm); the message names the config key.

    .. versionadded:: 1.1
    """
    endpoints = _Endpoints(authorize, on_upload, allowed_extensions, max_size)
    blueprint = Blueprint(name, __name__, static_folder="static")
    blueprint.record_once(_check_app)
    blueprint.add_url_rule("/authorize", view_func=endpoints.authorize, methods=["POST"])
    blueprint.add_url_rule("/complete", view_func=endpoints.complete, methods=["POST"])
    blueprint.register_error_handler(HTTPException, _as_json)
    return blueprint


class _Endpoints:
    """The two views, with the app's hooks and limits."""

    def __init__(
        self,
        authorize: Authorize,
        on_upload: OnUpload,
        allowed_extensions: Collection[str] | None,
        max_size: int | None,
    ) -> None:
        self._authorize = authorize
        self._on_upload = on_upload
        self._allowed = allowed_extensions
        self._max_size = max_size

    def authorize(self) -> ResponseReturnValue:
        body = _json_object()
        name, size, id = body.get("name"), body.get("size"), body.get("sha256")
        if not isinstance(name, str) or not name:
            raise BadRequest('"name" is the file name, a non-empty string.')
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest('"size" is the file\'s length in bytes.')
        if not isinstance(id, str):
            raise BadRequest('"sha256" is the hex SHA-256 of the file.')
        self._allow(UploadIntent(name, size, id, filename_extension(name)))
        ext = accepted_extension(filename_extension(name), self._allowed)
        store = _store()
        limit = store.max_upload_size
        if self._max_size is not None:
            limit = min(limit, self._max_size)
        if size > limit:
            raise RequestEntityTooLarge(f"The file is larger than {limit} bytes.")
        try:
            terms, put = store.presign_upload(id, size, ext)
        except (InvalidId, InvalidExtension, InvalidUpload) as exc:
            raise BadRequest(str(exc)) from None
        ticket = _tickets().dumps([*terms, name])
        return {"url": put.url, "headers": put.headers, "ticket": ticket}

    def complete(self) -> ResponseReturnValue:
        ticket = _json_object().get("ticket")
        try:
            if not isinstance(ticket, str):
                raise BadSignature("no ticket")
            id, size, ext, key, name = _tickets().loads(ticket, max_age=INCOMING_MAX_AGE)
        except (BadSignature, TypeError, ValueError):
            raise Forbidden(
                "The upload ticket is not valid: forged, from another app, or expired."
                " Authorize the upload again."
            ) from None
        intent = UploadIntent(name, size, id, ext)
        self._allow(intent)
        try:
            address = _store().publish_upload(
                DirectUpload(id, size, ext, key), lambda head: check_content(ext, head)
            )
        except UploadNotReceived:
            raise Conflict(
                "The file did not arrive, or not as authorized: nothing was stored."
                " Upload it again."
            ) from None
        except StorageError as exc:
            raise http_error(exc, key) from exc
        return self._on_upload(address, intent)

    def _allow(self, intent: UploadIntent) -> None:
        if self._authorize(intent) is not True:
            raise Forbidden("You may not upload this file.")


def _store() -> HashFS:
    extension: FlaskHashFS = current_app.extensions[EXTENSION_NAME]
    return extension.client


def _tickets() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=TICKET_SALT)  # type: ignore[arg-type]


def _check_app(state: BlueprintSetupState) -> None:
    app = state.app
    extension = app.extensions.get(EXTENSION_NAME)
    if not isinstance(extension, FlaskHashFS):
        raise RuntimeError("Call FlaskHashFS's init_app before registering direct uploads.")
    if not app.secret_key:
        raise RuntimeError("Direct uploads sign their tickets with SECRET_KEY: set it.")
    try:
        extension.store_for(app).check_direct_uploads()  # type: ignore[arg-type]
    except ConfigurationError as exc:
        raise _config_error(_CONFIG_KEYS[exc.parameter], exc.reason) from exc


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
