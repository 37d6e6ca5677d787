"""What the API accepts and answers, as pydantic models: the one place that decides what is valid.

The same models validate requests (``parse``), give the HTML form its rules (forms.py) and produce the
JSON Schemas of the OpenAPI document (openapi.py), so the document's limits are the code's limits.

Every limit is what PostgreSQL and the model can store: a value that passes here never makes the
database or the driver fail (no 5xx for any input), e.g. PostgreSQL ``text`` cannot hold NUL, UTF-8
cannot encode an unpaired surrogate (JSON's ``"\\ud800"`` decodes to one), ``entries.id`` is an
``integer`` (int4), and an ASCII-digit string of 5,000 characters is not a number Python will parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .models import AUTHOR_MAX, ID_MAX, MESSAGE_MAX

LIST_DEFAULT = 50
LIST_MAX = 100

# Text PostgreSQL can store and that is not blank: no NUL or unpaired surrogate anywhere, and at least
# one character that str.strip() keeps. The whitespace class is spelled out — exactly the characters
# str.isspace() accepts — because `\s` differs between Python and ECMA-262 (U+0085, U+001C-U+001F), and
# the published OpenAPI document must mean the same to its readers (schemathesis, clients) as to us.
# The leading run of it keeps matching linear on long blank strings.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
STORABLE_TEXT = rf"^[{_SPACE}]*[^{_SPACE}\x00\ud800-\udfff][^\x00\ud800-\udfff]*$"

REQUIRED = "This field is required."
UNSTORABLE = "Must not contain NUL (U+0000) or unpaired surrogate (U+D800-U+DFFF) characters."


class _Model(BaseModel):
    # python-re: the pattern means what Python's `re` says (the `\s` above), not Rust's regex crate.
    model_config = ConfigDict(regex_engine="python-re", strict=True)


class NewEntry(_Model):
    """The body of ``POST /api/entries``; both fields are stored with surrounding whitespace removed."""

    model_config = ConfigDict(title="NewEntry")
    author: Annotated[str, Field(min_length=1, max_length=AUTHOR_MAX, pattern=STORABLE_TEXT)]
    message: Annotated[str, Field(min_length=1, max_length=MESSAGE_MAX, pattern=STORABLE_TEXT)]


def _decimal_digits(value: object) -> object:
    # Query values are text. Only plain ASCII digits become a number: int() would also take "٣",
    # "1_0" or " 5", and raise on "²" (str.isdigit() is true for it) or on 5,000 digits.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    return value  # anything else fails the strict integer check


class ListQuery(_Model):
    """The query of ``GET /api/entries``."""

    limit: Annotated[
        int,
        Field(ge=1, le=LIST_MAX, description="How many entries, newest first."),
        BeforeValidator(_decimal_digits),
    ] = LIST_DEFAULT


EntryId = Annotated[int, Field(ge=1, le=ID_MAX, description="The entry's id (PostgreSQL integer).")]


class Entry(_Model):
    """One stored entry, as the API answers it."""

    id: EntryId
    author: Annotated[str, Field(max_length=AUTHOR_MAX)]
    message: Annotated[str, Field(max_length=MESSAGE_MAX)]
    created_at: datetime
    updated_at: datetime


class EntryList(_Model):
    """``GET /api/entries``: newest first."""

    entries: Annotated[list[Entry], Field(max_length=LIST_MAX)]


class Error(_Model):
    """Every error under /api; ``fields`` (422 only) lists the messages per invalid field."""

    error: str
    message: str
    fields: dict[str, list[str]] | None = None


M = TypeVar("M", bound=BaseModel)


class Invalid(Exception):
    """Input broke the rules of a model; ``fields`` maps each field to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__(fields)
        self.fields = fields


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing" or value is None or (isinstance(value, str) and not value.strip()):
        return REQUIRED
    if kind == "string_type":
        return "Must be a string."
    if kind == "string_too_long":
        return f"Must be at most {error['ctx']['max_length']} characters."
    if kind in ("string_pattern_mismatch", "string_unicode"):
        return UNSTORABLE
    return str(error["msg"])


def parse(model: type[M], data: Mapping[str, Any], messages: Mapping[str, str] | None = None) -> M:
    """``model`` validated from ``data``; raises Invalid with one message list per bad field.

    ``messages`` replaces the messages of a field by one fixed message (e.g. a range for a number).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "body"
            if messages and name in messages:
                fields[name] = [messages[name]]
            else:
                fields.setdefault(name, []).append(_message(error))
        raise Invalid(fields) from None
