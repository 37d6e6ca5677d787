"""The WSGI entry point: ``gunicorn --config gunicorn.conf.py wsgi:app``; ``flask`` finds it by name."""

from guestbook import create_app

app = create_app()
