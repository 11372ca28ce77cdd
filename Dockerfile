# aiogate in front of a WSGI app. Build:   docker build -t aiogate .
# Run the demo app:                       docker run -p 8000:8000 aiogate
# Read-only, as in production:            docker run --read-only --tmpfs /tmp -p 8000:8000 aiogate
# Everything is configured by AIOGATE_* variables (see the README).
#
# Your app on top (dependencies go into the image's virtualenv, which belongs to root,
# so the install step runs as root and the image then drops back to the app's user):
#   FROM aiogate
#   USER root
#   COPY . /app
#   RUN pip install --no-cache-dir -r /app/requirements.txt
#   USER 10001:10001
#   ENV AIOGATE_APP=myproject.wsgi:application
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
# (externally managed), and it keeps the image's Python untouched. It belongs to root:
# the server's user can read and run the code but not change it (an app image installs
# its dependencies as root, see above). User and group have fixed numeric ids, so
# Kubernetes can check runAsNonRoot and a volume's owner can be set to match.
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/aiogate \
    && /opt/aiogate/bin/pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 aiogate \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --create-home aiogate
ENV PATH=/opt/aiogate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIOGATE_APP=aiogate.demo:app \
    AIOGATE_APP_DIR=/app \
    AIOGATE_HOST=0.0.0.0 \
    AIOGATE_PORT=8000 \
    AIOGATE_LIVENESS_PATH=/livez \
    AIOGATE_READINESS_PATH=/readyz \
    AIOGATE_METRICS_PATH=/metrics \
    AIOGATE_TIMEOUT_GRACEFUL_SHUTDOWN=8
# The drain fits the 10 s that docker stop and Swarm's stop_grace_period give by
# default: 8 s, plus the 1.2 s the process takes to exit after it (measured by
# tests/test_docker.py), is under 10 s. Raise it together with the stop timeout
# (docker stop --time, stop_grace_period, terminationGracePeriodSeconds).
WORKDIR /app
# Numeric, not the name: the kubelet can only check runAsNonRoot on a numeric user.
USER 10001:10001
EXPOSE 8000
# aiogate drains on SIGTERM (what docker stop and Kubernetes send) and exits 0.
STOPSIGNAL SIGTERM
# `aiogate check` reads the settings the server reads (AIOGATE_* variables and the
# settings file in /app), so it asks wherever the server listens: AIOGATE_BIND or
# AIOGATE_PORT, a UNIX socket, HTTPS when AIOGATE_SSL_CERTFILE is set (any
# certificate: it checks the server is alive, not who it is). The liveness endpoint
# is answered by the event loop, so it works while every app thread is busy; it fails
# only when every thread is stuck (Swarm then replaces the container). Readiness is
# for load balancers and Kubernetes, which take a busy replica out of rotation.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["aiogate", "check"]
# Exec form: aiogate is PID 1 and gets the signals itself (no shell in between).
ENTRYPOINT ["aiogate", "serve"]
