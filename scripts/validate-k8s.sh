#!/usr/bin/env bash
# Renders every overlay of deploy/kubernetes with `kubectl kustomize` and
# validates the result offline (no cluster): PyPI's kubernetes-validate
# checks each object against the schemas of the newest Kubernetes minor it
# ships (strict: unknown fields are errors), then scripts/check-k8s.py checks
# what the schemas cannot: the probes name routes of openapi.yaml, the grace
# period covers the shutdown timeout plus the linger, the startup budget
# covers a base backup, the pod is non-root with a read-only root file
# system, PGDATA lies in an emptyDir, and a PodDisruptionBudget covers it.
#
# Without kubectl the run is SKIPPED with a message, except under CI=true or
# COMPUTE_CTL_REQUIRE_K8S=1 (set by .ci/run), where that is a failure: no
# registry this project uses ships a kubectl whose kustomize renders these
# overlays (Debian 12's kubernetes-client is 1.20, with kustomize v2), so it
# is not installed here. kubernetes-validate is installed with pip when
# missing; `--deps` (run by `just deps`) only does that, and says whether
# kubectl is there.
set -euo pipefail
cd "$(dirname "$0")/.."

required() { [ "${CI:-}" = true ] || [ "${COMPUTE_CTL_REQUIRE_K8S:-}" = 1 ]; }
install_validator() {
    if ! command -v kubernetes-validate >/dev/null; then
        echo "installing kubernetes-validate (pip)"
        pip install --quiet kubernetes-validate
        hash -r
    fi
    command -v kubernetes-validate >/dev/null || {
        echo "kubernetes-validate is installed but not on PATH ($(python3 -m site --user-base)/bin?)" >&2
        exit 1
    }
}
kubectl_msg="kubectl is not installed: the Kubernetes manifests are not rendered (install kubectl >= 1.27, which brings kustomize v5)"

# Without kubectl: fail when required (saying $1 after the message),
# otherwise print $2.
no_kubectl() {
    if required; then
        echo "$kubectl_msg; CI / COMPUTE_CTL_REQUIRE_K8S=1 $1" >&2
        exit 1
    fi
    echo "$2"
}

if [ "${1:-}" = --deps ]; then
    install_validator
    command -v kubectl >/dev/null || no_kubectl "makes just k8s fail" "note: $kubectl_msg; just k8s will skip"
    exit 0
fi

if ! command -v kubectl >/dev/null; then
    no_kubectl "makes this a failure" "SKIPPED: $kubectl_msg"
    exit 0
fi
install_validator
version=$(kubernetes-validate --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p' | head -1)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
overlays=(deploy/kubernetes/overlays/*/)
[ ${#overlays[@]} -gt 0 ] || { echo "no overlays under deploy/kubernetes/overlays" >&2; exit 1; }
for dir in "${overlays[@]}"; do
    name=$(basename "$dir")
    kubectl kustomize "$dir" >"$out/$name.yaml"
    kubernetes-validate --strict --quiet "$out/$name.yaml"
    python3 scripts/check-k8s.py "$out/$name.yaml" openapi.yaml
    echo "deploy/kubernetes/overlays/$name: rendered, valid for Kubernetes ${version:-?} (strict), checks passed"
done
