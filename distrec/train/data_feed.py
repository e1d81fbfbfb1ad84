"""The batches a worker trains and evaluates on, from the per-rank Parquet reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from distrec.config.schema import OnBadRows
from distrec.data.batch import RecBatch, pad_rows
from distrec.data.reader import (
    ParquetStreamReader,
    RowGroupUnit,
    make_loader,
    pad_to_steps,
    plan_units,
    steps_per_epoch,
)
from distrec.data.schema import FeatureSchema


@dataclass
class DataFeed:
    """Row groups of one split, planned once from the Parquet footers; batches per epoch."""

    schema: FeatureSchema
    units: list[RowGroupUnit]
    batch_size: int
    rank: int
    world_size: int
    seed: int
    shuffle: bool
    loader_workers: int
    s3_endpoint_url: str | None
    on_bad_rows: OnBadRows = OnBadRows.error

    @classmethod
    def open(cls, path: str, schema: FeatureSchema, batch_size: int, rank: int, world_size: int,
             seed: int, shuffle: bool, loader_workers: int, s3_endpoint_url: str | None,
             on_bad_rows: OnBadRows | str = OnBadRows.error) -> "DataFeed":
        units = plan_units(path, s3_endpoint_url, schema)
        return cls(schema, units, batch_size, rank, world_size, seed, shuffle, loader_workers, s3_endpoint_url,
                   OnBadRows(on_bad_rows))

    @property
    def num_rows(self) -> int:
        return sum(u.num_rows for u in self.units)

    def steps(self, epoch: int) -> int:
        """Steps every rank runs this epoch (the longest rank's batch count)."""
        return steps_per_epoch(self.units, self.batch_size, self.world_size, epoch, self.seed,
                               self.shuffle, self.loader_workers)

    def batches(self, epoch: int, start_batch: int = 0) -> Iterator[RecBatch]:
        """This rank's batches, each exactly ``batch_size`` rows (short ones padded with weight-0
        rows), then weight-0 batches until every rank has run the same number of steps."""
        reader = ParquetStreamReader(
            self.schema, self.units, self.batch_size, rank=self.rank, world_size=self.world_size,
            epoch=epoch, seed=self.seed, shuffle=self.shuffle, s3_endpoint_url=self.s3_endpoint_url,
            start_batch=start_batch, num_loader_workers=self.loader_workers, on_bad_rows=self.on_bad_rows,
        )
        padded = pad_to_steps(make_loader(reader), self.steps(epoch) - start_batch, self.schema)
        return (pad_rows(batch, self.batch_size) for batch in padded)
