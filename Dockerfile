# One Dockerfile, one target per image:
#   docker build --target app -t guestbook .        the reference Flask app (this file's first part)
#   docker build --target operator -t flaskops .    the operator (added below by the operator work)
#
# The app image contract (ARCHITECTURE.md): `gunicorn` and `flask` on PATH, WORKDIR /app holding
# wsgi.py and gunicorn.conf.py, reads APP_ENV, DATABASE_URL, SECRET_KEY, SECRET_KEY_FALLBACKS.
# Migrations are NOT run here: the operator runs `flask db upgrade` once, in a Job, before rollout.
#
# No `# syntax=` line: BuildKit would fetch that frontend from a registry, and builds must work offline.
# PYTHON_IMAGE is any Debian-based image with Python 3.11 at /usr/local/bin/python; the testbed passes one
# it made from Debian packages (testbed/images.sh), users get the public one.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: resolve and install the app's wheels into a virtual environment ------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The project builds both packages (setuptools needs both directories present).
COPY pyproject.toml ./
COPY app/guestbook ./app/guestbook
COPY operator/flaskops ./operator/flaskops
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[app]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- app: only the interpreter, the virtual environment and the two entry files ------------------
FROM ${PYTHON_IMAGE} AS app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production \
    PORT=8000
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Root-owned and read-only to the app user; works with readOnlyRootFilesystem (see gunicorn.conf.py).
COPY app/wsgi.py app/gunicorn.conf.py ./
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]

# ---- operator-builder: the operator's wheels only (`.[operator]`: kopf, kubernetes, psycopg, ...) -----
FROM ${PYTHON_IMAGE} AS operator-builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY app/guestbook ./app/guestbook
COPY operator/flaskops ./operator/flaskops
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[operator]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib
# The operator's user, made here so the final stage only copies files (same base, so the same passwd plus it).
RUN groupadd --system --gid 10001 flaskops \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin flaskops

# ---- operator: `python -m flaskops` as a numeric non-root user on a read-only root filesystem ------
# The chart runs the same command and arguments (tests/chart/test_command.py checks they agree); it
# mounts an emptyDir on /tmp and the webhook's certificate under /etc/flaskops/webhook.
FROM ${PYTHON_IMAGE} AS operator
# MALLOC_ARENA_MAX: glibc gives each thread that allocates its own malloc arena, which keeps freed memory
# for reuse by that thread only; the operator's reconcile workers and kopf's threads would hold ~8 of
# them. Two is the usual setting for threaded Python services (testbed/flaskops_testbed/operator_process.py
# starts the local operator the same way).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2
COPY --from=operator-builder /opt/venv /opt/venv
# Root-owned and empty: `python -m` puts the working directory first on sys.path, so it must not be the
# writable /tmp.
WORKDIR /opt/flaskops
# kopf calls getpass.getuser() at start-up (its peering identity), even with --standalone: without a passwd
# entry for the numeric user it dies with `KeyError: 'getpwuid(): uid not found: 10001'`. LOGNAME answers
# first (getpass reads it before passwd), so a cluster that overrides runAsUser still starts.
COPY --from=operator-builder /etc/passwd /etc/group /etc/
ENV LOGNAME=flaskops
USER 10001:10001
EXPOSE 8080 9443
ENTRYPOINT ["python", "-m", "flaskops"]
CMD ["--liveness=http://0.0.0.0:8080/healthz"]
