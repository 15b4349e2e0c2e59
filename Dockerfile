# The Slices master. Build: docker build -t slices .
# Run:   docker run -p 8080:8080 -v slices-data:/data slices
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so they are cached apart from the project's own code.
# .cargo/config.toml holds the flags SQLite is built with.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
RUN mkdir -p src/bin && echo 'fn main() {}' > src/bin/slices.rs && echo 'fn main() {}' > src/bin/slices-agent.rs \
    && touch src/lib.rs && cargo build --release --locked --bin slices || true
COPY schema.sql ./
COPY src ./src
COPY templates ./templates
COPY static ./static
RUN touch src/lib.rs src/bin/*.rs && cargo build --release --locked --bin slices --bin slices-agent

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin slices \
    && mkdir -p /data && chown slices:slices /data
COPY --from=build /src/target/release/slices /src/target/release/slices-agent /usr/local/bin/
USER slices
ENV SLICES_DATA=/data SLICES_LISTEN=0.0.0.0:8080
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["slices", "healthcheck"]
ENTRYPOINT ["slices"]
CMD ["serve"]
