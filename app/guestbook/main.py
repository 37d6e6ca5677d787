"""The HTML pages: the guestbook with its form."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from . import entries
from .forms import EntryForm

main_bp = Blueprint("main", __name__)


@main_bp.route("/", methods=["GET", "POST"])
def index() -> Response | str | tuple[str, int]:
    form = EntryForm()
    if form.validate_on_submit():
        entries.create(**form.clean)
        flash("Thanks for signing the guestbook.")
        # Post/Redirect/Get: a reload does not post twice.
        return redirect(url_for("main.index"))
    page = render_template("index.html", form=form, entries=entries.latest())
    return (page, 422) if form.errors else page
