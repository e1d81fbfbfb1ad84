"""Data path: distrec's Parquet reader vs raw pyarrow vs Ray Data, local and S3, and the trainer's rate.

    python benchmarks/data_path.py [--rows 1000000] [--s3-rows 300000] [--batch-sizes 512 4096]

Writes Criteo-like synthetic Parquet (26 sparse fields, one multi-hot, 13 dense, as in
engine_overhead), copies it to a moto S3 server on 127.0.0.1 (run in a child process so it does
not share the readers' interpreter; fake credentials in the environment), then reads every row
of the same files and columns, interleaved, best of ``--rounds``, in one process:

  raw_pyarrow     pyarrow.parquet.ParquetFile(...).iter_batches(batch_size, columns) over each
                  file, batches discarded (S3: pyarrow's S3FileSystem)
  distrec_reader  ParquetStreamReader end to end: fixed-size RecBatch (KeyedJaggedTensor,
                  dense, labels), as a training worker consumes it
  ray_data        ray.data.read_parquet(files, columns).iter_batches(batch_size,
                  batch_format="pyarrow") on a local Ray (started here unless one is running)

Then the trainer's own consumption rate: samples/s of distrec's 1-process training step
(engine_overhead.py's distrec loop, same data layout, its default model and batch size).
Goals (issue 8): reader >= 0.8x raw pyarrow, and >= 3x the trainer's rate; the JSON says
plainly whether each holds. Writes benchmarks/results/data_path.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import engine_overhead  # noqa: E402
from benchmarks._common import (  # noqa: E402
    PRELOAD,
    add_common_args,
    backend_for,
    interleaved_rounds,
    machine_info,
    print_table,
    quiet,
    settings,
    spawn,
    spread,
    worker_threads,
    write_report,
)

NAME = "data_path"
DEFAULTS = dict(rows=1_000_000, s3_rows=300_000, batch_sizes=[512, 4096], rounds=3, rows_per_file=250_000,
                rows_per_row_group=50_000, trainer_steps=20, trainer_rounds=2)
TINY = dict(rows=6_000, s3_rows=3_000, batch_sizes=[256], rounds=1, rows_per_file=2_000,
            rows_per_row_group=1_000, trainer_steps=4, trainer_rounds=1)
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "distrec-bench"


# --- S3 on loopback ------------------------------------------------------------------------------


def _serve_moto(queue, stop) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    queue.put(server.get_host_and_port())
    stop.wait()
    server.stop()


class MotoServer:
    """A moto S3 server on 127.0.0.1 in a child process; ``endpoint`` is its URL."""

    def __enter__(self) -> "MotoServer":
        import torch.multiprocessing as mp

        mp.set_forkserver_preload(PRELOAD)
        ctx = mp.get_context("forkserver")
        queue, self._stop = ctx.Queue(), ctx.Event()
        self._proc = ctx.Process(target=_serve_moto, args=(queue, self._stop), daemon=True)
        self._proc.start()
        host, port = queue.get(timeout=120)
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def s3_filesystem(endpoint: str):
    import pyarrow.fs as pafs

    host = endpoint.split("://", 1)[1]
    return pafs.S3FileSystem(access_key=FAKE_AWS["AWS_ACCESS_KEY_ID"], secret_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
                             endpoint_override=host, scheme="http", region="us-east-1",
                             allow_bucket_creation=True)


# --- the readers -----------------------------------------------------------------------------------


def raw_pyarrow(paths: list[str], columns: list[str], batch_size: int, filesystem=None) -> int:
    import pyarrow.parquet as pq

    n = 0
    for path in paths:
        source = filesystem.open_input_file(path) if filesystem is not None else path
        pf = pq.ParquetFile(source, pre_buffer=filesystem is not None)
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
            n += batch.num_rows
    return n


def distrec_reader(schema, units, batch_size: int, s3_endpoint_url: str | None = None) -> int:
    from distrec.data.reader import ParquetStreamReader

    return sum(b.batch_size for b in ParquetStreamReader(schema, units, batch_size, s3_endpoint_url=s3_endpoint_url))


def ray_data(paths: list[str], columns: list[str], batch_size: int, filesystem=None) -> int:
    import ray

    ds = ray.data.read_parquet(paths, columns=columns, filesystem=filesystem)
    return sum(b.num_rows for b in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow", prefetch_batches=2))


os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # no per-dataset "execution finished" lines


def start_ray() -> bool:
    """A local Ray on 127.0.0.1 unless one is up (the test suite's); True if started here."""
    import ray

    if ray.is_initialized():
        return False
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {k: os.environ[k] for k in FAKE_AWS}})
    return True


def quiet_ray_data() -> None:
    import logging

    import ray

    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def measure(methods: dict, rows: int, rounds: int) -> dict:
    counts: dict = {}
    times = interleaved_rounds(methods, rounds, on_result=lambda n, r, out: counts.setdefault(n, set()).add(out))
    out = {}
    for name, t in times.items():
        wall, cpu = min(t["walls"]), min(t["cpus"])
        out[name] = {"rows_per_s": round(rows / wall), "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
                     "spread": spread(t["walls"]), "rows_read": sorted(counts[name]),
                     "all_rows": counts[name] == {rows}}
    raw = out["raw_pyarrow"]
    for m in out.values():
        m["ratio_vs_raw"] = round(m["rows_per_s"] / raw["rows_per_s"], 3)
        m["cpu_ratio_vs_raw"] = round(raw["cpu_s"] / m["cpu_s"], 3) if m["cpu_s"] else None
    return out


# --- the trainer's rate ----------------------------------------------------------------------------


def trainer_rate(data_dir: str, tmp: str, device: str, steps: int, rounds: int, tiny: bool) -> dict:
    """samples/s of distrec's 1-process training step on this data (engine_overhead's distrec loop)."""
    s = engine_overhead.TINY if tiny else engine_overhead.DEFAULTS
    cfg = engine_overhead.make_config(data_dir, f"{tmp}/runs", s["batch_size"], s["embedding_dim"], device)
    out = spawn(engine_overhead.overhead_worker, 1, cfg, f"{tmp}/runs/trainer", steps, rounds,
                worker_threads(1), backend=backend_for(device))
    summary = engine_overhead.summarize(out, 1, s["batch_size"])
    loop = summary["loops"]["distrec"]
    return {"samples_per_s": loop["samples_per_s"], "spread": loop["spread"], "batch_size": s["batch_size"],
            "steps": summary["steps"], "rounds": rounds, "threads": worker_threads(1),
            "model": f"{cfg['model']['arch']} dim {cfg['model']['embedding_dim']}, dense {cfg['model']['dense_arch']},"
                     f" over {cfg['model']['over_arch']}, row-wise tables, fused row-wise Adagrad, Adam"}


# --- driver ----------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--rows", type=int, default=None, help="rows read locally")
    parser.add_argument("--s3-rows", type=int, default=None, help="rows read from S3 (0: skip S3)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--no-ray", action="store_true", help="leave Ray Data out")
    args = parser.parse_args(argv)
    quiet()
    s = settings(args, TINY, DEFAULTS)
    saved_env = {k: os.environ.get(k) for k in FAKE_AWS}
    os.environ.update(FAKE_AWS)
    results: dict = {"local": {}, "s3": {}}
    started_ray = False
    try:
        with tempfile.TemporaryDirectory(prefix="distrec-bench-data-") as tmp:
            from distrec.data.reader import plan_units
            from distrec.storage import list_parquet_files

            local = f"{tmp}/local"
            t = time.perf_counter()
            schema = engine_overhead.write_data(local, s["rows"], 26, 13, 100_000, s["rows_per_file"],
                                                s["rows_per_row_group"])
            write_s = time.perf_counter() - t
            files = list_parquet_files(local)
            units = plan_units(files, schema=schema)
            cols = schema.columns
            if not args.no_ray:
                started_ray = start_ray()
                quiet_ray_data()
            for bs in s["batch_sizes"]:
                methods = {
                    "raw_pyarrow": lambda bs=bs: raw_pyarrow(files, cols, bs),
                    "distrec_reader": lambda bs=bs: distrec_reader(schema, units, bs),
                }
                if not args.no_ray:
                    methods["ray_data"] = lambda bs=bs: ray_data(files, cols, bs)
                results["local"][bs] = measure(methods, s["rows"], s["rounds"])

            if s["s3_rows"]:
                s3_local = f"{tmp}/s3src"
                engine_overhead.write_data(s3_local, s["s3_rows"], 26, 13, 100_000, s["rows_per_file"],
                                           s["rows_per_row_group"])
                with MotoServer() as moto:
                    import pyarrow.fs as pafs

                    fs = s3_filesystem(moto.endpoint)
                    fs.create_dir(BUCKET)
                    pafs.copy_files(s3_local, f"{BUCKET}/data", source_filesystem=pafs.LocalFileSystem(),
                                    destination_filesystem=fs)
                    s3_files = list_parquet_files(f"s3://{BUCKET}/data", moto.endpoint)
                    s3_paths = [f.split("://", 1)[1] for f in s3_files]
                    s3_units = plan_units(s3_files, moto.endpoint, schema)
                    for bs in s["batch_sizes"]:
                        methods = {
                            "raw_pyarrow": lambda bs=bs: raw_pyarrow(s3_paths, cols, bs, fs),
                            "distrec_reader": lambda bs=bs: distrec_reader(schema, s3_units, bs, moto.endpoint),
                        }
                        if not args.no_ray:
                            methods["ray_data"] = lambda bs=bs: ray_data(s3_paths, cols, bs, fs)
                        results["s3"][bs] = measure(methods, s["s3_rows"], s["rounds"])

            trainer = trainer_rate(local, tmp, args.device, s["trainer_steps"], s["trainer_rounds"], args.tiny)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if started_ray:
            import ray

            ray.shutdown()

    goals = {}
    for where, by_bs in results.items():
        for bs, r in by_bs.items():
            reader = r["distrec_reader"]["rows_per_s"]
            goals[f"{where}_batch_{bs}"] = {
                "reader_vs_raw_pyarrow": r["distrec_reader"]["ratio_vs_raw"],
                "reader_ge_0.8x_raw": r["distrec_reader"]["ratio_vs_raw"] >= 0.8,
                "reader_vs_trainer": round(reader / trainer["samples_per_s"], 2),
                "reader_ge_3x_trainer": reader >= 3 * trainer["samples_per_s"],
                **({"reader_vs_ray_data": round(reader / r["ray_data"]["rows_per_s"], 2)} if "ray_data" in r else {}),
            }
    verdict = []
    for key, g in goals.items():
        verdict.append(f"{key}: reader {g['reader_vs_raw_pyarrow']:.2f}x raw pyarrow "
                       f"({'meets' if g['reader_ge_0.8x_raw'] else 'does NOT meet'} the 0.8x goal), "
                       f"{g['reader_vs_trainer']:.1f}x the trainer's rate "
                       f"({'meets' if g['reader_ge_3x_trainer'] else 'does NOT meet'} the 3x goal)")
    report = {
        "benchmark": NAME,
        "what": "rows/s reading the same Parquet files and columns: distrec reader vs raw pyarrow vs Ray Data, "
                "local and S3 (moto on 127.0.0.1); plus the trainer's samples/s",
        "settings": {**s, "columns": len(cols), "files": len(files), "row_groups": len(units),
                     "device": args.device, "tiny": args.tiny, "ray_data": not args.no_ray,
                     "s3_server": "moto ThreadedMotoServer on 127.0.0.1 in a child process",
                     "synth_write_rows_per_s": round(s["rows"] / write_s)},
        "results": {where: {str(bs): r for bs, r in by_bs.items()} for where, by_bs in results.items()},
        "trainer": trainer,
        "goals": goals,
        "verdict": verdict,
        "note": "every reader runs alone in one process here; in training the reader shares the worker's "
                "cores with the step (pyarrow decodes in its own threads)",
        "machine": machine_info(args.device),
    }
    for where, by_bs in results.items():
        for bs, r in by_bs.items():
            print_table(["reader", "rows/s", "vs raw", "cpu s", "cpu vs raw", "spread", "all rows"],
                        [[n, m["rows_per_s"], m["ratio_vs_raw"], m["cpu_s"], m["cpu_ratio_vs_raw"], m["spread"],
                          m["all_rows"]] for n, m in r.items()],
                        title=f"{where}, batch {bs}, {s['rows'] if where == 'local' else s['s3_rows']:,} rows, "
                              f"best of {s['rounds']}")
    print(f"\ntrainer (distrec, 1 process, batch {trainer['batch_size']}): {trainer['samples_per_s']:,.0f} samples/s")
    for line in verdict:
        print(line)
    write_report(NAME, report, args.out_dir, args.device)
    return report


if __name__ == "__main__":
    main()
