"""Refrain: does a generated clip copy something in the training set?

    import refrain
    index = refrain.Index.open("INDEX_DIR")      # written by `refrain index`
    auditor = index.auditor()
    v = auditor.check(samples, sample_rate)      # (n,), (n, channels) or (channels, n) floats
    if v.flagged:
        print(v.match, v.audio_score, v.melody_score, v.query_start_s, v.match_start_s)

Every check releases the GIL; an auditor may be shared between threads.
``refrain.ray`` (with ``pip install refrain[ray]``) serves a sharded index
from Ray actors, with verdicts equal to one index's. ``check_batch`` audits many clips on all cores (one bad clip gives its
exception in the result list, not a failed batch), ``stream`` checks audio
while it is generated. Errors are ``refrain.RefrainError`` subclasses that
are also the built-in exception for their kind (bad input is a
``ValueError``, wrong types a ``TypeError``, a missing index a
``FileNotFoundError``).
"""

from ._errors import (
    IncompatibleError,
    InvalidInputError,
    InvalidTypeError,
    NotFoundError,
    RefrainError,
    RefrainOSError,
    StateError,
)
from ._refrain import (
    MIN_CLIP_S,
    MIN_JUDGED_S,
    Auditor,
    Candidate,
    Index,
    IndexBuilder,
    Stream,
    Verdict,
    __version__,
    calibrate_thresholds,
    override_thresholds,
)

__all__ = [
    "Auditor",
    "Candidate",
    "Index",
    "IndexBuilder",
    "Stream",
    "Verdict",
    "RefrainError",
    "InvalidInputError",
    "InvalidTypeError",
    "NotFoundError",
    "RefrainOSError",
    "IncompatibleError",
    "StateError",
    "calibrate_thresholds",
    "override_thresholds",
    "MIN_CLIP_S",
    "MIN_JUDGED_S",
    "__version__",
]
