"""The application factory."""

from __future__ import annotations

import logging

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from addon.config import Settings, load_settings
from addon.errors import register_error_handlers
from addon.paths import STATIC_DIR, TEMPLATES_DIR
from addon.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the Flask app. Background work (delivery worker, housekeeping) is started by the caller."""
    if runtime is None:
        runtime = Runtime.build(settings or load_settings())
    app = Flask(__name__, template_folder=str(TEMPLATES_DIR), static_folder=str(STATIC_DIR))
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["addon"] = runtime
    register_error_handlers(app)

    @app.before_request
    def _refuse_oversized_bodies() -> None:
        # Flask refuses a body over the limit only when a handler reads it; refuse a declared one on every route
        # (`/lifecycle/enabled` ignores its body). A chunked body is checked when read (`request_json.read_json`).
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()

    from addon import health, home
    from addon.connect import descriptor, lifecycle

    for blueprint in (descriptor.bp, lifecycle.bp, health.bp, home.bp):
        app.register_blueprint(blueprint)
    _register_optional_blueprints(app)
    return app


def _register_optional_blueprints(app: Flask) -> None:
    """Feature blueprints (intake, admin) register here as they are built."""
    import importlib

    for module_name in ("addon.changes.routes", "addon.admin.api", "addon.admin.delivery_log", "addon.admin.page"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        app.register_blueprint(module.bp)
        init = getattr(module, "init_runtime", None)
        if init is not None:
            init(app.extensions["addon"])


def configure_logging(level: int = logging.INFO) -> None:
    # The intake and the worker log a line per event and per attempt. The format uses no caller or thread fields,
    # so their collection is turned off, as the logging HOWTO's "Optimization" section describes. The process id
    # stays: gunicorn's own lines print it.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    from addon.log_format import EscapingFormatter

    handler = logging.StreamHandler()  # as basicConfig's, with a formatter that escapes what requests put in
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # seven lines of set-up on every start
