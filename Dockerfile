# The production image of compute_ctl, for builders that reach a registry.
#
#   docker build -t compute_ctl .
#   docker run -p 3080:3080 -p 5432:5432 -v $PWD/fixtures/spec.json:/spec.json:ro compute_ctl \
#       -C postgresql://cloud_admin@127.0.0.1:5432/postgres -S /spec.json
#
# -D and -b default to the image's PGDATA and postgres (COMPUTE_CTL_PGDATA,
# COMPUTE_CTL_PGBIN below). Postgres listens on the -C host only (loopback, as
# the superuser is trusted there only); for spec roles to connect through the
# published port, the spec's cluster.settings sets listen_addresses = '*'.
#
# Without a registry (as on our build machines) use `just image` instead: it
# makes the runtime base with debootstrap and builds docker/Dockerfile.local,
# which copies a host-built binary in place of the build stage below.
ARG RUST_IMAGE=rust:1-bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# No RUN --mount cache: the file builds with BuildKit and the legacy builder alike.
RUN cargo build --release --locked --bin compute_ctl \
 && cp target/release/compute_ctl /usr/local/bin/compute_ctl

FROM ${BASE_IMAGE}
# compute_ctl makes its own data directory: no default cluster.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/compute_ctl.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*

# The postgres user gets a fixed uid and gid, 999 (Debian picks the next free
# system id), so that a pod can name it (deploy/kubernetes: runAsUser 999,
# runAsNonRoot); its files follow. Then the Unix socket directory Debian's
# Postgres uses, and a home for PGDATA.
RUN old="$(id -u postgres):$(id -g postgres)" \
 && groupmod -g 999 postgres && usermod -u 999 -g 999 postgres \
 && find / -xdev \( -uid "${old%:*}" -o -gid "${old#*:}" \) -exec chown -h postgres:postgres {} + \
 && install -d -m 2775 -o postgres -g postgres /var/run/postgresql \
 && install -d -m 0700 -o postgres -g postgres /var/lib/postgresql/compute

COPY --from=build /usr/local/bin/compute_ctl /usr/local/bin/compute_ctl

# What the postgres binary says about its settings (its listing, every base
# unit), asked once here, so that no container start spawns those processes
# beside its base backup (README, "The settings cache"). The postgres user
# may add the verdicts it learns later.
RUN compute_ctl --write-settings-cache -b /usr/lib/postgresql/15/bin/postgres \
 && chown -R postgres:postgres /var/cache/compute_ctl

ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin \
    COMPUTE_CTL_PGBIN=/usr/lib/postgresql/15/bin/postgres \
    COMPUTE_CTL_PGDATA=/var/lib/postgresql/compute/pgdata
USER postgres
WORKDIR /var/lib/postgresql
EXPOSE 3080 5432
# bash's /dev/tcp: the image needs no curl for its probe.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${COMPUTE_CTL_HTTP_PORT:-3080} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["compute_ctl"]
