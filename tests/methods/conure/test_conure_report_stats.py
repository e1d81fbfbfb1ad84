"""Conure report's paired comparisons against a direct computation: Conure minus a baseline per
seed, mean, standard error (sample std / sqrt(n)) and the two-standard-error verdict."""

import math
import statistics

from distrec.methods.conure.report import comparison_markdown, comparisons


def seeds(values: dict[int, dict[str, dict[int, float]]]) -> dict:
    return {"seeds": {seed: {"main_metric": table} for seed, table in values.items()},
            "main_metric": {task: {s: None for s in row} for task, row in values[0].items()}}


def test_paired_differences_standard_errors_and_verdicts():
    conure = seeds({s: {"t1": {1: 0.50 + d, 2: 0.50 + d}, "t2": {2: 0.30 + d}}
                    for s, d in enumerate((0.00, 0.01, 0.02))})
    finetune = seeds({s: {"t1": {1: 0.50 + d, 2: 0.40 + d / 2}, "t2": {2: 0.30 + e}}
                      for s, (d, e) in enumerate(((0.00, 0.01), (0.01, -0.01), (0.02, 0.02)))})
    vs = comparisons({"conure": conure, "finetune_all": finetune})["finetune_all"]
    forgot = [0.50 + d - (0.40 + d / 2) for d in (0.00, 0.01, 0.02)]
    last = vs["t1"]["last"]
    assert last["n"] == 3 and math.isclose(last["mean"], statistics.mean(forgot))
    assert math.isclose(last["se"], statistics.stdev(forgot) / math.sqrt(3))
    assert last["verdict"] == "better"
    assert vs["t1"]["own"]["mean"] == 0 and vs["t1"]["own"]["verdict"] == "within 2 SE"
    t2 = [0.30 + d - (0.30 + e) for d, e in ((0.00, 0.01), (0.01, -0.01), (0.02, 0.02))]
    assert math.isclose(vs["t2"]["own"]["mean"], statistics.mean(t2)) and vs["t2"]["own"]["verdict"] == "within 2 SE"
    assert "| t1 |" in "\n".join(comparison_markdown({"finetune_all": vs}))


def test_worse_and_single_seed_verdicts():
    conure = seeds({s: {"t1": {1: 0.2 + 0.001 * s}} for s in range(3)})
    separate = seeds({s: {"t1": {1: 0.3}} for s in range(3)})
    assert comparisons({"conure": conure, "separate": separate})["separate"]["t1"]["own"]["verdict"] == "worse"
    one = comparisons({"conure": seeds({0: {"t1": {1: 0.2}}}), "separate": seeds({0: {"t1": {1: 0.3}}})})
    assert one["separate"]["t1"]["own"]["verdict"] == "n/a (one seed)"
    assert comparisons({"separate": separate}) == {}


def test_majority_class_control_matches_a_direct_count(tmp_path, shared_data):
    import glob

    import pyarrow.parquet as pq

    from distrec.methods import load_config
    from distrec.methods.conure.importers.recbole import import_conure_recbole
    from distrec.methods.conure.report import majority_class_accuracy

    import_conure_recbole(str(shared_data / "ml-100k"), str(tmp_path), max_len=20)
    cfg = load_config("configs/conure/smoke.yaml", [f"method.data_root={tmp_path}", "method.eval_split=test"])
    controls = majority_class_accuracy(cfg)
    assert set(controls) == {"t3_gender"}

    def labels(split):
        return [v for f in glob.glob(f"{tmp_path}/t3_gender/{split}/*.parquet")
                for v in pq.read_table(f).column("label").to_pylist()]

    train, test = labels("train"), labels("test")
    majority = max(set(train), key=train.count)
    assert math.isclose(controls["t3_gender"], test.count(majority) / len(test), rel_tol=1e-6)
