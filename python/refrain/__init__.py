"""Refrain: does a generated clip copy something in the training set?

    import refrain
    index = refrain.Index.open("INDEX_DIR")      # written by `refrain index`
    auditor = index.auditor()
    v = auditor.check(samples, sample_rate)      # (n,) or (n, channels) floats
    if v.flagged:
        print(v.match, v.audio_score, v.melody_score, v.query_start_s, v.match_start_s)

Every check releases the GIL; an auditor may be shared between threads.
``check_batch`` audits many clips on all cores, ``stream`` checks audio while
it is generated. Bad input raises ValueError or TypeError with the reason.
"""

from ._refrain import (
    Auditor,
    Candidate,
    Index,
    IndexBuilder,
    Stream,
    Verdict,
    __version__,
)

__all__ = [
    "Auditor",
    "Candidate",
    "Index",
    "IndexBuilder",
    "Stream",
    "Verdict",
    "__version__",
]
