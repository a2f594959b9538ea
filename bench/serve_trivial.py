"""`addon serve` with one extra, trivial route, for the intake benchmark only (`python -m bench.serve_trivial
serve …`): the very same gunicorn server and Flask app as the add-on's `addon serve`, plus
`POST /bench/trivial`, which reads the body and answers `202 {"ok": true}` with no authentication and no
database. The add-on itself never has this route.
"""

from __future__ import annotations

import sys

from flask import Flask, jsonify, request

import addon.app

_create_app = addon.app.create_app


def create_app(*args, **kwargs) -> Flask:  # type: ignore[no-untyped-def]
    app = _create_app(*args, **kwargs)

    @app.post("/bench/trivial")
    def trivial():  # type: ignore[no-untyped-def]
        request.get_data()
        return jsonify({"ok": True}), 202

    return app


def main() -> int:
    addon.app.create_app = create_app  # `addon serve` imports create_app when it starts
    from addon.cli import main as addon_main

    return addon_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
