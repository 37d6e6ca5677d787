"""HTML forms (Flask-WTF: every form carries a CSRF token); their rules are the API's (schemas.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

from . import entries
from .models import AUTHOR_MAX, MESSAGE_MAX


class EntryForm(FlaskForm):
    """The guestbook's form; ``clean`` holds the stored values once ``validate_on_submit()`` is true."""

    AUTHOR_MAX = AUTHOR_MAX  # the template's maxlength attributes
    MESSAGE_MAX = MESSAGE_MAX
    author = StringField("Name")
    message = TextAreaField("Message")
    clean: dict[str, str]

    def validate(self, extra_validators: Mapping[str, Sequence[Any]] | None = None) -> bool:
        # Flask-WTF checks the CSRF token here; the fields are then judged by the API's own rules,
        # so a form post and an API call can never disagree about what may be stored.
        if not super().validate(extra_validators):
            return False
        self.clean, errors = entries.validate({"author": self.author.data, "message": self.message.data})
        for name, messages in errors.items():
            self[name].errors = list(messages)
        return not errors
