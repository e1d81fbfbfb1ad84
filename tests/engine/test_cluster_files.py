"""The cluster deployment files agree with each other, with Ray's own readers and with the repo.

Fast (no Ray cluster, no training): YAML parsing, Ray's cluster-launcher schema, KubeRay specs
as Ray's autoscaler reads them, one image name everywhere, the RayJob's command runnable, the
cluster-1b preset's sharding plan within its GPU memory, and the launch scripts' syntax.
"""

from __future__ import annotations

import copy
import glob
import os
import re
import shlex
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "cluster")
LAUNCHER = os.path.join(CLUSTER, "aws-gpu.yaml")
RAYCLUSTER = os.path.join(CLUSTER, "kuberay", "raycluster.yaml")
RAYJOB = os.path.join(CLUSTER, "kuberay", "rayjob.yaml")
PRESET = "configs/ctr/cluster-1b.yaml"
IMAGE_WORKDIR = "/opt/distrec"  # Dockerfile WORKDIR: holds configs/ inside the image


def _load(path: str) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _text(path: str) -> str:
    with open(os.path.join(ROOT, path)) as fh:
        return fh.read()


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _cluster_specs() -> list[tuple[str, dict]]:
    """(name, RayCluster spec): the RayCluster's own and the RayJob's rayClusterSpec."""
    return [("raycluster", _load(RAYCLUSTER)["spec"]), ("rayjob", _load(RAYJOB)["spec"]["rayClusterSpec"])]


def _images() -> dict[str, str]:
    images = {"aws-gpu.yaml docker.image": _load(LAUNCHER)["docker"]["image"]}
    for name, spec in _cluster_specs():
        groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
        for group, group_spec in groups:
            for container in _containers(group_spec["template"]):
                images[f"{name} {group}/{container['name']}"] = container["image"]
    return images


def _entrypoint_command(entrypoint: str) -> tuple[str, list[str]]:
    """(config path, overrides) of `distrec run CONFIG k=v ...`."""
    tokens = shlex.split(entrypoint)
    assert tokens[:2] == ["distrec", "run"], f"RayJob entrypoint should be `distrec run ...`: {entrypoint}"
    config, overrides = tokens[2], tokens[3:]
    assert all("=" in o for o in overrides), f"entrypoint arguments after the config must be key=value: {overrides}"
    return config, overrides


# --- every file parses ----------------------------------------------------------------------


def test_every_yaml_under_cluster_parses():
    paths = sorted(glob.glob(os.path.join(CLUSTER, "**", "*.y*ml"), recursive=True))
    assert {LAUNCHER, RAYCLUSTER, RAYJOB} <= set(paths)
    for path in paths:
        docs = list(yaml.safe_load_all(open(path)))
        assert docs and all(isinstance(d, dict) for d in docs), path


# --- cluster launcher -----------------------------------------------------------------------


def test_cluster_launcher_has_required_fields_and_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _load(LAUNCHER)
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "max_workers",
                "idle_timeout_minutes"):
        assert key in cfg, f"aws-gpu.yaml lacks {key}"
    assert cfg["docker"]["image"]
    assert cfg["provider"]["type"] == "aws"
    assert cfg["head_node_type"] in cfg["available_node_types"]
    workers = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert workers and all(v["node_config"]["InstanceType"] for v in workers.values())
    assert sum(v["max_workers"] for v in workers.values()) <= cfg["max_workers"]
    # The image is complete: nothing synced or installed per node, and its ENTRYPOINT (distrec)
    # is reset so the launcher can start its shell in the container.
    assert not cfg.get("file_mounts") and not cfg.get("setup_commands")
    assert any(o.replace('"', "'").startswith("--entrypoint=''") for o in cfg["docker"]["run_options"])
    validate_config(prepare_config(copy.deepcopy(cfg)))  # Ray's JSON schema, provider defaults merged


# --- KubeRay --------------------------------------------------------------------------------


@pytest.mark.parametrize("name,spec", _cluster_specs(), ids=[n for n, _ in _cluster_specs()])
def test_kuberay_cluster_spec_as_rays_autoscaler_reads_it(name, spec):
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    assert "headGroupSpec" in spec and spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        limits = _containers(group["template"])[0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) > 0, f"{name} {group['groupName']}: no GPU limit"
    derived = _derive_autoscaling_config_from_ray_cr({"metadata": {"name": "distrec", "namespace": "distrec"},
                                                      "spec": spec})  # runs Ray's validate_config too
    node_types = derived["available_node_types"]
    assert node_types["headgroup"]["resources"]["CPU"] == 0  # no training on the head
    gpus = sum(t["max_workers"] * t["resources"].get("GPU", 0) for t in node_types.values())
    assert gpus >= _load(os.path.join(ROOT, PRESET))["trainer"]["num_workers"]


def test_raycluster_and_rayjob_manifests():
    cluster = _load(RAYCLUSTER)
    job = _load(RAYJOB)
    for doc, kind in ((cluster, "RayCluster"), (job, "RayJob")):
        assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
        assert doc["metadata"]["name"] and doc["metadata"]["namespace"]
    assert job["spec"]["entrypoint"] and job["spec"]["shutdownAfterJobFinishes"] is True
    # The job's cluster is the RayCluster's: same pods (the replica counts may differ).
    job_spec, cluster_spec = job["spec"]["rayClusterSpec"], cluster["spec"]
    assert job_spec["rayVersion"] == cluster_spec["rayVersion"]
    assert job_spec["headGroupSpec"] == cluster_spec["headGroupSpec"]
    pods = lambda spec: {g["groupName"]: g["template"] for g in spec["workerGroupSpecs"]}  # noqa: E731
    assert pods(job_spec) == pods(cluster_spec)
    # The job needs every GPU at once: its workers are all there from the start.
    for group in job_spec["workerGroupSpecs"]:
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]


def test_rayjob_entrypoint_runs_a_config_that_loads():
    from distrec.methods import load_config

    spec = _load(RAYJOB)["spec"]
    entrypoint = spec["entrypoint"]
    # KubeRay pastes the entrypoint into the submitter's bash script: a shell operator would
    # run the rest of the line in the submitter pod, not on the cluster.
    assert not re.search(r"[;&|`]|\$\(", entrypoint), entrypoint
    config, overrides = _entrypoint_command(entrypoint)
    assert os.path.isfile(os.path.join(ROOT, config)), f"{config} is not in the repository (nor the image)"
    cfg = load_config(os.path.join(ROOT, config), overrides)
    assert cfg.run.output_dir.startswith("s3://"), "a RayJob's outputs must outlive its cluster"
    assert cfg.trainer.use_gpu and cfg.data.train.startswith("s3://")
    # Relative paths in the config resolve against the image's /opt/distrec on every node.
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == IMAGE_WORKDIR
    assert runtime_env["env_vars"]["RAY_CHDIR_TO_TRIAL_DIR"] == "0"
    assert os.path.isfile(os.path.join(ROOT, cfg.data.schema)), cfg.data.schema


# --- one image, one Ray version -------------------------------------------------------------


def test_one_image_everywhere_and_documented():
    images = _images()
    assert len(set(images.values())) == 1, f"manifests name different images: {images}"
    image = next(iter(images.values()))
    version = re.search(r'^version = "([^"]+)"', _text("pyproject.toml"), re.M).group(1)
    assert image.endswith(f":{version}"), f"image tag of {image} should be the package version {version}"
    cluster_readme = _text("cluster/README.md")
    assert f"docker build -t {image} ." in cluster_readme, "cluster/README.md should say how to build the image"
    # Any image reference elsewhere in the docs names the same image.
    for doc in ("README.md", "cluster/README.md", "docs/scale.md"):
        if os.path.isfile(os.path.join(ROOT, doc)):
            for ref in re.findall(r"\b(?:ghcr\.io|docker\.io|[\w.-]+\.ecr\.[\w.-]+)/[\w./-]+:[\w.-]+", _text(doc)):
                assert ref.rstrip(".") == image, f"{doc} names image {ref}, the manifests {image}"


def test_ray_version_matches_image_base_and_pin():
    base = re.search(r"^FROM rayproject/ray:(\d+\.\d+\.\d+)", _text("Dockerfile"), re.M).group(1)
    pinned = re.search(r'"ray\[[^\]]*\]==([^"]+)"', _text("pyproject.toml")).group(1)
    assert base == pinned
    for name, spec in _cluster_specs():
        assert str(spec["rayVersion"]) == pinned, name


# --- the preset fits its GPUs ---------------------------------------------------------------


def test_cluster_1b_plan_fits_hbm(capsys):
    from distrec.cli import main
    from distrec.methods import load_config

    cfg = load_config(os.path.join(ROOT, PRESET))
    world = cfg.trainer.num_workers
    assert world == 32 and cfg.trainer.use_gpu and cfg.sharding.hbm_gb
    cwd = os.getcwd()
    os.chdir(ROOT)  # the preset's data.schema is relative to the repository root
    try:
        assert main(["plan", PRESET, "--device", "cuda", "--world-size", str(world)]) == 0
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert f"sharding plan: {world} ranks, device cuda" in out
    totals = {int(m.group(1)): float(m.group(3))
              for m in re.finditer(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s*$", out, re.M)}
    assert sorted(totals) == list(range(world)), "one total per rank"
    budget_mib = cfg.sharding.hbm_gb * 1024
    assert max(totals.values()) < budget_mib, f"rank total {max(totals.values()):.0f} MiB > {budget_mib:.0f} MiB"
    # Every table is placed; the big ones follow their sharding constraint.
    assert re.search(r"^user_id\s+row_wise\s+31\s", out, re.M)
    for table, types in cfg.sharding.tables.items():
        kinds = set(re.findall(rf"^{table}\s+(\w+)\s", out, re.M))
        assert kinds and kinds <= set(types.sharding_types), (table, kinds)
    # docs/scale.md quotes this output; re-paste it there when the plan changes.
    assert out.strip() in _text("docs/scale.md"), "docs/scale.md shows an outdated cluster-1b plan"


# --- launch scripts -------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["local.sh", "submit.sh", "kuberay.sh"])
def test_launch_scripts(script):
    path = os.path.join(ROOT, "launch", script)
    subprocess.run(["bash", "-n", path], check=True)
    text = open(path).read()
    assert "set -euo pipefail" in text
    assert os.access(path, os.X_OK), f"launch/{script} should be executable"
    usage = subprocess.run(["bash", path, "--help"], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 0 and usage.stdout.startswith(f"usage: launch/{script}")
    bare = subprocess.run(["bash", path], capture_output=True, text=True, timeout=10)
    assert bare.returncode == 2 and "usage:" in bare.stderr


def test_kuberay_script_renders_the_rayjob_with_another_config():
    rendered = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", "kuberay.sh"), "configs/ctr/smoke.yaml", "trainer.max_steps=5",
         "run.name=a b", "--dry-run"],
        capture_output=True, text=True, timeout=30, check=True, cwd=ROOT,
    ).stdout
    job = yaml.safe_load(rendered)
    assert job["metadata"]["name"] == "distrec-ctr-smoke"
    config, overrides = _entrypoint_command(job["spec"]["entrypoint"])
    assert config == "configs/ctr/smoke.yaml"
    assert overrides[-2:] == ["trainer.max_steps=5", "run.name=a b"]  # after the template's, so they win
    assert job["spec"]["rayClusterSpec"] == _load(RAYJOB)["spec"]["rayClusterSpec"]
