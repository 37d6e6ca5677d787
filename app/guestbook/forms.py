"""HTML forms (Flask-WTF: every form carries a CSRF token)."""

from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from .models import AUTHOR_MAX, MESSAGE_MAX


class EntryForm(FlaskForm):
    author = StringField("Name", validators=[DataRequired(), Length(max=AUTHOR_MAX)])
    message = TextAreaField("Message", validators=[DataRequired(), Length(max=MESSAGE_MAX)])
