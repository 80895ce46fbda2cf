"""Progress bars for jitted loops.

A ``lax.scan`` body cannot print, so the bar lives on the host and the body calls it through
``jax.debug.callback`` every ``every`` steps. Only the top-level scan may call it (not inside
``vmap``), which is how the runners use it.
"""

import sys

import jax
import jax.numpy as jnp

__all__ = ["ProgressBar", "should_show"]


def should_show(progress, num_steps):
    """``progress`` may be True, False or ``"auto"`` (shown on a terminal for long runs)."""
    if progress == "auto":
        return sys.stderr.isatty() and num_steps >= 500
    return bool(progress)


class ProgressBar:
    """A tqdm bar advanced from inside jitted code.

    >>> bar = ProgressBar(1000, "sampling")       # doctest: +SKIP
    >>> bar.tick(i)                               # inside the scan body  # doctest: +SKIP
    """

    def __init__(self, total, description, enabled=True, every=None):
        self.total = int(total)
        self.every = every or max(1, self.total // 100)
        self.enabled = enabled
        self._bar = None
        self._description = description

    def _update(self, i):
        # A compiled program keeps its bar between runs (runners cache their programs): a step
        # index below the bar's count is a new run, which gets a new bar.
        if self._bar is None or int(i) + 1 < self._bar.n:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self._description, leave=True, file=sys.stderr)
        self._bar.update(int(i) + 1 - self._bar.n)
        if self._bar.n >= self.total:
            self._bar.close()

    def tick(self, i):
        """Call inside the scan body with the step index ``i`` (traced int)."""
        if not self.enabled:
            return
        last = i == self.total - 1
        hit = ((i + 1) % self.every == 0) | last
        jax.lax.cond(hit, lambda: jax.debug.callback(self._update, i), lambda: None)

    def steps(self):
        """Step indices to feed the scan as ``xs``."""
        return jnp.arange(self.total)
