"""The web page: a form, the answer, and plots drawn in the browser from the JSON API."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("pages", __name__)


@bp.get("/")
def index():
    laws = current_app.extensions["scaling_laws"]
    return render_template("index.html", laws=laws.infos(), default_law=laws.default)
