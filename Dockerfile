# deconv gRPC server image.
#   build:  docker build -t deconv:0.1.0 .
#   run:    docker run --rm -p 50051:50051 deconv:0.1.0
# Stage 1 builds wheels of the project (extra "server") and of every dependency; stage 2 installs
# only those wheels, warms Numba's on-disk cache as the runtime user and runs the server.

########## builder: wheels only ##########
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY deconv_core/ deconv_core/
COPY client/ client/
COPY server/ server/
# numba, llvmlite, grpcio and numpy all have manylinux wheels: no compiler needed.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server]" \
    && sha256sum /wheels/*.whl > /wheels.sha256

########## runtime ##########
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="deconv" \
      org.opencontainers.image.description="gRPC service for N-d convolution and transposed convolution on a Numba CPU core" \
      org.opencontainers.image.licenses="Apache-2.0"

# libgomp1 provides GNU OpenMP, so Numba's "omp" threading layer can load. The slim image lacks
# it, and Numba would then fall back silently to "workqueue", which aborts the process when two
# threads enter parallel code at once. NUMBA_THREADING_LAYER=omp below makes that choice explicit:
# if libgomp ever goes missing, the build-time warm-up fails instead of the image shipping with
# workqueue. It is also the layer a developer machine with gcc loads, so tests and image agree.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 deconv \
    && useradd --system --uid 10001 --gid deconv --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin deconv

# Install from the builder's wheels only. They are bind-mounted, so they never land in a layer;
# a bind mount is not part of a RUN's cache key (buildah/podman reuse the old layer even when the
# wheels changed), so the list of their hashes is copied first: new wheels, new layer. It stays
# in the image as the record of what was installed.
COPY --from=builder /wheels.sha256 /usr/local/share/deconv/wheels.sha256
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/*.whl

# DECONV_*: the server's settings (0.0.0.0 so the published port reaches it).
# NUMBA_CACHE_DIR: Numba's compiled-kernel cache, warmed below and owned by the runtime user
# (Numba refuses to import a cache=True kernel if the cache directory is not writable).
# MALLOC_ARENA_MAX: freed tensor memory is reused instead of parked in per-thread arenas (the
# server also sets it at start-up; this covers the warm-up below).
ENV DECONV_HOST=0.0.0.0 \
    DECONV_PORT=50051 \
    MALLOC_ARENA_MAX=2 \
    NUMBA_THREADING_LAYER=omp \
    NUMBA_CACHE_DIR=/var/cache/deconv/numba \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN install -d -o deconv -g deconv -m 0755 /var/cache/deconv /var/cache/deconv/numba

USER 10001:10001

# Compile every kernel for float32 and float64 into the cache, as the runtime user, and prove the
# omp layer really loaded. The cache is keyed by CPU model: on a different CPU the server compiles
# again at start-up (it reports NOT_SERVING until warm; about 3 s per kernel).
RUN python -c "import deconv_core as c; s = c.warmup(); i = c.runtime_info(); \
print(f'numba cache warmed in {s:.1f} s; threading layer {i[\"threading_layer\"]}'); \
assert i['threading_layer'] == 'omp', i"

EXPOSE 50051

# Standard grpc.health.v1 check (SERVING only once the kernels are warm), via the server's probe.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec python -m deconv_server.healthcheck --timeout 4 --target 127.0.0.1:${DECONV_PORT}"]

CMD ["deconv-server"]
