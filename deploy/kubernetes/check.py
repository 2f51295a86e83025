"""Our own rules for the rendered manifests, beyond the schemas kubernetes-validate checks.

    python3 check.py OVERLAY RENDERED.yaml

Run by `cargo xtask manifests` for each overlay. Prints every broken rule and exits 1 if any.
PyYAML comes with kubernetes-validate.
"""

import sys

import yaml


def containers(deployment):
    return deployment["spec"]["template"]["spec"].get("containers", [])


def selects(selector, labels):
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def check(overlay, documents):
    problems = []
    by_kind = {}
    for document in documents:
        by_kind.setdefault(document["kind"], []).append(document)
    deployments = by_kind.get("Deployment", [])
    if not deployments:
        problems.append("no Deployment rendered")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"].get("labels", {})
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: the pod does not require a non-root user")
        if not pod.get("topologySpreadConstraints"):
            problems.append(f"{name}: replicas are not spread across nodes")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service account token it does not need")
        for container in containers(deployment):
            where = f"{name}/{container['name']}"
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe not in container:
                    problems.append(f"{where}: no {probe}")
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        problems.append(f"{where}: no {resource} in {bound}")
            context = container.get("securityContext", {})
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root filesystem is writable")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: privilege escalation is not ruled out")
            if "ALL" not in context.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: not every capability is dropped")
        scaled = [
            hpa for hpa in by_kind.get("HorizontalPodAutoscaler", [])
            if hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        ]
        if len(scaled) != 1:
            problems.append(f"{name}: {len(scaled)} HorizontalPodAutoscaler(s) instead of one")
        budgets = [pdb for pdb in by_kind.get("PodDisruptionBudget", []) if selects(pdb["spec"]["selector"], labels)]
        if len(budgets) != 1:
            problems.append(f"{name}: {len(budgets)} PodDisruptionBudget(s) instead of one")
        policies = [
            policy for policy in by_kind.get("NetworkPolicy", [])
            if policy["spec"]["podSelector"].get("matchLabels") and selects(policy["spec"]["podSelector"], labels)
        ]
        if len(policies) != 1:
            problems.append(f"{name}: {len(policies)} NetworkPolicy(ies) of its own instead of one")
    deny_all = [
        policy for policy in by_kind.get("NetworkPolicy", [])
        if policy["spec"]["podSelector"] == {} and sorted(policy["spec"].get("policyTypes", [])) == ["Egress", "Ingress"]
        and "ingress" not in policy["spec"] and "egress" not in policy["spec"]
    ]
    if not deny_all:
        problems.append("no NetworkPolicy denies all traffic by default")
    settings = [config for config in by_kind.get("ConfigMap", []) if config["metadata"]["name"] == "shop-settings"]
    if len(settings) != 1:
        problems.append("no shop-settings ConfigMap")
    elif overlay == "production":
        if settings[0]["data"].get("APP_ENV") != "production":
            problems.append("production: APP_ENV is not production (the services would accept development defaults)")
        if settings[0]["data"].get("REQUIRE_STAFF_ROLE") != "true":
            problems.append("production: writes are open (REQUIRE_STAFF_ROLE is not true)")
        if by_kind.get("Secret"):
            names = [secret["metadata"]["name"] for secret in by_kind["Secret"]]
            problems.append(f"production: Secrets rendered from the repository: {names}")
        if not any(ingress["spec"].get("tls") for ingress in by_kind.get("Ingress", [])):
            problems.append("production: the Ingress terminates no TLS")
    return problems


def main():
    overlay, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as file:
        documents = [document for document in yaml.safe_load_all(file) if document]
    problems = check(overlay, documents)
    for problem in problems:
        print(f"{overlay}: {problem}")
    if problems:
        sys.exit(1)
    print(f"{overlay}: {len(documents)} objects keep every rule of check.py")


if __name__ == "__main__":
    main()
