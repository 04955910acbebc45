# syntax=docker/dockerfile:1
#
# rlmd: build on Debian 12 (bookworm), whose python3 is CPython 3.11, and run on the same
# release, so the libpython3.11 that pyo3 links at build time is the one loaded at run time,
# along with Debian's python3-numpy and python3-pandas.
#
#   docker build -t rlmd .
#   docker run --rm -p 8080:8080 -v rlmd-data:/data -e OPENAI_API_KEY=... rlmd

########################################################################################
# Builder
########################################################################################
FROM rust:1-bookworm AS builder

# pyo3 links against libpython3.11 (python3-dev brings libpython3.11-dev and the headers).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-dev \
    && rm -rf /var/lib/apt/lists/*

ENV PYO3_PYTHON=/usr/bin/python3.11
WORKDIR /build

# 1. Dependencies only: the manifest, the lock file and the cargo config, with a stub for
#    every target the manifest declares or cargo would look for (src/main.rs, src/lib.rs and
#    any [[bin]], [[bench]], [[test]] or [[example]]), so this layer stays cached until
#    Cargo.toml, Cargo.lock or .cargo/ change.
COPY Cargo.toml Cargo.lock ./
COPY .cargo/ .cargo/
RUN python3 - <<'EOF'
import pathlib
import tomllib

manifest = tomllib.loads(pathlib.Path("Cargo.toml").read_text())
package = manifest["package"]["name"]
stubs = {
    manifest.get("lib", {}).get("path", "src/lib.rs"): "",
    "src/main.rs": "fn main() {}\n",
}
folders = {"bin": "src/bin", "bench": "benches", "test": "tests", "example": "examples"}
for kind, folder in folders.items():
    for target in manifest.get(kind, []):
        if "path" in target:
            path = target["path"]
        elif kind == "bin" and target["name"] == package:
            path = "src/main.rs"
        else:
            path = f"{folder}/{target['name']}.rs"
        stubs.setdefault(path, "fn main() {}\n")
for path, text in stubs.items():
    file = pathlib.Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    print("stub:", path)
EOF
RUN cargo build --release --locked --bin rlmd \
    && rm -rf src \
        target/release/.fingerprint/rlmd-* \
        target/release/deps/rlmd-* \
        target/release/deps/librlmd-* \
        target/release/rlmd target/release/rlmd.d \
        target/release/librlmd.*

# 2. The crate itself. The migrations are embedded at compile time (sqlx::migrate!). The
#    stubs for benches/tests/examples stay: the release binary needs none of them.
COPY build.rs ./
COPY src/ src/
COPY migrations/ migrations/
RUN cargo build --release --locked --bin rlmd \
    && ./target/release/rlmd --version

########################################################################################
# Runtime
########################################################################################
FROM debian:bookworm-slim AS runtime

# python3 / libpython3.11: the interpreter rlmd embeds in its REPL children;
# numpy and pandas: for the code the model writes there;
# ca-certificates: TLS to the model providers;
# tini: PID 1, forwards SIGTERM to rlmd and reaps the REPL children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 \
        libpython3.11 \
        python3-numpy \
        python3-pandas \
        ca-certificates \
        tini \
    && rm -rf /var/lib/apt/lists/*

# The server runs as the container's root so that it can give each REPL child a user id of
# its own (RLM_REPL_UID_BASE..): the kernel then keeps REPLs away from the server and from
# each other, and every process a REPL starts can be found and stopped. The REPLs themselves
# run unprivileged, under Landlock and seccomp. docker-compose.yml drops every capability the
# server does not need. The data directory is the server's alone.
RUN mkdir -p /data && chmod 0700 /data

COPY --from=builder /build/target/release/rlmd /usr/local/bin/rlmd

ENV RLM_BIND=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/rlmd.db \
    RLM_SCRATCH_DIR=/tmp/rlmd

VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080

# curl is not installed; python3 is. The port follows RLM_BIND; urlopen raises (exit 1)
# on a refused connection, a timeout or a non-2xx answer: /readyz answers 503 when the
# database is down or REPL children cannot start (a container that cannot run code is
# not healthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('RLM_BIND', ':8080').rsplit(':', 1)[-1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4)"]

ENTRYPOINT ["tini", "--", "rlmd"]
CMD ["serve"]
