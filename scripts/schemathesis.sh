#!/usr/bin/env bash
# Runs schemathesis against the live compute_ctl binary on real Postgres 15,
# twice: with Neon's contract (../shared/fixtures/neon/openapi_spec.yaml,
# limited to the routes both implement, a null read as an absent field) and
# with our own openapi.yaml. Required of every response: no 5xx, a declared
# status code and content type, a body that matches the schema.
#
# Phase 1 tests every route but /terminate on a running compute; phase 2
# then tests /terminate alone (the first call stops the compute, the later
# ones are answered 201 while the HTTP server lingers).
#
# schemathesis runs in a temporary directory (its cache stays out of the
# checkout). Environment: COMPUTE_CTL_TEST_PORTS (ports are taken from its top end),
# COMPUTE_CTL_NEON_FIXTURES / COMPUTE_CTL_REQUIRE_NEON_FIXTURES (as the
# tests), PGBIN_DIR, SCHEMATHESIS_MAX_EXAMPLES (default 25).
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin_dir=${PGBIN_DIR:-/usr/lib/postgresql/15/bin}
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-25}
range=${COMPUTE_CTL_TEST_PORTS:-58000-58999}
hi=${range#*-}

if ! command -v schemathesis >/dev/null; then
    echo "installing schemathesis (pip)"
    pip install --quiet "schemathesis>=4,<5"
    hash -r
fi

neon_doc=""
for d in "${COMPUTE_CTL_NEON_FIXTURES:-}" ../shared/fixtures/neon; do
    if [ -n "$d" ] && [ -f "$d/openapi_spec.yaml" ]; then neon_doc="$d/openapi_spec.yaml"; break; fi
done
if [ -z "$neon_doc" ]; then
    msg="Neon's openapi_spec.yaml is missing (looked in \${COMPUTE_CTL_NEON_FIXTURES} and ../shared/fixtures/neon); set COMPUTE_CTL_NEON_FIXTURES (see README, \"Neon's fixtures\")"
    if [ "${COMPUTE_CTL_REQUIRE_NEON_FIXTURES:-}" = 1 ]; then
        echo "$msg; COMPUTE_CTL_REQUIRE_NEON_FIXTURES=1 makes this a failure" >&2
        exit 1
    fi
    echo "SKIPPED (Neon's contract run only): $msg"
fi

cargo build --quiet --bin compute_ctl
work=$(mktemp -d)
chmod 755 "$work"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
shared_paths=(/status /metrics /metrics.json /dbs_and_roles /configure /insights /database_schema /check_writability)

# Starts compute_ctl on fixtures/spec.json with ports $1 (Postgres) and $2 (HTTP).
start() {
    local pg=$1 http=$2 log=$work/compute_ctl-$2.log
    rm -rf "$work/pgdata"
    target/debug/compute_ctl -D "$work/pgdata" -C "postgresql://cloud_admin@127.0.0.1:$pg/postgres" \
        -b "$pgbin_dir/postgres" --http-host 127.0.0.1 --http-port "$http" --no-internal-http -S fixtures/spec.json \
        --terminated-linger-secs 60 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        if curl -fsS "http://127.0.0.1:$http/status" 2>/dev/null | grep -q '"status":"running"'; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "compute_ctl did not reach running within 60 s; its log:" >&2
    cat "$log" >&2
    exit 1
}

stop() {
    if [ -n "$pid" ]; then
        kill -INT "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}

# run NAME DOC PORT_OFFSET TERMINATE_MODE EXTRA_PATH...: phase 1 on the
# shared routes and the extra ones, phase 2 on /terminate with data
# generation mode TERMINATE_MODE.
run() {
    local name=$1 doc=$2 off=$3 terminate_mode=$4
    shift 4
    local pg=$((hi - off)) http=$((hi - off - 1))
    local include=()
    for p in "${shared_paths[@]}" "$@"; do include+=(--include-path "$p"); done
    echo "== schemathesis: $name, every shared route but /terminate =="
    start "$pg" "$http"
    (cd "$work" && schemathesis --no-color run "$doc" --url "http://127.0.0.1:$http" --checks "$checks" \
        "${include[@]}" --workers 1 --max-examples "$max_examples" --seed 1 \
        --request-timeout 60) || { tail -n 30 "$work/compute_ctl-$http.log" >&2; exit 1; }
    echo "== schemathesis: $name, /terminate =="
    (cd "$work" && schemathesis --no-color run "$doc" --url "http://127.0.0.1:$http" --checks "$checks" \
        --include-path /terminate --mode "$terminate_mode" --workers 1 --max-examples 5 --seed 1 \
        --request-timeout 60) || { tail -n 30 "$work/compute_ctl-$http.log" >&2; exit 1; }
    stop
}

if [ -n "$neon_doc" ]; then
    python3 scripts/neon_contract_nullable.py "$neon_doc" "$work/neon_openapi.yaml"
    # Positive data only for /terminate: Neon's contract declares no 4xx for
    # a `mode` outside its enum (Neon's own server answers 400 there, as we do
    # and as our openapi.yaml declares).
    run "Neon's contract" "$work/neon_openapi.yaml" 0 positive
fi
run "our openapi.yaml" "$PWD/openapi.yaml" 2 all /health /ready /hadron_liveness_probe
echo "schemathesis: both runs green"
