# syntax=docker/dockerfile:1
#
# One image with the three durable-comfy binaries: worker (the entrypoint),
# starter (the CLI) and comfysim (the ComfyDeploy simulator, for trials).
# One build, one tag to promote, and the CLI and the simulator always match
# the worker they are used with; run another binary with --entrypoint.
#
#   docker build -t durable-comfy:dev --build-arg VERSION=$(git describe --always) .
#   docker run --rm -e COMFY_API_KEY=... -e TEMPORAL_ADDRESS=... durable-comfy:dev
#   docker run --rm --entrypoint starter durable-comfy:dev -h
#
# The binaries are static (CGO_ENABLED=0), so the runtime base holds only CA
# certificates, time zone data and a non-root user: no shell, no package
# manager. Bases are pinned by tag; to pin by digest as well, append
# @sha256:... from `docker buildx imagetools inspect <image>` and let your
# dependency bot move it. cmd/worker's compose test checks that GO_VERSION
# follows go.mod.

ARG GO_VERSION=1.26.8

# Built on the build machine's own platform and cross-compiled for the
# target, so a multi-platform build (--platform linux/amd64,linux/arm64)
# needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
# -trimpath drops local paths from the binaries; -s -w drops the symbol
# table and DWARF (stack traces keep function names and lines);
# -buildvcs=false because .git is not in the build context.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w" -o /out/ \
        ./cmd/worker ./cmd/starter ./cmd/comfysim

FROM gcr.io/distroless/static-debian13:nonroot
# The binaries print no version of their own; the image carries it.
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="durable-comfy" \
      org.opencontainers.image.description="Durable ComfyDeploy runs on Temporal: worker, starter CLI and simulator" \
      org.opencontainers.image.source="https://github.com/durable-comfy/durable-comfy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/worker /out/starter /out/comfysim /usr/local/bin/
# nonroot (65532) owns its home directory, where the default local output
# store (COMFY_OUTPUT_DIR=out) would land; deployments use an object store.
USER 65532:65532
WORKDIR /home/nonroot
# The worker's webhook endpoint (COMFY_WEBHOOK_LISTEN, default :8089).
EXPOSE 8089
ENTRYPOINT ["/usr/local/bin/worker"]
