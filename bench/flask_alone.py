"""The floor for any Flask app here: the bare app's work (bench/bare_wsgi.py) behind Flask alone.

No extension, hook, middleware or configuration: only Flask's own request handling (request and app
contexts, routing, a response object) around the same SQL, driver, connection and JSON as the bare
app. Under the same Gunicorn settings it shows how close to the bare app a Flask app can get at all
on the machine of the run; the guestbook adds its features on top of this.
"""

from __future__ import annotations

from flask import Flask, Response

from bench import bare_wsgi

app = Flask(__name__)


@app.get("/livez")
def livez() -> Response:
    return Response(b'{"status":"ok"}\n', mimetype="application/json")


@app.get("/api/entries")
def entries() -> Response:
    return Response(bare_wsgi.entries_json(), mimetype="application/json")
