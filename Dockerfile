# syntax=docker/dockerfile:1
# One image for every process of the Procfile: the Deployments under deploy/kubernetes/ start each with its own
# `python -m …` command (README, "Running it on Kubernetes"). Build: `docker build -t vy-finance-payments .`
# Checked by tests/test_dockerfile.py (dockerfile-parse, checkov): no Docker engine is needed for that.

# The base is the Python the locks target (3.11); a release pipeline pins it by digest (`…@sha256:…`).
# --- build: the runtime's locked wheels into a virtualenv, every file checked against its hash ---
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.txt requirements.lock requirements-dev.lock ./
# uv, itself installed from its hashed pin, installs requirements.txt with requirements.lock as constraints: the
# runtime only (not the zero-setup stand-ins the lock also holds), each file checked against the lock's hashes.
RUN awk '/^uv==/{p=1;print;next} p&&/^ /{print;next} {p=0}' requirements-dev.lock > uv.lock \
    && python -m pip install --no-cache-dir --require-hashes -r uv.lock \
    && python -m venv /opt/venv \
    && python -m uv pip install --no-cache --python /opt/venv/bin/python --require-hashes \
        -r requirements.txt -c requirements.lock
COPY . /app
RUN python -m compileall -q /app

# --- run: the virtualenv and the source, no compiler, no package cache, not root ---
FROM python:3.11-slim-bookworm AS run
LABEL org.opencontainers.image.title="vy-finance-payments" \
      org.opencontainers.image.description="Payments microservice: REST, Kafka and Socket.IO doors, Celery workers"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    APP_PORT=8080
RUN groupadd --system --gid 10001 payments \
    && useradd --system --uid 10001 --gid payments --home-dir /app --shell /usr/sbin/nologin payments
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=root:root /app /app
WORKDIR /app
# var/ holds beat's schedule; on Kubernetes it and /tmp are emptyDir volumes (the root filesystem is read-only).
RUN mkdir -p /app/var && chown payments:payments /app/var
USER 10001:10001
EXPOSE 8080 8090 9101 9102 9103 9104
# The web process's liveness: /healthz answers without a key. The other processes are probed by Kubernetes on
# their own ports (deploy/kubernetes/), which a Docker HEALTHCHECK cannot tell apart.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('APP_PORT', '8080'), timeout=4)"]
# The Procfile's `web`; every other process overrides the command (deploy/kubernetes/base/*.yaml).
CMD ["python", "-m", "gunicorn", "-c", "gunicorn.conf.py", "api:create_app()"]
