"""The application factory."""

from __future__ import annotations

import logging

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from addon.admin import api as admin_api
from addon.admin import catalog as admin_catalog
from addon.admin import delivery_log as admin_delivery_log
from addon.admin import page as admin_page
from addon.admin import settings as admin_settings
from addon.config import Settings, load_settings
from addon.connect.door import ConnectDoor
from addon.forge.door import ForgeDoor
from addon.intake import routes as intake_routes
from addon.process.runtime import Runtime
from addon.web import health, home, metrics
from addon.web.errors import register_error_handlers
from addon.web.log_format import EscapingFormatter
from addon.web.log_json import JsonLogFormatter

MAX_BODY_BYTES = 1024 * 1024


def build_runtime(settings: Settings) -> Runtime:
    """The process's runtime with its front doors open (Connect, and Forge when configured)."""
    return open_doors(Runtime.build(settings))


def open_doors(runtime: Runtime) -> Runtime:
    """Add the front doors to a runtime that has none yet (the core never builds a door itself). The Forge door
    opens only with FORGE_APP_ID set: closed, its routes are 404 and a FIT is refused like unknown credentials."""
    if not runtime.doors:
        runtime.doors.append(ConnectDoor(runtime))
        if runtime.settings.forge_app_id:
            runtime.doors.append(ForgeDoor(runtime))
    return runtime


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the Flask app. Background work (delivery worker, housekeeping) is started by the caller."""
    runtime = open_doors(runtime if runtime is not None else Runtime.build(settings or load_settings()))
    # The admin page's files are package data under addon/admin/, served at /static/ as before.
    app = Flask(__name__, template_folder="admin/templates", static_folder="admin/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider has it; the base class does not
    app.extensions["addon"] = runtime
    register_error_handlers(app)

    @app.before_request
    def _refuse_oversized_bodies() -> None:
        # Flask refuses a body over the limit only when a handler reads it; refuse a declared one on every route
        # (`/lifecycle/enabled` ignores its body). A chunked body is checked when read (`json_body.read_json`).
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise RequestEntityTooLarge()

    for door in runtime.doors:
        for blueprint in door.blueprints():
            app.register_blueprint(blueprint)
    metrics.count_intake(app)
    for blueprint in (health.bp, home.bp, metrics.bp, intake_routes.bp, admin_api.bp, admin_delivery_log.bp,
                      admin_settings.bp, admin_catalog.bp, admin_page.bp):
        app.register_blueprint(blueprint)
    intake_routes.init_runtime(runtime)
    return app


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    # The intake and the worker log a line per event and per attempt. The format uses no caller or thread fields,
    # so their collection is turned off, as the logging HOWTO's "Optimization" section describes. The process id
    # stays: gunicorn's own lines print it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()  # as basicConfig's, with a formatter that escapes what requests put in
    handler.setFormatter(JsonLogFormatter() if log_format == "json"
                         else EscapingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # seven lines of set-up on every start
