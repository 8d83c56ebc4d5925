#!/usr/bin/env python3
"""Checks deploy/compose.yaml without Docker.

  scripts/check-compose.py [COMPOSE_FILE]          (default deploy/compose.yaml)

- every service it references (depends_on, links, extends, network_mode/volumes_from
  "service:x", Prometheus scrape targets) exists, and every named volume is declared;
- every file or directory it mounts (and every build context and Dockerfile) exists;
- every Gangway config it mounts passes `$GANGWAY_BIN --check` (default target/debug/gangway)
  with the environment compose would give that service (${VAR:-default} interpolated from the
  caller's environment and an .env file beside the compose file), and the flags of a
  `gangway ...` healthcheck are in the binary's --help;
- the Prometheus config it mounts loads only rule files that are mounted too;
- every Grafana dashboard JSON it mounts parses, its panels have queries, the dashboard
  provider's folder holds it, and the datasource it defaults to is provisioned;
- `docker compose config -q` (or `docker-compose config -q`) accepts the file, when either is
  installed.

Prints one line per check (ok / FAIL / skip); exits 1 if any check failed.
PyYAML is installed into .venv when the running Python lacks it.
"""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    import yaml
except ImportError:
    venv_python = ROOT / ".venv" / "bin" / "python"
    if os.environ.get("CHECK_COMPOSE_IN_VENV"):
        sys.exit("check-compose: PyYAML is missing from .venv and could not be installed")
    if not venv_python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ROOT / ".venv")], check=True)
    if subprocess.run([str(venv_python), "-c", "import yaml"], capture_output=True).returncode:
        print("check-compose: installing PyYAML into .venv", file=sys.stderr)
        subprocess.run([str(venv_python), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "pyyaml"], check=True)
    os.environ["CHECK_COMPOSE_IN_VENV"] = "1"
    os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])

failures = 0


def report(ok, what, detail=""):
    global failures
    if ok is None:
        status = "skip"
    elif ok:
        status = "ok  "
    else:
        status = "FAIL"
        failures += 1
    print(f"{status} {what}" + (f": {detail}" if detail else ""), flush=True)
    return ok


# ---------------------------------------------------------------- compose interpolation

def load_dotenv(path):
    env = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            env[k.strip()] = v
    return env


VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}"
                 r"|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env, where, problems):
    """Compose's variable substitution: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR:+r}."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, where, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, where, problems) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4)
        val = env.get(name)
        if op is None:
            if val is None:
                problems.append(f"{where}: ${{{name}}} is not set (compose substitutes an empty string)")
                return ""
            return val
        unset_or_empty = val is None or (op.startswith(":") and val == "")
        kind = op[-1]
        if kind == "-":
            return interpolate(arg, env, where, problems) if unset_or_empty else val
        if kind == "?":
            if unset_or_empty:
                problems.append(f"{where}: ${{{name}}} is required: {arg}")
                return ""
            return val
        if kind == "+":
            return "" if unset_or_empty else interpolate(arg, env, where, problems)
        return val or ""

    return VAR.sub(sub, value)


# ---------------------------------------------------------------- compose model helpers

def service_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v if "=" in str(item) else os.environ.get(k, "")
        env = out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts(svc):
    """(kind, host source or volume name, container target) of every mount of a service."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            kind = v.get("type", "volume")
            out.append((kind, v.get("source"), v.get("target")))
            continue
        parts = str(v).split(":")
        if len(parts) == 1:
            out.append(("volume", None, parts[0]))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append((kind, source, target))
    return out


def host_path(base, source):
    return (base / Path(os.path.expanduser(source))).resolve()


def container_to_host(svc, base, container_path):
    """The host file a container path comes from through the service's bind mounts, if any."""
    best = None
    for kind, source, target in mounts(svc):
        if kind != "bind" or not target:
            continue
        t = target.rstrip("/")
        if container_path == t or container_path.startswith(t + "/"):
            if best is None or len(t) > len(best[0]):
                best = (t, source)
    if best is None:
        return None
    rest = container_path[len(best[0]):].lstrip("/")
    h = host_path(base, best[1])
    return h / rest if rest else h


def as_list(cmd):
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(c) for c in cmd]


def is_gangway(svc):
    """A service running the image built from deploy/Dockerfile (or an image named gangway)."""
    build = svc.get("build")
    if isinstance(build, dict) and str(build.get("dockerfile", "")).endswith("deploy/Dockerfile"):
        return True
    return str(svc.get("image", "")).split("/")[-1].startswith("gangway") and not build


def is_image(svc, name):
    return name in str(svc.get("image", "")).split("/")[-1].split(":")[0]


# ---------------------------------------------------------------- checks

def check_references(services, volumes_declared):
    for name, svc in services.items():
        deps = svc.get("depends_on") or []
        deps = list(deps.keys()) if isinstance(deps, dict) else list(deps)
        for d in deps:
            report(d in services, f"{name}: depends_on {d}", "" if d in services else "no such service")
        for link in svc.get("links") or []:
            target = str(link).split(":")[0]
            report(target in services, f"{name}: links {target}", "" if target in services else "no such service")
        ext = svc.get("extends")
        if isinstance(ext, dict) and "file" not in ext:
            t = ext.get("service")
            report(t in services, f"{name}: extends {t}", "" if t in services else "no such service")
        nm = str(svc.get("network_mode", ""))
        if nm.startswith("service:"):
            t = nm.split(":", 1)[1]
            report(t in services, f"{name}: network_mode {nm}", "" if t in services else "no such service")
        for vf in svc.get("volumes_from") or []:
            t = str(vf).split(":")[0]
            if t != "container":
                report(t in services, f"{name}: volumes_from {t}", "" if t in services else "no such service")
        for kind, source, target in mounts(svc):
            if kind == "volume" and source:
                report(source in volumes_declared, f"{name}: volume {source}",
                       "" if source in volumes_declared else "not declared under top-level volumes")


def check_mounts_and_builds(services, base):
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            ctx_path = host_path(base, ctx)
            report(ctx_path.is_dir(), f"{name}: build context {ctx}", str(ctx_path))
            if isinstance(build, dict) and "dockerfile_inline" not in build:
                df = ctx_path / build.get("dockerfile", "Dockerfile")
                report(df.is_file(), f"{name}: Dockerfile {build.get('dockerfile', 'Dockerfile')}", str(df))
        for kind, source, target in mounts(svc):
            if kind != "bind":
                continue
            p = host_path(base, source)
            what = "directory" if p.is_dir() else "file" if p.is_file() else "missing"
            report(p.exists(), f"{name}: mount {source} -> {target}", f"{p} ({what})")
        env_files = svc.get("env_file") or []
        for ef in [env_files] if isinstance(env_files, str) else env_files:
            ef = ef if isinstance(ef, str) else ef.get("path")
            p = host_path(base, ef)
            report(p.is_file(), f"{name}: env_file {ef}", str(p))


def check_gangway_configs(services, base, gangway_bin):
    targets = {n: s for n, s in services.items() if is_gangway(s)}
    if not targets:
        report(None, "gangway configs", "no service runs the gangway image")
        return
    bin_path = Path(gangway_bin)
    if not bin_path.is_absolute():
        bin_path = ROOT / bin_path
    if not (bin_path.is_file() and os.access(bin_path, os.X_OK)):
        report(False, "gangway binary", f"{bin_path} not found (cargo build, or set GANGWAY_BIN)")
        return
    help_text = subprocess.run([str(bin_path), "--help"], capture_output=True, text=True,
                               env={k: v for k, v in os.environ.items() if not k.startswith("GANGWAY_")}).stdout
    for name, svc in targets.items():
        test = as_list((svc.get("healthcheck") or {}).get("test"))
        if test[:1] in (["CMD"], ["CMD-SHELL"]):
            test = test[1:] if test[0] == "CMD" else shlex.split(" ".join(test[1:]))
        if test and Path(test[0]).name == "gangway":
            flags = [a.split("=", 1)[0] for a in test[1:] if a.startswith("--")]
            unknown = [f for f in flags if not re.search(rf"(^|\s){re.escape(f)}\b", help_text, re.M)]
            report(not unknown, f"{name}: healthcheck {' '.join(test)}",
                   f"flags unknown to {bin_path.name} --help: {unknown}" if unknown else "flags known to the binary")
        env = service_env(svc)
        args = as_list(svc.get("command"))
        # The image's entrypoint is gangway: command holds its flags. Find the config file.
        config = env.get("GANGWAY_CONFIG", "/etc/gangway/gangway.toml")
        rest = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("--config", "-c") and i + 1 < len(args):
                config = args[i + 1]
                i += 2
                continue
            if a.startswith("--config="):
                config = a.split("=", 1)[1]
            elif a != "--check":
                rest.append(a)
            i += 1
        host = container_to_host(svc, base, config)
        if host is None:
            report(None, f"{name}: gangway --check", f"{config} is not mounted (the image's own file)")
            continue
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("GANGWAY_")}
        child_env.update({k: v for k, v in env.items()
                          if k.startswith("GANGWAY_") and k != "GANGWAY_CONFIG"})
        child_env["RUST_LOG"] = "error"
        r = subprocess.run([str(bin_path), "--check", "--config", str(host), *rest],
                           env=child_env, capture_output=True, text=True, timeout=60)
        out = " ".join((r.stdout + r.stderr).split())
        report(r.returncode == 0, f"{name}: gangway --check --config {host.relative_to(ROOT) if host.is_relative_to(ROOT) else host}",
               f"exit {r.returncode}: {out}")


def check_prometheus(services, base):
    for name, svc in services.items():
        if not is_image(svc, "prometheus"):
            continue
        args = as_list(svc.get("command"))
        config = next((a.split("=", 1)[1] for a in args if a.startswith("--config.file=")),
                      "/etc/prometheus/prometheus.yml")
        host = container_to_host(svc, base, config)
        if not report(host is not None and host.is_file(), f"{name}: Prometheus config {config}",
                      str(host) if host else "not mounted"):
            continue
        try:
            cfg = yaml.safe_load(host.read_text())
        except yaml.YAMLError as e:
            report(False, f"{name}: {host.name} parses", str(e).replace("\n", " "))
            continue
        for rf in cfg.get("rule_files") or []:
            cpath = rf if rf.startswith("/") else str(Path(config).parent / rf)
            h = container_to_host(svc, base, cpath)
            report(h is not None and h.is_file(), f"{name}: rule file {rf} mounted", str(h) if h else "not mounted")
        hostnames = set(services)
        for s in services.values():
            if s.get("hostname"):
                hostnames.add(s["hostname"])
            if s.get("container_name"):
                hostnames.add(s["container_name"])
        for job in cfg.get("scrape_configs") or []:
            for sc in job.get("static_configs") or []:
                for t in sc.get("targets") or []:
                    h = str(t).rsplit(":", 1)[0].strip("[]")
                    if h in ("localhost", "127.0.0.1", "::1"):
                        report(True, f"{name}: scrape target {t} (job {job.get('job_name')})", "itself")
                        continue
                    report(h in hostnames, f"{name}: scrape target {t} (job {job.get('job_name')})",
                           "a service" if h in hostnames else "no such service")


def panel_list(dash):
    for p in dash.get("panels") or []:
        yield p
        yield from p.get("panels") or []


def check_grafana(services, base):
    for name, svc in services.items():
        if not is_image(svc, "grafana"):
            continue
        # Provisioned datasources.
        ds_uids = set()
        ds_dir = container_to_host(svc, base, "/etc/grafana/provisioning/datasources")
        for f in sorted(ds_dir.glob("*.y*ml")) if ds_dir and ds_dir.is_dir() else []:
            doc = yaml.safe_load(f.read_text()) or {}
            for ds in doc.get("datasources") or []:
                ds_uids.add(ds.get("uid"))
                report(bool(ds.get("uid")) and bool(ds.get("url")),
                       f"{name}: datasource {ds.get('name')} ({f.name})", f"uid {ds.get('uid')}, url {ds.get('url')}")
                url_host = re.sub(r"^\w+://", "", str(ds.get("url", ""))).split("/")[0].rsplit(":", 1)[0]
                report(url_host in services, f"{name}: datasource url host {url_host}",
                       "a service" if url_host in services else "no such service")
        # Dashboard providers and the JSON they load.
        db_dir = container_to_host(svc, base, "/etc/grafana/provisioning/dashboards")
        providers = []
        for f in sorted(db_dir.glob("*.y*ml")) if db_dir and db_dir.is_dir() else []:
            doc = yaml.safe_load(f.read_text()) or {}
            providers += [(f.name, p) for p in doc.get("providers") or []]
        report(bool(providers), f"{name}: dashboard providers", f"{len(providers)} in {db_dir}")
        for fname, p in providers:
            path = (p.get("options") or {}).get("path", "")
            jsons = [target for kind, source, target in mounts(svc)
                     if kind == "bind" and target and target.startswith(path.rstrip("/") + "/")
                     and target.endswith(".json")]
            host_dir = container_to_host(svc, base, path)
            if host_dir is not None and host_dir.is_dir():
                jsons += [str(Path(path) / j.name) for j in host_dir.glob("*.json")]
            report(bool(jsons), f"{name}: provider {p.get('name')} ({fname}) path {path}",
                   ", ".join(sorted(set(jsons))) or "no dashboard JSON mounted there")
        # Every mounted dashboard JSON.
        for kind, source, target in mounts(svc):
            if kind != "bind" or not str(source).endswith(".json"):
                continue
            h = host_path(base, source)
            try:
                dash = json.loads(h.read_text())
            except (OSError, ValueError) as e:
                report(False, f"{name}: dashboard {source} parses", str(e))
                continue
            panels = [p for p in panel_list(dash) if p.get("type") != "row"]
            report(True, f"{name}: dashboard {source} parses",
                   f"\"{dash.get('title')}\" uid {dash.get('uid')}, schemaVersion {dash.get('schemaVersion')}, {len(panels)} panels")
            ids = [p.get("id") for p in panel_list(dash)]
            report(len(ids) == len(set(ids)), f"{name}: dashboard panel ids unique")
            no_query = [p.get("title") for p in panels
                        if not any(t.get("expr") for t in p.get("targets") or [])]
            report(not no_query, f"{name}: every panel has a query", ", ".join(no_query))
            variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list") or []}
            used = set()
            for p in panels:
                for ds in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets") or []]:
                    if isinstance(ds, dict) and ds.get("uid"):
                        used.add(ds["uid"])
            for uid in sorted(used):
                m = re.fullmatch(r"\$\{?(\w+)\}?", uid)
                if m:
                    var = variables.get(m.group(1))
                    current = ((var or {}).get("current") or {}).get("value")
                    ok = var is not None and var.get("type") == "datasource" and current in ds_uids
                    report(ok, f"{name}: dashboard datasource {uid}",
                           f"variable defaults to {current!r}; provisioned: {sorted(ds_uids)}")
                else:
                    report(uid in ds_uids, f"{name}: dashboard datasource uid {uid}",
                           f"provisioned: {sorted(ds_uids)}")


def check_with_docker(compose_file):
    for cmd in (["docker", "compose"], ["docker-compose"]):
        try:
            probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode != 0:
            continue
        r = subprocess.run([*cmd, "-f", str(compose_file), "config", "-q"],
                           capture_output=True, text=True, timeout=60)
        version = probe.stdout.splitlines()[0] if probe.stdout else ""
        report(r.returncode == 0, f"{' '.join(cmd)} config -q ({version.strip()})",
               " ".join((r.stdout + r.stderr).split()))
        return
    report(None, "docker compose config", "neither docker compose nor docker-compose is installed")


def main():
    compose_file = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "deploy" / "compose.yaml").resolve()
    base = compose_file.parent
    try:
        raw = yaml.safe_load(compose_file.read_text())
    except (OSError, yaml.YAMLError) as e:
        report(False, f"{compose_file} parses", str(e).replace("\n", " "))
        return 1
    services = raw.get("services") if isinstance(raw, dict) else None
    if not report(isinstance(services, dict) and bool(services), f"{compose_file.relative_to(ROOT) if compose_file.is_relative_to(ROOT) else compose_file} parses",
                  f"{len(services or {})} services: {', '.join(services or {})}"):
        return 1
    env = dict(os.environ)
    env.update({k: v for k, v in load_dotenv(base / ".env").items() if k not in os.environ})
    problems = []
    services = {name: interpolate(svc or {}, env, f"services.{name}", problems)
                for name, svc in services.items()}
    report(not problems, "variable substitution", "; ".join(problems))
    volumes_declared = set((raw.get("volumes") or {}).keys())

    check_references(services, volumes_declared)
    check_mounts_and_builds(services, base)
    check_gangway_configs(services, base, os.environ.get("GANGWAY_BIN", "target/debug/gangway"))
    check_prometheus(services, base)
    check_grafana(services, base)
    check_with_docker(compose_file)
    print(f"check-compose: {failures} failed" if failures else "check-compose: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
