# incidentbot container image: a static binary on distroless (CA certificates
# and tzdata included, no shell), running as the non-root user the Helm
# chart's securityContext expects (65532).
#
#   make image                       # docker build -t incidentbot:$(VERSION) .
#   docker run -p 8080:8080 -e INCIDENTBOT_ALERTMANAGER_BEARER_TOKEN=... incidentbot:dev
#
# The webhook refuses to start on a non-loopback address without a bearer
# token or basic auth; see deploy/incidentbot.example.yaml.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/incidentbot ./cmd/incidentbot \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/incidentbot /usr/local/bin/incidentbot
# Owned by the runtime user: a fresh volume is initialised from it.
COPY --from=build --chown=65532:65532 /out/data /var/lib/incidentbot
USER 65532:65532
# The embedded NATS JetStream store; mount a volume to keep incidents and
# unprocessed events across restarts.
VOLUME /var/lib/incidentbot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/incidentbot"]
CMD ["serve", "--listen=0.0.0.0:8080", "--data-dir=/var/lib/incidentbot"]
