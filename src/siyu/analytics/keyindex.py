"""The duplicate index: every stored ``dedup_key`` of one (table, brand), sorted in memory.

It is a cache, never the truth. The truth is the set of data files in the Delta table; the
index remembers which files it has read and, before each use, reads the ``dedup_key`` column
of files it has not seen (normally none: the writer hands over the keys it just wrote). If
a file it had read is gone (compaction, erasure) it starts over. So a long-running server or
worker pays O(new files) per batch, and a fresh process pays one scan of one int64 column.

Lookups are a binary search (``numpy.searchsorted``) and return, for each hit, the day
partition the stored key lives in, so that the caller can confirm a hit against the exact
ids by reading only those days.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

_indexes: dict[tuple[str, str], KeyIndex] = {}
_guard = threading.Lock()


class KeyIndex:
    def __init__(self) -> None:
        import numpy as np

        self.files: set[str] = set()
        self.keys: np.ndarray = np.empty(0, dtype=np.int64)
        self.days: np.ndarray = np.empty(0, dtype=np.int32)

    def _reset(self) -> None:
        import numpy as np

        self.files = set()
        self.keys = np.empty(0, dtype=np.int64)
        self.days = np.empty(0, dtype=np.int32)

    def refresh(
        self, dt: Any, brand_id: str, written: tuple[np.ndarray, np.ndarray] | None = None
    ) -> None:
        """Bring the index up to the table's current files for ``brand_id``.

        ``written``: keys and days of the files this process has just committed (under the
        writer lock), added without reading them back.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        # The Delta log's add actions list the files with their partition values: much
        # cheaper than building a dataset (which inspects every file) on each append.
        actions = pa.table(dt.get_add_actions(flatten=True))
        actions = actions.filter(pc.equal(actions.column("partition.brand_id"), brand_id))
        paths = actions.column("path").to_pylist()
        if self.files - set(paths):
            self._reset()
        fresh = [i for i, path in enumerate(paths) if path not in self.files]
        if not fresh:
            return
        if written is not None and len(self.files) > 0:
            keys, days = written
        else:
            day_col = actions.column("partition.dt").take(pa.array(fresh))
            keys, days = _read_keys(dt, [paths[i] for i in fresh], day_col)
        self._merge(np.asarray(keys, dtype=np.int64), np.asarray(days, dtype=np.int32))
        self.files.update(paths)

    def _merge(self, keys: np.ndarray, days: np.ndarray) -> None:
        import numpy as np

        order = np.argsort(keys)  # quicksort: stability is not needed, speed is
        keys, days = keys[order], days[order]
        if self.keys.size == 0:
            self.keys, self.days = keys, days
            return
        # One O(n) insert instead of re-sorting everything: batches are small next to the index.
        pos = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, pos, keys)
        self.days = np.insert(self.days, pos, days)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask over ``keys``, days of every stored key equal to a hit)."""
        import numpy as np

        if self.keys.size == 0 or keys.size == 0:
            return np.zeros(keys.size, dtype=bool), np.empty(0, dtype=np.int32)
        # Searching in key order walks the index forward: far fewer cache misses.
        order = np.argsort(keys)
        left = np.empty(keys.size, dtype=np.int64)
        right = np.empty(keys.size, dtype=np.int64)
        left[order] = np.searchsorted(self.keys, keys[order], side="left")
        right[order] = np.searchsorted(self.keys, keys[order], side="right")
        hit = right > left
        if not hit.any():
            return hit, np.empty(0, dtype=np.int32)
        lo, hi = left[hit], right[hit]
        days = [self.days[lo]]
        # A key stored more than once (two ids with one hash) lives in several places.
        for a, b in zip(lo[hi - lo > 1], hi[hi - lo > 1], strict=True):
            days.append(self.days[a:b])
        return hit, np.unique(np.concatenate(days))


def _read_keys(dt: Any, paths: list[str], days: Any) -> tuple[np.ndarray, np.ndarray]:
    """``dedup_key`` of the given data files, with each file's day."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pds
    from pyarrow import fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(dt.table_uri)
    files = [f"{root.rstrip('/')}/{p}" for p in paths]
    part = pds.FileSystemDataset.from_paths(
        files,
        schema=pa.schema([("dedup_key", pa.int64()), ("dt", pa.date32())]),
        format=pds.ParquetFileFormat(),
        filesystem=filesystem,
        partitions=[pds.field("dt") == day for day in days],
    )
    got = part.to_table(columns=["dedup_key", "dt"])
    keys = got.column("dedup_key").to_numpy()
    day_numbers = pc.cast(got.column("dt"), pa.int32()).to_numpy(zero_copy_only=False)
    return np.asarray(keys), np.asarray(day_numbers)


def index_for(table_uri: str, brand_id: str) -> KeyIndex:
    with _guard:
        return _indexes.setdefault((table_uri, brand_id), KeyIndex())


def forget(table_uri: str) -> None:
    """Drop cached indexes of a table (after compaction or erasure rewrote its files)."""
    with _guard:
        for key in [k for k in _indexes if k[0] == table_uri]:
            del _indexes[key]
