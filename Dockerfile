# berth as a container image: the one binary on a distroless runtime
# (glibc, CA certificates, no shell), run as a non-root user, data in a
# volume, health-checked on /livez by the binary itself.
#
# From source (needs network for the Rust image and crates.io):
#
#   docker build -t berth .
#
# From a binary built on the host (offline; any Debian 12 glibc build):
#
#   cargo build --release --locked --bin berth
#   docker build --build-arg BERTH_FROM=prebuilt -t berth .
#
# Run (see docs/operations.md, "Container image"):
#
#   docker run -d --name berth -p 5000:5000 -v berth-data:/data \
#       -e BERTH_ADMIN_PASSWORD=change-me-now berth
#
# Only the stages the image needs are built (BuildKit: the default builder
# of Docker 23+, `DOCKER_BUILDKIT=1` on older ones; podman and buildah do
# the same), so a prebuilt build never pulls the Rust image.
#
# Build arguments:
#   BERTH_FROM     `source` (default) or `prebuilt`
#   BERTH_BINARY   with `prebuilt`: the binary, relative to the build
#                  context [default: target/release/berth]
#   RUNTIME_IMAGE  the runtime base: glibc, libgcc, CA certificates and a
#                  `nonroot` user 65532 [default: distroless cc, Debian 12]
#   RUST_IMAGE     the build stage's image [default: rust:1-bookworm]

ARG BERTH_FROM=source
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# The binary compiled here, with the same glibc as the runtime (Debian 12).
FROM ${RUST_IMAGE} AS source
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin berth \
    && install -D -m 0755 target/release/berth /out/berth \
    && mkdir -p /out/data

# Or the binary the host built (`target/release/berth`).
FROM scratch AS prebuilt
WORKDIR /out/data
ARG BERTH_BINARY=target/release/berth
COPY ${BERTH_BINARY} /out/berth

FROM ${BERTH_FROM} AS binary

FROM ${RUNTIME_IMAGE}
COPY --from=binary /out/berth /usr/local/bin/berth
# The volume's mount point belongs to the user berth runs as, so a new
# named volume starts out writable for it.
COPY --from=binary --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV BERTH_LISTEN=0.0.0.0:5000 \
    BERTH_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 5000
# `berth healthcheck` reads the same settings as `berth serve` (flags,
# BERTH_* variables, BERTH_CONFIG) to find its listener, and asks /livez.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/berth", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve"]
