# syntax=docker/dockerfile:1
# Cronlet image: the operator (`cronlet operator`, the default command) and the executor
# (`cronlet-execute`, run by the Jobs the operator creates) share this one image.
#
#   docker build -t cronlet:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# tools/check-dockerfile.sh lints this file and replays its install steps without a container engine.
# Keep both stages on the same base image: the venv's interpreter is a symlink into the base's Python.

FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel build reads; .dockerignore keeps the rest of the checkout out of the context.
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY handlers ./handlers
# Both distributions: the handler side (./handlers: SDK, executor, built-in handlers) and the operator with
# its kafka extra (aiokafka), so that the image can publish task events to Kafka (--events-kafka-*).
# Written "./[kafka]", not ".[kafka]": hadolint takes the latter for an unpinned PyPI package (DL3013).
# pip compiles the installed modules to .pyc here, at build time, so nothing is written at runtime.
RUN pip install --no-cache-dir ./handlers "./[kafka]"


FROM python:3.11-slim

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="cronlet" \
      org.opencontainers.image.description="Kubernetes operator that runs scheduled tasks as Jobs; also the default executor image." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

COPY --from=builder /opt/venv /opt/venv

# Read-only root filesystem friendly: no .pyc writes, unbuffered logs, and a HOME that nothing writes to.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/nonexistent

# Numeric, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 65532:65532

# The operator's metrics, /healthz and /readyz (--metrics-port).
EXPOSE 8080

# No ENTRYPOINT: executor Jobs set `command: ["cronlet-execute"]` on the same image.
CMD ["cronlet", "operator"]
