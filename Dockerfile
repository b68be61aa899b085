# syntax=docker/dockerfile:1
# modelgate: the gateway binary, ONNX Runtime 1.31.1 and the demo registry (docs/docker.md).
# Closed by default: it needs bearer tokens (their SHA-256 hashes) to start.
#   docker build -t modelgate .
#   TOKEN=$(openssl rand -hex 32); HASH=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
#   docker run --rm -p 8080:8080 \
#     -e MODELGATE_TOKENS="[{name: me, sha256: '$HASH', scopes: [query, manage]}]" modelgate

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- ONNX Runtime: libonnxruntime.so from the onnxruntime wheel on PyPI (Debian has no package),
# the same file scripts/fetch-onnxruntime.sh takes.
FROM ${RUNTIME_IMAGE} AS onnxruntime
ARG ORT_VERSION=1.31.1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Build-stage tools only; the runtime image never has them, so unpinned versions are fine here.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip unzip ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/ort
# 1.31.1's Linux x86_64 wheels are tagged manylinux_2_28 (glibc 2.28; bookworm has 2.36).
RUN python3 -m pip download --no-cache-dir --disable-pip-version-check --no-deps \
      --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 \
      --dest /tmp/ort "onnxruntime==${ORT_VERSION}" \
 && unzip -j onnxruntime-*.whl "onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" -d /opt/onnxruntime \
 && rm -f onnxruntime-*.whl \
 && test -s "/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION}"

# --- The gateway binary (the workspace's load-test tools are not built).
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin modelgate \
 && install -D -m 0755 target/release/modelgate /out/modelgate

# --- Runtime: the binary, ONNX Runtime, the demo registry and config, a non-root user.
FROM ${RUNTIME_IMAGE}
ARG ORT_VERSION=1.31.1
# Debian bookworm's security updates move these versions; the base tag pins the release.
# libstdc++6/libgcc-s1 are what libonnxruntime.so needs besides glibc; curl is for HEALTHCHECK.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgcc-s1 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 modelgate \
 && useradd --system --uid 10001 --gid modelgate --home-dir /srv/modelgate \
      --no-create-home --shell /usr/sbin/nologin modelgate \
 && install -d -o modelgate -g modelgate -m 0755 /srv/modelgate /srv/modelgate/inference-tables
COPY --from=onnxruntime /opt/onnxruntime /opt/onnxruntime
COPY --from=builder /out/modelgate /usr/local/bin/modelgate
# The working directory is the user's: registry.path (models) and inference_log.location
# (inference-tables) are relative to it, and so is data_dir (.modelgate: the control plane's
# state file, the MLflow download cache).
WORKDIR /srv/modelgate
COPY --chown=modelgate:modelgate models ./models
COPY --chown=modelgate:modelgate config ./config
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION}
# Closed by default: the CMD listens on 0.0.0.0, so every route but health and /metrics needs
# a bearer token, and the gateway refuses to start with no token (from $MODELGATE_TOKENS or
# auth.tokens_file). An open demo is said explicitly (docs/docker.md):
#   -e MODELGATE__AUTH__ENABLED=false -e MODELGATE__AUTH__ALLOW_ANONYMOUS=true
# The environment overrides the config file: a mounted config's auth.enabled does not turn this off.
ENV MODELGATE__AUTH__ENABLED=true
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:8080/livez || exit 1"]
ENTRYPOINT ["modelgate"]
CMD ["serve", "--config", "config/demo.yaml", "--listen", "0.0.0.0:8080"]
