"""Type stubs of the Rust extension `refrain._refrain` (see `src/lib.rs`)."""

from os import PathLike
from typing import Any, Optional, Sequence, Union, final

import numpy as np
import numpy.typing as npt

from ._errors import RefrainError

__version__: str
#: Clips shorter than this (seconds) cannot be analysed and are refused.
MIN_CLIP_S: float
#: Queries shorter than this (seconds) get a "too short to judge" note.
MIN_JUDGED_S: float

#: Samples: float32/float64 of shape (n,), (n, channels) or channels-first
#: (channels, n), as an array, a sequence, or any object with __array__.
Samples = Union[npt.NDArray[np.floating[Any]], Sequence[float], Sequence[Sequence[float]], Any]
#: A sample rate in Hz: an int, or a float with an integral value.
Rate = Union[int, float]
StrPath = Union[str, "PathLike[str]"]

@final
class Index:
    """A training-set index, opened once and shared by its auditors."""

    @staticmethod
    def open(path: StrPath) -> Index: ...
    def auditor(
        self,
        *,
        top_k: int = 5,
        audio_threshold: Optional[float] = None,
        melody_threshold: Optional[float] = None,
    ) -> Auditor: ...
    def __len__(self) -> int: ...
    @property
    def hours(self) -> float: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def thresholds(self) -> dict[str, Any]: ...

@final
class IndexBuilder:
    """Builds an index from samples held in memory."""

    def __init__(self) -> None: ...
    def add(self, name: str, samples: Samples, sample_rate: Rate) -> bool: ...
    def __len__(self) -> int: ...
    def build(self, path: Optional[StrPath] = None) -> Index: ...

@final
class Auditor:
    """Checks clips against one index; thread-safe."""

    def check(self, samples: Samples, sample_rate: Rate) -> Verdict: ...
    def check_batch(
        self, clips: Union[Sequence[Samples], npt.NDArray[np.floating[Any]], Any], sample_rate: Rate
    ) -> list[Union[Verdict, RefrainError]]: ...
    def stream(
        self,
        sample_rate: Rate,
        channels: int = 1,
        *,
        window_s: float = 10.0,
        every_s: float = 5.0,
    ) -> Stream: ...
    @property
    def thresholds(self) -> dict[str, Any]: ...

@final
class Stream:
    """A stream being checked while it is generated."""

    def push(self, chunk: Samples) -> Optional[Verdict]: ...
    def finish(self) -> Optional[Verdict]: ...
    @property
    def first_flag(self) -> Optional[Verdict]: ...
    @property
    def duration_s(self) -> float: ...

@final
class Candidate:
    """One candidate training item with its scores and evidence."""

    item: int
    path: str
    audio_score: float
    melody_score: float
    query_start_s: float
    query_end_s: float
    match_start_s: float
    match_end_s: float
    transpose_semitones: float
    tempo_ratio: float

@final
class Verdict:
    """The result of a check: pass or flag, both scores, and the evidence."""

    @property
    def flagged(self) -> bool: ...
    @property
    def verdict(self) -> str: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def audio_score(self) -> float: ...
    @property
    def melody_score(self) -> float: ...
    @property
    def match(self) -> Optional[str]: ...
    @property
    def match_item(self) -> Optional[int]: ...
    @property
    def query_start_s(self) -> Optional[float]: ...
    @property
    def query_end_s(self) -> Optional[float]: ...
    @property
    def match_start_s(self) -> Optional[float]: ...
    @property
    def match_end_s(self) -> Optional[float]: ...
    @property
    def transpose_semitones(self) -> Optional[float]: ...
    @property
    def tempo_ratio(self) -> Optional[float]: ...
    @property
    def audio_threshold(self) -> float: ...
    @property
    def melody_threshold(self) -> float: ...
    @property
    def thresholds(self) -> dict[str, Any]: ...
    @property
    def notes(self) -> list[str]: ...
    @property
    def window(self) -> Optional[tuple[float, float]]: ...
    @property
    def elapsed_ms(self) -> float: ...
    @property
    def candidates(self) -> list[Candidate]: ...
    def to_json(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...
