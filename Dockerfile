# syntax=docker/dockerfile:1

# Build a static binary: the SQLite driver is pure Go, so CGO stays off.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/wamm-relay ./cmd/wamm-relay \
 && mkdir -p /out/data

# distroless/static has CA certificates and tzdata, no shell, and runs as
# the unprivileged "nonroot" user (uid 65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wamm-relay /usr/local/bin/wamm-relay
COPY --from=build --chown=65532:65532 /out/data /data
COPY config.toml /etc/wamm-relay/config.toml
USER 65532:65532
WORKDIR /data
ENV WAMM_RELAY_CONFIG=/etc/wamm-relay/config.toml
EXPOSE 8080
VOLUME ["/data"]
# No shell or curl in the image: the binary probes its own /healthz.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/wamm-relay", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wamm-relay"]
CMD ["serve"]
