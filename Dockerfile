# aiogate in front of a WSGI app. Build:   docker build -t aiogate .
# Run the demo app:                       docker run -p 8000:8000 aiogate
# Your app, as a base image:              FROM aiogate / COPY . /app / ENV AIOGATE_APP=...
# Everything is configured by AIOGATE_* variables (see the README).
#
# PYTHON_IMAGE: any Debian-based image with python3, venv and pip (the official
# python:3.x-slim images, or a local one where no registry is reachable).
ARG PYTHON_IMAGE=python:3.12-slim

# -- build: a wheel of aiogate ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aiogate ./aiogate
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- runtime: the wheel in a virtualenv, run as a non-root user ----------------------
FROM ${PYTHON_IMAGE}
# A virtualenv, not the system site-packages: Debian's pip refuses to install there
# (externally managed), and it keeps the image's Python untouched.
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/aiogate \
    && /opt/aiogate/bin/pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app --create-home aiogate
ENV PATH=/opt/aiogate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIOGATE_APP=aiogate.demo:app \
    AIOGATE_APP_DIR=/app \
    AIOGATE_HOST=0.0.0.0 \
    AIOGATE_PORT=8000 \
    AIOGATE_LIVENESS_PATH=/livez \
    AIOGATE_READINESS_PATH=/readyz \
    AIOGATE_METRICS_PATH=/metrics
WORKDIR /app
USER aiogate
EXPOSE 8000
# aiogate drains on SIGTERM (what docker stop and Kubernetes send) and exits 0.
STOPSIGNAL SIGTERM
# Slim images have no curl: ask the liveness endpoint with Python itself. It is
# answered by the event loop, so it works while every app thread is busy; it fails
# only when every thread is stuck (Swarm then replaces the container). Readiness is
# for load balancers and Kubernetes, which take a busy replica out of rotation.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s%s' % (os.environ.get('AIOGATE_PORT', '8000'), os.environ.get('AIOGATE_LIVENESS_PATH', '/livez')), timeout=2)"]
# Exec form: aiogate is PID 1 and gets the signals itself (no shell in between).
ENTRYPOINT ["aiogate", "serve"]
