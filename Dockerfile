# syntax=docker/dockerfile:1
# One image for every live-viewer-profiles process; the command picks the service:
#   docker build -t live-viewer-profiles .
#   docker run --rm -p 9090:9090 live-viewer-profiles collector     # = lvp collector
#   ... profiles | viewer | tracker-site | topics create | tables create
# Base images are pinned to exact versions (bump them deliberately).

# --- 1. the demo player page (tracker-frontend/dist) --------------------------------------------
FROM node:20.19.0-bookworm-slim AS frontend
WORKDIR /build/tracker-frontend
COPY tracker-frontend/package.json tracker-frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tracker-frontend/ ./
RUN npm run build && test -f dist/index.html

# --- 2. Python dependencies, resolved from pyproject.toml into a venv -----------------------------
FROM python:3.11.13-slim-bookworm AS python-deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lvp/ lvp/
COPY collector/ collector/
COPY profiles/ profiles/
COPY viewer/ viewer/
# Install the project to resolve its dependencies, then drop the project itself: the code runs
# from /app (PYTHONPATH) so that paths relative to the source tree (tracker-frontend/dist) work.
# No extras: the `local` extra (embedded broker, moto) and `dev` are for local runs and tests.
RUN pip install . && pip uninstall -y live-viewer-profiles

# --- 3. runtime ------------------------------------------------------------------------------------
FROM python:3.11.13-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="live-viewer-profiles" \
      org.opencontainers.image.description="Snowplow-compatible live viewer profiles: collector, profiles consumer, viewer API." \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 lvp \
 && useradd --system --uid 10001 --gid lvp --home-dir /app --no-create-home --shell /usr/sbin/nologin lvp
COPY --from=python-deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml ./
COPY lvp/ lvp/
COPY collector/ collector/
COPY profiles/ profiles/
COPY viewer/ viewer/
# static pages served relative to the source tree: the live page and the built player page
COPY viewer-frontend/ viewer-frontend/
COPY --from=frontend /build/tracker-frontend/dist/ tracker-frontend/dist/
# The `lvp` console script, running the code in /app; compile once as root (the app user
# cannot write /app).
RUN printf '#!/opt/venv/bin/python\nimport sys\n\nfrom lvp.cli import main\n\nsys.exit(main())\n' \
      > /opt/venv/bin/lvp \
 && chmod 0755 /opt/venv/bin/lvp \
 && /opt/venv/bin/python -m compileall -q /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LVP_COLLECTOR_HOST=0.0.0.0 \
    LVP_VIEWER_HOST=0.0.0.0 \
    LVP_STATE_DIR=/tmp/lvp
USER 10001:10001
EXPOSE 9090 9091 8080 3000
# Probes whichever of this container's endpoints exists (collector/viewer /health, profiles
# /metrics); compose and ECS set an explicit URL per service.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "lvp.healthcheck"]
ENTRYPOINT ["lvp"]
CMD ["--help"]
