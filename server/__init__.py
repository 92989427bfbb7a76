"""The HTTP prediction service: a Flask app answering LR, batch size, loss and loss curves
from fitted law files and published presets (contract 4 of DESIGN.md).

Run it with ``gunicorn -c server/gunicorn.conf.py 'server:create_app()'`` or ``python -m server``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

__all__ = ["create_app"]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then SCALING_* environment variables, then ``test_config``.

    Settings: LAWS_DIR (fitted laws are <LAWS_DIR>/*/laws.json; default "results"),
    DEFAULT_LAW (law used when a request names none; default: see
    LawRegistry.pick_default), PRESETS (also offer the published presets; default true),
    MAX_CONTENT_LENGTH (bytes; larger bodies get 413), MAX_BATCH_ITEMS (POST list limit),
    CACHE_SIZE (answers cached per law query). From the environment: SCALING_LAWS_DIR,
    SCALING_DEFAULT_LAW, ... (values parsed as JSON where they parse, e.g. SCALING_PRESETS=false).
    """
    from . import api, pages, schemas
    from .errors import register_error_handlers
    from .laws import LawRegistry
    from .openapi import build_spec

    app = Flask(__name__)
    app.config.from_mapping(
        LAWS_DIR="results",
        DEFAULT_LAW=None,
        PRESETS=True,
        MAX_CONTENT_LENGTH=512 * 1024,
        MAX_BATCH_ITEMS=schemas.MAX_BATCH_ITEMS,
        CACHE_SIZE=4096,
    )
    app.config.from_prefixed_env("SCALING")
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False  # keep answers in the documented order
    # "/v1/laws//curves" must be a JSON 404, not an HTML redirect to another route.
    app.url_map.merge_slashes = False
    if not app.logger.handlers or app.logger.level == logging.NOTSET:
        app.logger.setLevel(logging.INFO)

    app.extensions["scaling_laws"] = LawRegistry.load(
        app.config["LAWS_DIR"],
        default=app.config["DEFAULT_LAW"] or None,
        presets=bool(app.config["PRESETS"]),
        cache_size=int(app.config["CACHE_SIZE"]),
    )
    app.extensions["scaling_openapi"] = build_spec(_version())

    register_error_handlers(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scaling-service")
    except PackageNotFoundError:
        return "0.0.0"
