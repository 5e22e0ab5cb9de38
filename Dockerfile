# Builds the pylon image from Debian 12 packages only (no downloads besides apt).
# The Helm chart (charts/) runs this image as the Gateway pod.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config libev-dev libssl-dev node-llhttp libnghttp2-dev \
      libyaml-dev libjansson-dev libcurl4-openssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build /build --target pylon

FROM debian:12-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libev4 libssl3 libnghttp2-14 libyaml-0-2 libjansson4 libcurl4 ca-certificates \
      && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/pylon /usr/local/bin/pylon
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pylon"]
CMD ["--help"]
