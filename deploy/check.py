"""Checks of the deployment files, run by scripts/test (no Docker engine or cluster needed):

- the Dockerfile with hadolint;
- the Helm chart with Helm's own lint and renderer (helm-python: Helm's Go SDK through its C ABI),
  for several value sets, every rendered object validated against the Kubernetes schemas
  (kubernetes-validate), and the wiring checked: probes on /api/health and /api/health/live, selectors that match, the
  API-only replicas with DISPATCH_WORKERS=false, shared secrets present;
- docker-compose.yml against the Compose specification's schema (check-jsonschema).

Usage: python deploy/check.py (from the repository root, in the venv scripts/test makes).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import json
import re

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "dispatch"
KUBE_VERSION = "1.30"
BIN = Path(sys.executable).parent

failures: list[str] = []


def check(cond: bool, what: str) -> None:
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="prod", namespace="dispatch", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def validate_all(docs: list[dict[str, Any]], label: str) -> None:
    for d in docs:
        try:
            kubernetes_validate.validate(d, KUBE_VERSION, strict=True)
            ok = True
            err = ""
        except kubernetes_validate.ValidationError as e:
            ok, err = False, str(e)
        check(ok, f"{label}: {d['kind']}/{d['metadata']['name']} is valid Kubernetes {KUBE_VERSION} {err}")


def main() -> int:
    # Dockerfile
    hadolint = subprocess.run([str(BIN / "hadolint"), "--config", str(ROOT / ".hadolint.yaml"),
                               str(ROOT / "Dockerfile")], capture_output=True, text=True)
    check(hadolint.returncode == 0, f"hadolint Dockerfile {hadolint.stdout.strip()}")
    dockerfile = (ROOT / "Dockerfile").read_text()
    check("USER 10001" in dockerfile and "HEALTHCHECK" in dockerfile,
          "the image runs as a non-root user and has a health check")

    # docker-compose.yml
    compose = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                              str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    check(compose.returncode == 0, f"docker-compose.yml follows the Compose spec {compose.stdout.strip()}"
          f" {compose.stderr.strip()}")

    # Helm lint (strict: warnings fail too) with the defaults and the fullest values.
    full = {
        "replicaCount": 3,
        "apiOnly": {"enabled": True, "replicaCount": 2},
        "ingress": {"enabled": True, "className": "nginx", "tls": {"enabled": True}},
        "secretEnv": {"DISPATCH_API_KEY": "k" * 40, "GITHUB_TOKEN": "ghp_x"},
    }
    for label, values in (("defaults", {}), ("full", full)):
        report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}.0")
        bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + report.get("errors", [])
        check(not bad, f"helm lint --strict ({label}) {bad}")

    # Defaults: one worker Deployment, no API-only, no Ingress.
    docs = render({})
    validate_all(docs, "defaults")
    deps = by_kind(docs, "Deployment")
    check(len(deps) == 1 and not by_kind(docs, "Ingress"), "defaults: one Deployment, no Ingress")
    dep = deps[0]
    env = env_of(dep)
    check(env.get("DISPATCH_WORKERS") == "true", "defaults: the replicas run the dispatcher and sweeper")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    check(container["readinessProbe"]["httpGet"]["path"] == "/api/health", "readiness on /api/health")
    check(container["livenessProbe"]["httpGet"]["path"] == "/api/health/live",
          "liveness on /api/health/live (answers while migrations run)")
    check(dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, "pods run as non-root")
    secret = by_kind(docs, "Secret")[0]
    for key in ("PG_DATABASE_URL", "DISPATCH_API_KEY", "DISPATCH_PASSWORD", "DISPATCH_SESSION_SECRET"):
        check(key in secret.get("data", {}), f"the Secret carries {key} (generated when not given)")
    check("GITHUB_TOKEN" not in secret.get("data", {}), "empty optional secrets are left out")
    pdb = by_kind(docs, "PodDisruptionBudget")[0]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    check(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB selects the pods")

    # Full: API-only replicas, Ingress with TLS.
    docs = render(full)
    validate_all(docs, "full")
    deps = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(docs, "Deployment")}
    check(set(deps) == {"server", "api"}, "full: a worker and an API-only Deployment")
    check(deps["server"]["spec"]["replicas"] == 3 and deps["api"]["spec"]["replicas"] == 2, "replica counts")
    check(env_of(deps["api"]).get("DISPATCH_WORKERS") == "false", "API-only replicas set DISPATCH_WORKERS=false")
    svc = by_kind(docs, "Service")[0]
    for name, d in deps.items():
        check(matches(svc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"]),
              f"the Service reaches the {name} pods")
    ingress = by_kind(docs, "Ingress")[0]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    check(backend["name"] == svc["metadata"]["name"], "the Ingress routes to the Service")
    check(ingress["spec"]["tls"][0]["secretName"] == "dispatch-tls", "the Ingress terminates TLS")

    # An existing Secret: none created, pods read it.
    docs = render({"existingSecret": "mine"})
    validate_all(docs, "existingSecret")
    check(not by_kind(docs, "Secret"), "existingSecret: the chart creates no Secret")
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    check(container["envFrom"][0]["secretRef"]["name"] == "mine", "existingSecret: the pods read it")

    # No database: refused with a message that names the value.
    try:
        render({"secretEnv": {"PG_DATABASE_URL": ""}})
        check(False, "a chart without PostgreSQL is refused")
    except helm.HelmError as e:
        check("PG_DATABASE_URL" in str(e), "a chart without PostgreSQL is refused, naming PG_DATABASE_URL")

    # The Grafana dashboard asks only for series the server exports.
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    source = (ROOT / "dispatch-server" / "src" / "metrics.rs").read_text()
    exported = dict(re.findall(r"# TYPE (dispatch_[a-z_]+) (counter|gauge|histogram)", source))
    check(len(exported) >= 5, f"metrics.rs exports {sorted(exported)}")
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    check(len(exprs) == len(dashboard["panels"]) and all(exprs), "every dashboard panel has a query")
    for expr in exprs:
        for name in re.findall(r"\b(dispatch_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name) if name not in exported else name
            known = exported.get(base)
            suffix_ok = name == base or known == "histogram"
            check(known is not None and suffix_ok, f"dashboard series {name} is exported by /metrics")
    ids = [p["id"] for p in dashboard["panels"]]
    check(len(ids) == len(set(ids)), "dashboard panel ids are unique")

    print(f"{'FAILED' if failures else 'passed'}: deployment checks, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
