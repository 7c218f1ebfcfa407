# syntax=docker/dockerfile:1
# The reconciler image: one console script, `reconciler`, for both containers of the pod
# (`reconciler run ...` the operator, `reconciler api ...` the sidecar).
#
#   docker build -t reconciler:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the project's wheel and the wheels of all its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY . .
RUN pip wheel --wheel-dir /wheels .

# --- final: the wheels installed, no build tools, no sources -------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 reconciler \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/reconciler --create-home \
       --shell /usr/sbin/nologin reconciler
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels reconciler
USER 10001:10001
WORKDIR /home/reconciler
# The sidecar (`reconciler api --port 8080`); Kopf's liveness endpoint is on 8081 when enabled.
EXPOSE 8080
ENTRYPOINT ["reconciler"]
CMD ["run", "-A"]
