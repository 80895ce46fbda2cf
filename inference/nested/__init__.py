"""Nested sampling: evidences with their standard errors, and weighted posterior draws.

>>> import probinfer as pi
>>> post = pi.nested(target, key=0, num_live=500)                  # doctest: +SKIP
>>> post.log_evidence, post.diagnostics["log_evidence_se"]         # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.nested.runner import NUM_VOLUME_DRAWS, STOP_FRACTION, Slice, nested

__all__ = ["nested", "Slice", "STOP_FRACTION", "NUM_VOLUME_DRAWS"]

runners.register("nested", nested)
