# syntax=docker/dockerfile:1
#
# mautic-sync container image: a static binary on distroless, running as the
# image's nonroot user (65532). Build and push:
#
#   docker build -t registry.example.com/mautic-sync:0.1.0 .
#   docker push registry.example.com/mautic-sync:0.1.0
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ... (the
# builder cross-compiles, no emulation needed). Kubernetes manifests: deploy/.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/mautic-sync ./cmd/mautic-sync

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mautic-sync /mautic-sync
USER nonroot
# HTTP_ADDR: /healthz, /readyz, /metrics.
EXPOSE 8080
ENTRYPOINT ["/mautic-sync"]
CMD ["run"]
