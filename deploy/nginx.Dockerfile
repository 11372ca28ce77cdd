# nginx for deploy/compose.yaml and deploy/stack.yaml:
#   docker build -t aiogate-nginx -f deploy/nginx.Dockerfile deploy
#
# nginx.conf needs nginx >= 1.27.3: an upstream server with "resolve" is what lets
# nginx keep connections alive to replicas that come and go. BASE_IMAGE is either an
# image that has such an nginx (the default: the official image), or a Debian-based
# image whose release packages one, into which it is installed: Debian forky has
# 1.30 (bookworm's 1.22 and trixie's 1.26 are too old). tests/docker_deploy.py
# builds it on a local Debian forky image where no image registry is reachable.
ARG BASE_IMAGE=nginx:1.28
FROM ${BASE_IMAGE}
RUN if ! command -v nginx >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends nginx \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && nginx -v
COPY nginx.conf /etc/nginx/nginx.conf
# Fails the build on an nginx that is too old ('invalid parameter "resolve"').
RUN nginx -t
EXPOSE 80
# SIGQUIT: nginx finishes the requests in flight before it exits.
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
