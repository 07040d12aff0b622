"""FlaskHashFS: binds a :class:`HashFS` store to each Flask app that calls ``init_app``.

State lives per app (in a mapping keyed by app, and the extension object itself in
``app.extensions["hashfs"]``), never on ``self``, so one extension object serves any
number of apps and app factories work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable
from datetime import timedelta
from typing import IO, Any, Generic, NamedTuple, TypeVar, overload
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from flask import Config, Flask, current_app, has_app_context, has_request_context, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response

from .address import HashAddress, StoredObject
from .cli import hashfs_cli
from .errors import ConfigurationError, ObjectNotFound, StorageError
from .http_errors import handle_storage_error
from .multipart import StreamedForm, stream_uploads
from .serving import (
    DEFAULT_INLINE_TYPES,
    ObjectServer,
    ServeOptions,
    delegated_headers,
    store_response,
)
from .store import FileRef, HashFS
from .streams import PutInput
from .sweep import SweepReport
from .uploads import BodyReader, filename_extension, put_upload

EXTENSION_NAME = "hashfs"
#: What ``@fs.live_ids_loader`` decorates: it returns every id the app's rows reference.
LiveIdsLoader = Callable[[], Iterable[str | None]]

T = TypeVar("T")


class _AppState(NamedTuple):
    store: HashFS
    serving: ServeOptions


class _Forward(Generic[T]):
    """A name of the current app's store, read through the extension.

    ``read`` picks the name off a store (``lambda store: store.root``), so its type is
    the store's own: an attribute's value, or a bound method with its signature.
    """

    def __init__(self, read: Callable[[HashFS], T]) -> None:
        self._read = read

    @overload
    def __get__(self, extension: None, owner: type[FlaskHashFS]) -> _Forward[T]: ...

    @overload
    def __get__(self, extension: FlaskHashFS, owner: type[FlaskHashFS]) -> T: ...

    def __get__(self, extension: FlaskHashFS | None, owner: type[FlaskHashFS]) -> T | _Forward[T]:
        if extension is None:
            return self
        return self._read(extension.client)


class FlaskHashFS:
    """Flask extension for content-addressed uploads.

    :param app: an app to initialise now; or call :meth:`init_app` later.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._state: WeakKeyDictionary[Flask, _AppState] = WeakKeyDictionary()
        self._live_ids: WeakKeyDictionary[Flask, LiveIdsLoader] = WeakKeyDictionary()
        #: The app given to the constructor, or None (public in 0.3). Nothing here uses
        #: it: every call works on ``current_app``, whichever apps ``init_app`` was given.
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the config, build the app's store, and register the extension.

        Config keys (defaults in brackets): ``HASHFS_HOST`` [None: the request's host],
        ``HASHFS_PATH_PREFIX`` [""], ``HASHFS_ROOT_FOLDER`` [required],
        ``HASHFS_DEPTH`` [4], ``HASHFS_WIDTH`` [1], ``HASHFS_ALGORITHM`` ["sha256"],
        ``HASHFS_FSYNC`` [True], ``HASHFS_SERVE`` [False],
        ``HASHFS_INLINE_TYPES`` [common image, audio and video types, ``text/plain``],
        ``HASHFS_X_ACCEL_REDIRECT`` [None], ``HASHFS_X_SENDFILE`` [False],
        ``HASHFS_STORAGE_OPTIONS`` [None: for an ``s3://`` root, the endpoint, region and
        credentials; see ``docs/object-storage.md``], ``HASHFS_SIGNED_URL_WINDOW`` [None:
        ``url_for`` gives presigned bucket URLs, the same within each window of this many
        seconds], ``HASHFS_SERVE_MODE`` ["stream"; or "redirect": the route redirects to
        the signed or HASHFS_HOST URL]; and Flask's ``MAX_CONTENT_LENGTH`` as
        :meth:`put_upload`'s default limit. docs/configuration.md says what each one means.

        With ``HASHFS_SERVE``, :class:`~flask_hashfs.serving.ObjectServer` wraps
        ``app.wsgi_app`` to answer GET and HEAD of stored objects under the prefix.

        It also adds the ``flask hashfs`` commands (``verify``, ``repair``, ``stats``),
        and an error handler that answers a :class:`StorageError` a view lets through
        with 507, 503 or 500 (:func:`flask_hashfs.http_errors.http_error`); register
        your own handler for ``StorageError`` after ``init_app`` to replace it.

        :raises ValueError: a config value is missing or invalid; the message names it.
        :raises RuntimeError: the extension is already registered on ``app``.
        """
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError(
                "A 'FlaskHashFS' instance is already registered on this Flask app."
                " Import and use that instance instead."
            )
        config = app.config
        config.setdefault("HASHFS_HOST", None)
        config.setdefault("HASHFS_PATH_PREFIX", "")
        config.setdefault("HASHFS_ROOT_FOLDER", None)
        config.setdefault("HASHFS_DEPTH", 4)
        config.setdefault("HASHFS_WIDTH", 1)
        config.setdefault("HASHFS_ALGORITHM", "sha256")
        config.setdefault("HASHFS_FSYNC", True)
        config.setdefault("HASHFS_STORAGE_OPTIONS", None)
        config.setdefault("HASHFS_SERVE", False)
        config.setdefault("HASHFS_INLINE_TYPES", DEFAULT_INLINE_TYPES)
        config.setdefault("HASHFS_X_ACCEL_REDIRECT", None)
        config.setdefault("HASHFS_X_SENDFILE", False)
        config.setdefault("HASHFS_SIGNED_URL_WINDOW", None)
        config.setdefault("HASHFS_SERVE_MODE", "stream")

        prefix = config["HASHFS_PATH_PREFIX"]
        if prefix is None:
            raise _config_error("HASHFS_PATH_PREFIX", "must be set", missing=True)
        if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
            raise _config_error(
                "HASHFS_PATH_PREFIX", f"must start with a leading slash, not {prefix!r}"
            )
        for key in ("HASHFS_FSYNC", "HASHFS_SERVE", "HASHFS_X_SENDFILE"):
            if not isinstance(config[key], bool):
                raise _config_error(key, f"must be True or False, not {config[key]!r}")
        _check_host(config["HASHFS_HOST"])
        try:
            serving = _serve_options(config)
            store = HashFS(
                _root_folder(config["HASHFS_ROOT_FOLDER"]),
                depth=config["HASHFS_DEPTH"],
                width=config["HASHFS_WIDTH"],
                algorithm=config["HASHFS_ALGORITHM"],
                fsync=config["HASHFS_FSYNC"],
                storage_options=config["HASHFS_STORAGE_OPTIONS"],
                inline_types=serving.inline_types,
            )
        except ConfigurationError as exc:
            raise store_config_error(exc) from exc
        if store.signs_urls and (serving.x_accel_redirect or serving.x_sendfile):
            raise _config_error(
                "HASHFS_X_ACCEL_REDIRECT" if serving.x_accel_redirect else "HASHFS_X_SENDFILE",
                "needs a folder root: a bucket's objects are no files a front server can send",
            )
        redirect = _redirect(config, store, prefix, serving)
        if config["HASHFS_SERVE"]:
            if not prefix:
                raise _config_error(
                    "HASHFS_SERVE",
                    'needs a HASHFS_PATH_PREFIX (such as "/uploads"): stored objects get a'
                    " URL space of their own, apart from the app's pages",
                )
            server = ObjectServer(app.wsgi_app, store, prefix, serving, redirect)
            app.wsgi_app = server  # type: ignore[method-assign]
        self._state[app] = _AppState(store, serving)
        app.extensions[EXTENSION_NAME] = self
        app.register_error_handler(StorageError, handle_storage_error)
        app.cli.add_command(hashfs_cli)

    def _state_for(self, app: Flask) -> _AppState:
        try:
            return self._state[app]
        except KeyError:
            raise RuntimeError(
                "The current Flask app is not registered with this 'FlaskHashFS' instance."
                " Did you forget to call 'init_app', or did you create multiple instances?"
            ) from None

    def store_for(self, app: Flask) -> HashFS:
        """The store of ``app``, outside a request or app context."""
        return self._state_for(app).store

    @property
    def config(self) -> Config:
        """The current app's config (as in 0.3)."""
        return current_app.config

    @property
    def client(self) -> HashFS:
        """The current app's :class:`HashFS` store."""
        return self.store_for(current_app._get_current_object())  # type: ignore[attr-defined]

    def url_for(self, relpath: str, external: bool = True) -> str:
        """The URL of a stored object, from its ``relpath``; it does not touch the disk.

        ``HASHFS_HOST`` (or the request's host URL when None), ``HASHFS_PATH_PREFIX`` and
        ``relpath`` are joined with exactly one slash between parts; a host with a path of
        its own (a CDN or bucket URL) keeps it.

        With ``HASHFS_SIGNED_URL_WINDOW`` (a bucket only) it is a presigned URL of the
        bucket instead, always external, the same for every call within one window.
        """
        config = current_app.config
        window = config["HASHFS_SIGNED_URL_WINDOW"]
        if window is not None:
            state = self._state_for(current_app._get_current_object())  # type: ignore[attr-defined]
            return _signed_url(state.store, relpath, window, state.serving)
        path = join_url_path(config["HASHFS_PATH_PREFIX"], relpath)
        if not external:
            return path
        host = config["HASHFS_HOST"] or request.host_url
        return host.rstrip("/") + path

    # -- serving ---------------------------------------------------------------------------

    def send(
        self,
        file: FileRef,
        *,
        download_name: str | None = None,
        as_attachment: bool = False,
        public: bool = False,
    ) -> Response:
        """A response serving a stored object, for a view of your own (to check access
        first, or to give the download the user's original file name).

        It has every header ``HASHFS_SERVE`` sends but one: it is private by default
        (``Cache-Control: private, no-cache``), so that no shared cache or CDN keeps a
        copy and the browser asks the view again before each use (a 304 when its copy is
        current). It honours the hand-off config. Active content is always an attachment.

        :param file: an id, relpath or absolute path, as for :meth:`get`.
        :param download_name: the name a browser saves the file under (any Unicode).
        :param as_attachment: download even a type the browser could show inline.
        :param public: for objects anyone may see: shared caches may keep it for a year,
            as ``immutable``, as they do what ``HASHFS_SERVE`` serves.
        :raises werkzeug.exceptions.NotFound: nothing is stored under ``file``.

        .. versionchanged:: 1.1
            Private unless ``public=True``; 1.0 sent every object as public.
        """
        store, serving = self._state_for(current_app._get_current_object())  # type: ignore[attr-defined]
        info = store.info(file)
        obj = None if info is None else store.stat(info.key)
        if obj is None:
            raise NotFound()
        try:
            return store_response(
                store,
                obj,
                request.environ,
                serving,
                download_name=download_name,
                as_attachment=as_attachment,
                public=public,
            )
        except ObjectNotFound:  # deleted since stat
            raise NotFound() from None

    # -- collecting garbage -----------------------------------------------------------------

    @overload
    def live_ids_loader(self, callback: LiveIdsLoader, /) -> LiveIdsLoader: ...

    @overload
    def live_ids_loader(self, /, *, app: Flask) -> Callable[[LiveIdsLoader], LiveIdsLoader]: ...

    def live_ids_loader(
        self, callback: LiveIdsLoader | None = None, /, *, app: Flask | None = None
    ) -> LiveIdsLoader | Callable[[LiveIdsLoader], LiveIdsLoader]:
        """Register the function that names every id the app's rows still reference, for
        :meth:`sweep` and ``flask hashfs gc``; in the style of Flask-Login's
        ``user_loader``. It is called in an app context, once per sweep, and may return
        any iterable (a generator that streams a query keeps memory low)::

            @fs.live_ids_loader
            def live_ids():
                return db.session.scalars(select(Upload.file_id)).yield_per(10_000)

        The loader belongs to one app: the current one, or ``app`` when given (an app
        factory registers it with ``@fs.live_ids_loader(app=app)`` after ``init_app``).

        :raises RuntimeError: no app is given and there is no app context, or the app is
            not initialised with this extension.

        .. versionadded:: 1.1
        """
        if callback is None:
            if app is None:
                raise TypeError("live_ids_loader() takes the loader, or app= to decorate with")
            target = app

            def register(callback: LiveIdsLoader) -> LiveIdsLoader:
                self._state_for(target)
                self._live_ids[target] = callback
                return callback

            return register
        if not has_app_context():
            raise RuntimeError(
                "@fs.live_ids_loader needs an app: use it in an app context, or write"
                " @fs.live_ids_loader(app=app) in the app factory, after fs.init_app(app)."
            )
        current = current_app._get_current_object()  # type: ignore[attr-defined]
        self._state_for(current)
        self._live_ids[current] = callback
        return callback

    def live_ids_loader_of(self, app: Flask) -> LiveIdsLoader:
        """The loader ``app`` registered with :meth:`live_ids_loader`.

        :raises RuntimeError: it registered none.
        """
        loader = self._live_ids.get(app)
        if loader is None:
            raise RuntimeError(
                "No live ids loader is registered for this app: decorate the function"
                " that returns every referenced id with @fs.live_ids_loader."
            )
        return loader

    def sweep(
        self,
        live: Iterable[str | None] | Callable[[], Iterable[str | None]] | None = None,
        *,
        grace: float | timedelta,
        dry_run: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> SweepReport:
        """:meth:`HashFS.sweep` on the current app's store, with the ids that the app's
        :meth:`live_ids_loader` returns unless ``live`` is given (the loader is called
        once the sweep has taken the time its grace counts back from).

        :raises RuntimeError: ``live`` is None and the app registered no loader.

        .. versionadded:: 1.1
        """
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        store = self.store_for(app)
        if live is None:
            live = self.live_ids_loader_of(app)
        return store.sweep(live, grace=grace, dry_run=dry_run, progress=progress)

    # -- the store's API, on the current app's store ---------------------------------------

    def put(
        self, file: PutInput, extension: str | None = None, *, use_filename: bool = False
    ) -> HashAddress:
        """Store ``file``: a path, a stream, ``request.stream`` or a werkzeug
        :class:`~werkzeug.datastructures.FileStorage` (``request.files[...]``).

        :param use_filename: take the extension from the upload's file name (lowercased
            last suffix); the store validates it like any extension.
        :raises InvalidExtension: the extension (given or taken) cannot be stored.
        :raises werkzeug.exceptions.ClientDisconnected: ``file`` is ``request.stream`` and
            it ended before its ``Content-Length``: the client went away; nothing is stored.

        .. versionchanged:: 1.0
            ``use_filename`` was added.
        """
        if use_filename:
            if extension is not None:
                raise ValueError("pass either an extension or use_filename=True, not both")
            extension = filename_extension(getattr(file, "filename", None))
        length = _declared_length(file)
        if length is not None:
            file = BodyReader(file, length=length)
        return self.client.put(file, extension=extension)

    def put_upload(
        self,
        upload: FileStorage | IO[bytes] | None,
        *,
        extension: str | None = None,
        allowed_extensions: Collection[str] | None = None,
        max_size: int | None = None,
    ) -> HashAddress:
        """Store an upload in a view, or refuse it with an HTTP error that Flask sends as
        is: a 4xx for the client's mistakes, and 507, 503 or 500 when the storage fails.

        The extension comes from the file name unless given; an extension of a type
        shown inline (images, audio, video) must match the content's signature (415
        otherwise). ``max_size`` defaults to ``MAX_CONTENT_LENGTH``. See
        :func:`flask_hashfs.uploads.put_upload` for each refusal.
        """
        if max_size is None:
            max_size = current_app.config.get("MAX_CONTENT_LENGTH")
        return put_upload(
            self.client,
            upload,
            extension=extension,
            allowed_extensions=allowed_extensions,
            max_size=max_size,
            length=_declared_length(upload),
        )

    def stream_uploads(
        self,
        *,
        allowed_extensions: Collection[str] | None = None,
        max_size: int | None = None,
    ) -> StreamedForm:
        """Store every file of the current request's form as it comes off the socket, or
        refuse the request with an HTTP error that Flask sends as is; return the form's
        fields and the stored files. Each byte is read once, hashed and written once:
        no temp copy. The checks are :meth:`put_upload`'s, run while the bytes arrive,
        and nothing is stored unless every file passed. Call it instead of reading
        ``request.files``; ``request.form`` holds the fields afterwards.

        ``max_size`` (per file) defaults to ``MAX_CONTENT_LENGTH``. See
        :func:`flask_hashfs.multipart.stream_uploads` for each refusal.

        .. versionadded:: 1.1
        """
        if max_size is None:
            max_size = current_app.config.get("MAX_CONTENT_LENGTH")
        return stream_uploads(
            self.client,
            request._get_current_object(),  # type: ignore[attr-defined]
            allowed_extensions=allowed_extensions,
            max_size=max_size,
        )

    def __contains__(self, file: object) -> bool:
        return file in self.client

    # The rest of the store's API, read on the current app's store. Flask-HashFS 0.3
    # forwarded every attribute with ``__getattr__``; these are hashfs 0.7.2's public
    # names (and ``info`` and ``ids``), declared so that type checkers see each one's
    # type. A call reaches the store with exactly the arguments it was given, as in 0.3.
    root = _Forward(lambda store: store.root)
    depth = _Forward(lambda store: store.depth)
    width = _Forward(lambda store: store.width)
    algorithm = _Forward(lambda store: store.algorithm)
    fmode = _Forward(lambda store: store.fmode)
    dmode = _Forward(lambda store: store.dmode)
    get = _Forward(lambda store: store.get)
    info = _Forward(lambda store: store.info)
    open = _Forward(lambda store: store.open)
    exists = _Forward(lambda store: store.exists)
    delete = _Forward(lambda store: store.delete)
    files = _Forward(lambda store: store.files)
    ids = _Forward(lambda store: store.ids)
    folders = _Forward(lambda store: store.folders)
    count = _Forward(lambda store: store.count)
    size = _Forward(lambda store: store.size)
    corrupted = _Forward(lambda store: store.corrupted)
    repair = _Forward(lambda store: store.repair)
    repair_report = _Forward(lambda store: store.repair_report)
    verify = _Forward(lambda store: store.verify)
    computehash = _Forward(lambda store: store.computehash)
    idpath = _Forward(lambda store: store.idpath)
    realpath = _Forward(lambda store: store.realpath)
    relpath = _Forward(lambda store: store.relpath)
    shard = _Forward(lambda store: store.shard)
    unshard = _Forward(lambda store: store.unshard)
    haspath = _Forward(lambda store: store.haspath)
    makepath = _Forward(lambda store: store.makepath)
    remove_empty = _Forward(lambda store: store.remove_empty)


def _declared_length(file: object) -> int | None:
    """The request's ``Content-Length`` when ``file`` is the request's own body stream:
    a body that ends sooner must fail the put, not store what came (see BodyReader)."""
    if has_request_context() and file is request.stream:
        return request.content_length
    return None


#: The config key behind each argument a :class:`ConfigurationError` can name.
_CONFIG_KEYS = {
    "root": "HASHFS_ROOT_FOLDER",
    "depth": "HASHFS_DEPTH",
    "width": "HASHFS_WIDTH",
    "algorithm": "HASHFS_ALGORITHM",
    "fsync": "HASHFS_FSYNC",
    "storage_options": "HASHFS_STORAGE_OPTIONS",
    "inline_types": "HASHFS_INLINE_TYPES",
    "x_accel_redirect": "HASHFS_X_ACCEL_REDIRECT",
    "x_sendfile": "HASHFS_X_SENDFILE",
}


def _config_error(key: str, reason: str, *, missing: bool = False) -> ValueError:
    """One wording for every config error, naming the one key at fault, as 0.3 did."""
    kind = "Missing" if missing else "Invalid"
    return ValueError(f'{kind} configuration value for Flask-HashFS: "{key}" {reason}')


def store_config_error(exc: ConfigurationError) -> ValueError:
    """The config error for a store's :class:`ConfigurationError`, naming the config key
    behind the parameter at fault: ``init_app`` raises it, and so does registering a
    blueprint that needs more of the store (direct uploads)."""
    return _config_error(_CONFIG_KEYS[exc.parameter], exc.reason)


def _root_folder(root: object) -> str | os.PathLike[str]:
    """The root as given, refusing a relative folder: it would name another folder
    whenever the server starts in another directory, and uploads would seem lost."""
    if not root:
        raise _config_error("HASHFS_ROOT_FOLDER", "must be set", missing=True)
    text = os.fspath(root) if isinstance(root, str | os.PathLike) else None
    if not isinstance(text, str):
        raise _config_error(
            "HASHFS_ROOT_FOLDER", f"must be a folder path or an s3:// URL, not {root!r}"
        )
    if "://" not in text and not os.path.isabs(text):
        raise _config_error(
            "HASHFS_ROOT_FOLDER",
            f"must be an absolute path, not {text!r}: a relative one would name another"
            " folder whenever the server starts in another directory. For a folder in the"
            f" app's instance folder, use os.path.join(app.instance_path, {text!r})",
        )
    return text


def _check_host(host: object) -> None:
    """``HASHFS_HOST`` is put in front of every URL: a scheme and host, or ``//host``."""
    if host is None or host == "":
        return
    if isinstance(host, str):
        try:
            parts = urlsplit(host)
        except ValueError:
            parts = None
        if (
            parts is not None
            and parts.netloc
            and not parts.query
            and not parts.fragment
            and (parts.scheme in ("http", "https") or host.startswith("//"))
        ):
            return
    raise _config_error(
        "HASHFS_HOST",
        'must be an absolute URL such as "https://cdn.example.com", or a protocol-relative'
        f' one such as "//cdn.example.com", not {host!r}',
    )


def _serve_options(config: Any) -> ServeOptions:
    """:raises ConfigurationError: naming the :class:`ServeOptions` field at fault."""
    return ServeOptions(
        inline_types=config["HASHFS_INLINE_TYPES"],
        x_accel_redirect=config["HASHFS_X_ACCEL_REDIRECT"],
        x_sendfile=config["HASHFS_X_SENDFILE"],
    )


def _signed_url(store: HashFS, relpath: str, window: int, options: ServeOptions) -> str:
    """The store's presigned URL, asking the bucket for the headers serving would send."""
    id, extension = store.split_relpath(relpath)
    content_type, disposition = delegated_headers(id, extension, options)
    url = store.signed_url(
        relpath, window, content_type=content_type, content_disposition=disposition
    )
    assert url is not None, "checked by init_app: the store signs URLs"
    return url


def _redirect(
    config: Any, store: HashFS, prefix: str, options: ServeOptions
) -> Callable[[StoredObject], tuple[str, int]] | None:
    """What ``HASHFS_SERVE_MODE = "redirect"`` sends a request to: the signed URL, or the
    object's URL on ``HASHFS_HOST`` (a CDN or the bucket's public URL)."""
    mode = config["HASHFS_SERVE_MODE"]
    window = config["HASHFS_SIGNED_URL_WINDOW"]
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise _config_error(
                "HASHFS_SIGNED_URL_WINDOW", f"must be a whole number of seconds, not {window!r}"
            )
        if not store.signs_urls:
            raise _config_error(
                "HASHFS_SIGNED_URL_WINDOW",
                "needs object storage: HASHFS_ROOT_FOLDER = 's3://bucket/prefix'",
            )
        if window > store.max_signing_window:
            raise _config_error(
                "HASHFS_SIGNED_URL_WINDOW",
                f"must be at most {store.max_signing_window} seconds, not {window}: a signed"
                " URL stays valid for two windows, and the storage signs for at most 7 days",
            )
    if mode == "stream":
        return None
    if mode != "redirect":
        raise _config_error("HASHFS_SERVE_MODE", f'is "stream" or "redirect", not {mode!r}')
    if window is not None:

        def to_signed(obj: StoredObject) -> tuple[str, int]:
            url = _signed_url(store, obj.key, window, options)
            return url, window - int(time.time()) % window

        return to_signed
    host = config["HASHFS_HOST"]
    if not host:
        raise _config_error(
            "HASHFS_SERVE_MODE",
            '= "redirect" needs HASHFS_SIGNED_URL_WINDOW or a HASHFS_HOST to redirect to',
        )

    def to_host(obj: StoredObject) -> tuple[str, int]:
        return host.rstrip("/") + join_url_path(prefix, obj.key), 31536000

    return to_host


def join_url_path(*parts: str | os.PathLike[str]) -> str:
    """``/``-join non-empty parts with exactly one slash between them and a leading one."""
    pieces = [str(part).replace(os.sep, "/").strip("/") for part in parts]
    return "/" + "/".join(piece for piece in pieces if piece)
