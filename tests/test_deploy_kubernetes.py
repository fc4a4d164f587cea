"""deploy/kubernetes/: every manifest passes `kubernetes-validate --strict` for the Kubernetes
versions it bundles (1.28 on), the GPU overlay rendered and validated the same way, the Prometheus
Operator CRDs checked for shape, the ConfigMap's pipeline passes `streamseg validate` with the
Secret's variables set, and probes, ports, selectors and the shard agree with one another.

No cluster runs here. kustomize is not installed (Debian's kubernetes-client is 1.20, too old for
`patches:` with a target), so ``render`` below builds an overlay itself: it knows only
``resources`` and JSON 6902 ``patches`` (applied with the ``jsonpatch`` library) and refuses any
other kustomization key, so a new feature in a kustomization cannot be silently skipped here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamseg.config import HttpConfig
from streamseg.shard import ENV_VAR, resolve_shard

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
BASE, GPU, MONITORING = K8S / "base", K8S / "overlays" / "gpu", K8S / "monitoring"
OLDEST = (1, 28)  # the pod-index label the shard comes from is there from 1.28 on
CRD_KINDS = {"PodMonitor", "ServiceMonitor"}

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def render(folder: Path) -> list[Doc]:
    """The objects ``kubectl apply -k folder`` would send, for the subset of kustomize used here."""
    import jsonpatch  # type: ignore[import-untyped]

    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(k) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{folder}: render() does not implement {sorted(unknown)}"
    docs: list[Doc] = []
    for res in k["resources"]:
        path = folder / res
        docs += render(path) if path.is_dir() else load_docs(path)
    for patch in k.get("patches", []):
        assert set(patch) == {"path", "target"}, patch
        ops = yaml.safe_load((folder / patch["path"]).read_text())
        target = patch["target"]
        hits = [i for i, d in enumerate(docs) if matches(d, target)]
        assert len(hits) == 1, f"patch {patch['path']} matches {len(hits)} objects"
        docs[hits[0]] = jsonpatch.apply_patch(docs[hits[0]], ops)  # raises on a path that is not there
    return docs


def matches(doc: Doc, target: dict[str, str]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    want = {"group": group, "version": version, "kind": doc["kind"], "name": doc["metadata"]["name"]}
    return all(want[key] == value for key, value in target.items())


def one(docs: list[Doc], kind: str) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def versions() -> list[str]:
    """The Kubernetes versions kubernetes-validate bundles strict schemas for, OLDEST on."""
    import kubernetes_validate  # type: ignore[import-untyped]

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    found = [re.fullmatch(r"v(\d+)\.(\d+)\.0-local-strict", p.name) for p in schemas.iterdir()]
    out = sorted((int(m[1]), int(m[2])) for m in found if m and (int(m[1]), int(m[2])) >= OLDEST)
    assert out[:6] == [(1, minor) for minor in range(28, 34)], out  # at least 1.28 to 1.33
    return [f"{major}.{minor}.0" for major, minor in out]


def kubernetes_validate(files: list[Path]) -> None:
    tool = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubernetes-validate"
    )
    if tool is None:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[dev]'")
    for version in versions():
        r = subprocess.run(
            [tool, "--strict", "--quiet", "-k", version, *map(str, files)], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, f"Kubernetes {version}:\n{r.stdout}{r.stderr}"


def manifests() -> list[Path]:
    """Every Kubernetes object file (not kustomizations, not patches)."""
    files = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml" and p.parent != GPU)
    assert len(files) == 7, files
    return files


def test_every_manifest_passes_kubernetes_validate_strict() -> None:
    files = [p for p in manifests() if load_docs(p)[0]["kind"] not in CRD_KINDS]  # CRDs: no schema bundled
    assert {load_docs(p)[0]["kind"] for p in files} == {
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
        "PodDisruptionBudget",
    }
    kubernetes_validate(files)


def test_kubernetes_validate_catches_a_typo(tmp_path: Path) -> None:
    # The check above can fail: a misspelt field is refused in strict mode.
    broken = (BASE / "statefulset.yaml").read_text().replace("livenessProbe:", "livenesProbe:")
    (tmp_path / "statefulset.yaml").write_text(broken)
    with pytest.raises(AssertionError, match="livenesProbe"):
        kubernetes_validate([tmp_path / "statefulset.yaml"])


def test_every_file_is_in_a_kustomization() -> None:
    listed = {(BASE / r).resolve() for r in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]}
    listed |= {MONITORING / "podmonitor.yaml"}
    # servicemonitor.yaml is the documented alternative to the PodMonitor, applied alone
    assert set(manifests()) - listed == {MONITORING / "servicemonitor.yaml"}


def test_gpu_overlay_renders_and_validates(tmp_path: Path) -> None:
    base, gpu = render(BASE), render(GPU)
    assert [d["kind"] for d in gpu] == [d["kind"] for d in base]
    out = tmp_path / "gpu.yaml"
    out.write_text(yaml.safe_dump_all(gpu))
    kubernetes_validate([out])
    pod = one(gpu, "StatefulSet")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["resources"]["requests"]["nvidia.com/gpu"] == c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"] == "streamseg:0.1.0-gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility,video"} in c["env"]
    # the rest of the base is untouched
    base_c = one(base, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert base_c["image"] == "streamseg:0.1.0" and "nvidia.com/gpu" not in base_c["resources"]["limits"]
    assert [d for d in gpu if d["kind"] != "StatefulSet"] == [d for d in base if d["kind"] != "StatefulSet"]


def test_crds_shape() -> None:
    docs = render(BASE)
    sts, svc = one(docs, "StatefulSet"), one(docs, "Service")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    pm = one(render(MONITORING), "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in container_ports and endpoint["path"] == "/metrics"
    (sm,) = load_docs(MONITORING / "servicemonitor.yaml")
    assert (sm["apiVersion"], sm["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]} and endpoint["path"] == "/metrics"


def test_selectors_service_and_disruption_budget_agree() -> None:
    docs = render(BASE)
    sts, svc, pdb = one(docs, "StatefulSet"), one(docs, "Service"), one(docs, "PodDisruptionBudget")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"] and svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    (port,) = svc["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert container_ports[port["targetPort"]] == port["port"]


def pipeline_text(docs: list[Doc]) -> str:
    text: str = one(docs, "ConfigMap")["data"]["pipeline.yaml"]
    return text


def test_configmap_pipeline_passes_streamseg_validate(tmp_path: Path) -> None:
    docs = render(BASE)
    secret = one(docs, "Secret")["stringData"]
    needed = set(re.findall(r"\$\{([A-Za-z_]\w*)\}", pipeline_text(docs)))  # no default: must be set
    assert needed and needed <= set(secret)
    sts = one(docs, "StatefulSet")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert {"secretRef": {"name": one(docs, "Secret")["metadata"]["name"]}} in c["envFrom"]
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == volume["name"])
    assert c["args"] == ["run", f"{mount['mountPath']}/pipeline.yaml"]

    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline_text(docs))
    env = {k: v for k, v in os.environ.items() if k not in needed and k != ENV_VAR}

    def validate(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "streamseg", "validate", str(path), *args],
            cwd=tmp_path,  # relative outputs land here, as in /out
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = validate(secret)
    assert r.returncode == 0, r.stderr
    assert "ok (6 source(s)" in r.stdout
    r = validate({})  # without the Secret's variables the pipeline is refused: it really reads them
    assert r.returncode == 2 and "CAM_" in r.stderr
    r = validate(secret, "--shard", "1/3")
    assert r.stdout.splitlines()[-1] == "shard 1/3: 2 of 6 stream(s): cam-01, cam-03"


def test_probes_and_scrape_annotations_match_the_pipelines_http() -> None:
    docs = render(BASE)
    http = HttpConfig.model_validate(yaml.safe_load(pipeline_text(docs))["http"])  # the Secret is not needed here
    assert http.enabled and http.host == "0.0.0.0"  # a probe from the kubelet never reaches 127.0.0.1
    template = one(docs, "StatefulSet")["spec"]["template"]
    (c,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and ports[get["port"]] == http.port, probe
    notes = template["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == http.port


def test_security_context_and_writable_paths() -> None:
    spec = one(render(BASE), "StatefulSet")["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/out", "/tmp"}  # /out: the image's working directory (relative outputs)
    assert {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]} == {"out"}
    assert set(c["resources"]["requests"]) == set(c["resources"]["limits"]) == {"cpu", "memory"}


def test_shard_comes_from_the_pod_index_and_n_is_the_replica_count() -> None:
    sts = one(render(BASE), "StatefulSet")
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    names = list(env)
    assert names.index("POD_INDEX") < names.index(ENV_VAR)  # $(VAR) expands only earlier variables
    field = env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    value = env[ENV_VAR]["value"]
    replicas = sts["spec"]["replicas"]
    assert value == f"$(POD_INDEX)/{replicas}"
    for ordinal in range(replicas):  # what each pod ends up with is a valid shard
        shard = resolve_shard(None, {ENV_VAR: value.replace("$(POD_INDEX)", str(ordinal))})
        assert (shard.index, shard.count) == (ordinal, replicas)
