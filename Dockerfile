# One image for the ipamd DaemonSet, its install-cni init container and the controller.
# Not published yet; build it yourself (see deploy/README.md).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 make build BIN=/out

FROM debian:bookworm-slim
# iproute2: install.sh probes kernel link types and reports the RDMA netns mode
RUN apt-get update && apt-get install -y --no-install-recommends iproute2 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /opt/underpool/bin/
COPY install.sh /opt/underpool/install.sh
ENTRYPOINT ["/opt/underpool/bin/ipamd"]
