"""A sharded index on a Ray cluster: build shards in parallel Ray tasks,
serve them as Ray actors, audit clips against all of them at once.

    import ray, refrain.ray as rr
    ray.init()
    layout = rr.build_shards(items, 3, "/shared/index")   # items: (name, samples, rate)
    auditor = rr.ShardedAuditor.open(layout)
    v = auditor.check(samples, rate)                      # a refrain.Verdict
    ds = auditor.audit_dataset(ray.data.from_items(rows)) # Ray Data

Every verdict and score equals that of one index holding all items (in
order): a check runs in three steps against every shard and the driver
merges what depends on the whole index (which hashes are looked up, the
nearest windows, the landmark background, the candidate lists) between them;
see `docs/scale.md` and the library's `refrain::shard` for why this is exact.

Shards are Ray actors with `max_restarts` and `max_task_retries`: an actor
that dies is restarted by Ray (it reopens its index directory) and the step
is retried. A check never skips a shard: when one cannot answer after the
retries, the check raises `ShardUnavailableError` naming it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import ray
import ray.data
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from . import _refrain
from ._errors import InvalidInputError, RefrainError
from ._refrain import Verdict

__all__ = [
    "ShardUnavailableError",
    "ShardLayout",
    "ShardInfo",
    "build_shards",
    "ShardedAuditor",
]

#: A training item: (name, samples, sample rate), or (name, path of an audio file).
Item = Union[Tuple[str, Any, Union[int, float]], Tuple[str, str]]

#: Restarts Ray gives a shard actor that dies (it reopens its index directory).
MAX_RESTARTS = 3
#: Retries of a step whose actor died while running it.
MAX_TASK_RETRIES = 3


class ShardUnavailableError(RefrainError, RuntimeError):
    """A shard could not answer a check after Ray's restarts and retries.
    The check is not answered from the other shards (that would change
    verdicts); check the shard's node and index directory, then retry."""

    def __init__(self, shard: int, path: str, cause: str) -> None:
        super().__init__(
            f"shard {shard} ({path}) did not answer after {MAX_RESTARTS} restarts and "
            f"{MAX_TASK_RETRIES} retries: {cause}; check that its node is up and its index "
            f"directory is readable from every node, then retry the check"
        )
        self.shard = shard
        self.path = path
        self.cause = cause

    def __reduce__(self) -> Tuple[Any, Tuple[int, str, str]]:
        # picklable, so that it crosses Ray tasks (a Ray Data worker) intact
        return (ShardUnavailableError, (self.shard, self.path, self.cause))


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its index directory and its place in the whole."""

    path: str
    items: int
    windows: int
    item_offset: int
    window_offset: int


@dataclass(frozen=True)
class ShardLayout:
    """The shards of one index, in item order (shard k holds the items
    `item_offset..item_offset + items`)."""

    shards: Tuple[ShardInfo, ...]

    @staticmethod
    def of_dirs(paths: Sequence[Union[str, "os.PathLike[str]"]]) -> "ShardLayout":
        """The layout of existing shard directories, in item order."""
        shards = []
        items = windows = 0
        for p in paths:
            s = _refrain.Shard.open(os.fspath(p))
            shards.append(ShardInfo(os.fspath(p), len(s), s.windows, items, windows))
            items += len(s)
            windows += s.windows
        if not shards:
            raise InvalidInputError("a sharded index needs at least one shard directory")
        return ShardLayout(tuple(shards))

    def __len__(self) -> int:
        return sum(s.items for s in self.shards)


def _add(builder: _refrain.IndexBuilder, item: Item) -> bool:
    if len(item) == 2:
        name, path = item
        return builder.add_file(str(name), str(path))
    name, samples, rate = item
    return builder.add(str(name), samples, rate)


@ray.remote
def _build_shard(items: List[Item], path: str) -> Tuple[int, int]:
    b = _refrain.IndexBuilder()
    for it in items:
        _add(b, it)
    b.build(path)
    s = _refrain.Shard.open(path)
    return len(s), s.windows


def build_shards(
    items: Sequence[Item],
    shards: int,
    out_dir: Union[str, "os.PathLike[str]"],
    *,
    num_cpus: float = 1,
) -> ShardLayout:
    """Builds an index of `items` as `shards` shard directories
    (`out_dir/shard-000`, ...), one Ray task each, in parallel. Shard k gets
    the k-th contiguous run of the items, so the shards together hold the
    items in the order one index built from `items` would.

    `out_dir` must be readable by every node that will serve a shard (a
    shared file system on a real cluster). Each shard leaves out samples it
    already holds; the same samples in two shards are two items (one
    index would hold one).
    """
    if shards < 1:
        raise InvalidInputError(f"shards must be at least 1, not {shards}")
    items = list(items)
    if len(items) < shards:
        raise InvalidInputError(
            f"{len(items)} item(s) cannot fill {shards} shards: give fewer shards"
        )
    root = os.fspath(out_dir)
    os.makedirs(root, exist_ok=True)
    bounds = [round(k * len(items) / shards) for k in range(shards + 1)]
    paths = [os.path.join(root, f"shard-{k:03d}") for k in range(shards)]
    task = _build_shard.options(num_cpus=num_cpus)
    sizes = ray.get(
        [task.remote(items[bounds[k] : bounds[k + 1]], paths[k]) for k in range(shards)]
    )
    out = []
    n = w = 0
    for p, (items_k, windows_k) in zip(paths, sizes):
        out.append(ShardInfo(p, items_k, windows_k, n, w))
        n += items_k
        w += windows_k
    return ShardLayout(tuple(out))


class _ShardActor:
    """Serves one shard; Ray restarts it from its index directory."""

    def __init__(self, path: str, item_offset: int, window_offset: int) -> None:
        self.shard = _refrain.Shard.open(path, item_offset, window_offset)

    def pid(self) -> int:
        """The actor's process id (a restart gives a new one)."""
        return os.getpid()

    def ready(self) -> Tuple[int, str, str]:
        return len(self.shard), self.shard.params_json, self.shard.thresholds_json

    def probe(self, query: bytes) -> bytes:
        return self.shard.probe(query)

    def search(self, query: bytes, request: bytes) -> bytes:
        return self.shard.search(query, request)

    def score(self, query: bytes, request: bytes) -> bytes:
        return self.shard.score(query, request)


#: The shard actor class: Ray restarts a dead one (up to MAX_RESTARTS
#: times, re-running its constructor, which reopens the index directory)
#: and retries the steps it was running (up to MAX_TASK_RETRIES).
ShardActor: Any = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES)(
    _ShardActor
)


class ShardedAuditor:
    """Checks clips against every shard of an index; each verdict equals
    that of one index holding all items. Thresholds default to the
    shards' stored ones; `calibrate` sets them from merged verdicts."""

    def __init__(
        self,
        layout: ShardLayout,
        actors: Sequence[Any],
        params_json: str,
        thresholds_json: str,
        *,
        top_k: int = 5,
        timeout_s: Optional[float] = None,
    ) -> None:
        self.layout = layout
        self.actors = list(actors)
        self.driver = _refrain.ShardDriver(params_json)
        self.params_json = params_json
        self.thresholds_json = thresholds_json
        self.top_k = max(1, top_k)
        self.timeout_s = timeout_s

    @staticmethod
    def open(
        layout: ShardLayout,
        *,
        top_k: int = 5,
        audio_threshold: Optional[float] = None,
        melody_threshold: Optional[float] = None,
        num_cpus: float = 1,
        timeout_s: Optional[float] = None,
    ) -> "ShardedAuditor":
        """Starts one actor per shard (each opens its index directory) and
        waits until all are serving. Thresholds are the shards' stored
        ones, with the caller's overrides (which carry no calibration
        claim). `timeout_s` bounds each step of a check."""
        cls = ShardActor.options(num_cpus=num_cpus)
        actors = [cls.remote(s.path, s.item_offset, s.window_offset) for s in layout.shards]
        ready = _get_all(actors, layout, [a.ready.remote() for a in actors], timeout_s)
        params = {r[1] for r in ready}
        if len(params) != 1:
            raise InvalidInputError(
                "the shards were built with different analysis parameters: build every "
                "shard with the same version of refrain"
            )
        for s, r in zip(layout.shards, ready):
            if r[0] != s.items:
                raise InvalidInputError(
                    f"shard {s.path} holds {r[0]} items, the layout says {s.items}: "
                    f"rebuild the layout with ShardLayout.of_dirs"
                )
        thresholds = _refrain.override_thresholds(ready[0][2], audio_threshold, melody_threshold)
        return ShardedAuditor(
            layout, actors, ready[0][1], thresholds, top_k=top_k, timeout_s=timeout_s
        )

    def close(self) -> None:
        """Ends the shard actors (every auditor sharing them loses them)."""
        for a in self.actors:
            ray.kill(a, no_restart=True)

    @property
    def thresholds(self) -> Dict[str, Any]:
        """The thresholds in force (the full record, as JSON stores it)."""
        t: Dict[str, Any] = json.loads(self.thresholds_json)
        return t

    def _steps(self, query: bytes, exclude: Optional[int], t0: float) -> Verdict:
        q = ray.put(query)
        probes = self._all(lambda a: a.probe.remote(q))
        plan = self.driver.plan(query, probes, exclude)
        request = self.driver.plan_request(plan)
        matches = self._all(lambda a: a.search.remote(q, request))
        score_request = self.driver.gather(plan, matches)
        scored = self._all(lambda a: a.score.remote(q, score_request))
        ms = (time.perf_counter() - t0) * 1e3
        return self.driver.finish(query, scored, self.thresholds_json, self.top_k, ms)

    def _all(self, call: Any) -> List[bytes]:
        return _get_all(self.actors, self.layout, [call(a) for a in self.actors], self.timeout_s)

    def check(self, samples: Any, sample_rate: Union[int, float]) -> Verdict:
        """Audits one clip (as `refrain.Auditor.check` takes it)."""
        t0 = time.perf_counter()
        return self._steps(self.driver.query(samples, sample_rate), None, t0)

    def check_file(self, path: Union[str, "os.PathLike[str]"]) -> Verdict:
        """Audits an audio file (as `refrain.Auditor.check_file`)."""
        t0 = time.perf_counter()
        return self._steps(self.driver.query_file(os.fspath(path)), None, t0)

    def check_batch(
        self, clips: Iterable[Any], sample_rate: Union[int, float]
    ) -> List[Union[Verdict, RefrainError]]:
        """Audits many clips, one after the other (each against every
        shard); a clip that cannot be checked gives its exception in the
        list. A shard that cannot answer raises (it is not skipped)."""
        out: List[Union[Verdict, RefrainError]] = []
        for i, c in enumerate(clips):
            try:
                out.append(self.check(c, sample_rate))
            except ShardUnavailableError:
                raise
            except RefrainError as e:
                out.append(type(e)(f"clip {i}: {e}"))
        return out

    def calibrate(
        self,
        negatives: Iterable[Any],
        sample_rate: Union[int, float],
        *,
        target_fpr: float = 0.01,
        names: Optional[Sequence[str]] = None,
    ) -> Dict[str, Any]:
        """Calibrates the thresholds on `negatives` (clips known not to be
        in the training set) from their merged verdicts, so exactly as one
        index holding all items would, and uses them from now on. Returns
        the thresholds."""
        verdicts = []
        for c in negatives:
            verdicts.append(self.check(c, sample_rate))
        self.thresholds_json = _refrain.calibrate_thresholds(
            verdicts, target_fpr, names=list(names) if names is not None else None
        )
        return self.thresholds

    def audit_dataset(
        self,
        ds: "ray.data.Dataset",
        *,
        batch_size: int = 8,
        concurrency: int = 1,
        num_cpus: float = 1,
    ) -> "ray.data.Dataset":
        """Audits a Ray Data dataset whose rows hold a `path` (an audio
        file) or `samples` and `sample_rate` (an array), with `concurrency`
        Ray Data workers, each sending its clips to every shard actor.
        Returns the dataset with the columns `verdict`, `audio_score`,
        `melody_score`, `match`, `match_item` and `report` (the full report
        as JSON) added; a clip that cannot be checked gets the verdict
        `error` and the message in `error`."""
        fn = _AuditBatch
        return ds.map_batches(
            fn,
            fn_constructor_args=(
                self.layout,
                self.actors,
                self.params_json,
                self.thresholds_json,
                self.top_k,
                self.timeout_s,
            ),
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=concurrency,
            num_cpus=num_cpus,
        )


class _AuditBatch:
    """A Ray Data worker: audits its batches through the shard actors."""

    def __init__(
        self,
        layout: ShardLayout,
        actors: List[Any],
        params_json: str,
        thresholds_json: str,
        top_k: int,
        timeout_s: Optional[float],
    ) -> None:
        self.auditor = ShardedAuditor(
            layout, actors, params_json, thresholds_json, top_k=top_k, timeout_s=timeout_s
        )

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        n = len(next(iter(batch.values())))
        cols: Dict[str, List[Any]] = {
            k: [] for k in ("verdict", "audio_score", "melody_score", "match", "match_item", "report", "error")
        }
        for i in range(n):
            try:
                if "path" in batch:
                    v = self.auditor.check_file(str(batch["path"][i]))
                else:
                    v = self.auditor.check(
                        np.asarray(batch["samples"][i]), batch["sample_rate"][i].item()
                    )
            except ShardUnavailableError:
                raise
            except RefrainError as e:
                for k, x in (
                    ("verdict", "error"),
                    ("audio_score", np.nan),
                    ("melody_score", np.nan),
                    ("match", ""),
                    ("match_item", -1),
                    ("report", ""),
                    ("error", str(e)),
                ):
                    cols[k].append(x)
                continue
            cols["verdict"].append(v.verdict)
            cols["audio_score"].append(v.audio_score)
            cols["melody_score"].append(v.melody_score)
            cols["match"].append(v.match or "")
            cols["match_item"].append(-1 if v.match_item is None else v.match_item)
            cols["report"].append(v.to_json())
            cols["error"].append("")
        out = dict(batch)
        for k, vals in cols.items():
            out[k] = np.array(vals)
        return out


def _get_all(
    actors: List[Any], layout: ShardLayout, refs: List[Any], timeout_s: Optional[float]
) -> List[Any]:
    """Every shard's answer, in shard order; a shard that cannot answer
    (its actor dead beyond its restarts, or its retries spent) raises
    `ShardUnavailableError` naming it. The library's own errors (a bad
    query) are re-raised as they are."""
    out = []
    for k, r in enumerate(refs):
        try:
            out.append(ray.get(r, timeout=timeout_s))
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, RefrainError):
                raise cause from None
            raise ShardUnavailableError(k, layout.shards[k].path, str(e)) from e
        except (RayActorError, GetTimeoutError) as e:
            raise ShardUnavailableError(k, layout.shards[k].path, str(e)) from e
    return out
