"""The MSD serving-cost benchmark runs (--tiny) and writes its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

from test_msd_knowledge import slice_config

from distrec.methods.msd.data import ensure_imported

REPO = str(Path(__file__).resolve().parents[3])


def test_inference_cost_benchmark_tiny(tmp_path, shared_data):
    cfg = slice_config(tmp_path, shared_data)
    ensure_imported(cfg)
    overrides = [f"data.train={cfg.data.train}", f"data.valid={cfg.data.valid}", f"data.schema={cfg.data.schema}",
                 f"method.entities.items_path={cfg.method.entities.items_path}",
                 f"method.entities.users_path={cfg.method.entities.users_path}",
                 f"method.entities.sequences_path={cfg.method.entities.sequences_path}",
                 f"method.distill.output={tmp_path}/no-student", "method.student.max_length=8"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "benchmarks/msd_inference_cost.py", "configs/msd/smoke.yaml", *overrides,
                    "--tiny", "--out-dir", str(tmp_path)], cwd=REPO, env=env, check=True, timeout=300)
    report = json.loads((tmp_path / "msd_inference_cost.json").read_text())
    assert set(report["results"]) == {"base", "msd, cache", "msd, online"}
    assert 0.0 <= report["cache_hit_rate"] <= 1.0
    assert all(r["rows_per_s"] > 0 for r in report["results"].values())
    assert report["results"]["base"]["vs_base"] == 1.0
