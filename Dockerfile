# syntax=docker/dockerfile:1
# One image for every footfall subcommand: collector, processor, projector, migrate, topics, replay, lag, sql, api.
#   docker build -t footfall:0.1.0 .
#   docker run --rm footfall:0.1.0 --help
# Python packages come from uv.lock (hashes checked), exactly as `make install` installs them; only the runtime
# dependencies (no test or bench extras). See docs/operations.md, "The image".
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

# The front-end assets footfall serves itself (the console, analytics-next for the collector), from web/package-lock.json.
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM ${PYTHON_IMAGE} AS build
ENV UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PROJECT_ENVIRONMENT=/opt/footfall
WORKDIR /src
COPY deploy/requirements-uv.txt deploy/requirements-uv.txt
RUN python -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir --require-hashes -r deploy/requirements-uv.txt
# Dependencies first (cached while only the code changes), then the project itself, not editable.
COPY pyproject.toml uv.lock README.md ./
RUN /opt/uv/bin/uv sync --locked --no-install-project --no-editable --python /usr/local/bin/python
# Every package the project ships (pyproject's packages.find decides); .dockerignore leaves out tests, bench, deploy.
COPY . .
RUN /opt/uv/bin/uv sync --locked --no-editable --python /usr/local/bin/python

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 footfall \
 && useradd --system --uid 10001 --gid footfall --home-dir /var/lib/footfall --create-home footfall
COPY --from=build /opt/footfall /opt/footfall
COPY --from=web /web/node_modules /opt/footfall-web/node_modules
ENV PATH=/opt/footfall/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FOOTFALL_DATA_DIR=/var/lib/footfall \
    FOOTFALL_WEB_ASSETS_DIR=/opt/footfall-web/node_modules \
    FOOTFALL_API_HOST=0.0.0.0 \
    FOOTFALL_COLLECTOR_HOST=0.0.0.0 \
    FOOTFALL_READ_API_HOST=0.0.0.0 \
    FOOTFALL_PROCESSOR_METRICS_HOST=0.0.0.0
WORKDIR /var/lib/footfall
USER 10001:10001
# collector, api, projector's read API and metrics, processor metrics
EXPOSE 8080 8000 8090 9101
ENTRYPOINT ["footfall"]
CMD ["--help"]
