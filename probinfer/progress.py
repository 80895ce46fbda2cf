"""Progress bars for jitted loops.

A ``lax.scan`` body cannot print, so the bar lives on the host and the body calls it through
``jax.debug.callback`` every ``every`` steps. Only the top-level scan may call it (not inside
``vmap``), which is how the runners use it.

Off a terminal (a job's log, a batch system) a bar is noise, but a long run must still say that
it moves: a bar in ``log_only`` mode (and :class:`Heartbeat` for loops driven from Python) writes
one line to stderr per ``HEARTBEAT_SECONDS`` once a run has taken that long, and nothing for a
short run.
"""

import sys
import time

import jax
import jax.numpy as jnp

__all__ = ["ProgressBar", "should_show", "host_bar", "Heartbeat", "HEARTBEAT_SECONDS"]

#: Seconds between the log lines of a run shown off a terminal (none before the first).
HEARTBEAT_SECONDS = 60.0


class Heartbeat:
    """One stderr line per ``every`` seconds of a long run, none for a short one.

    >>> beat = Heartbeat("smc")                          # doctest: +SKIP
    >>> beat("temperature 0.31 after 12 steps")          # doctest: +SKIP
    """

    def __init__(self, description, every=None):
        self.description = description
        self.every = HEARTBEAT_SECONDS if every is None else every
        self.restart()

    def restart(self):
        """A new run: the clock starts now."""
        self._start = self._last = time.monotonic()

    def __call__(self, text):
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            elapsed = now - self._start
            print(f"{self.description}: {text} ({elapsed:.0f} s)", file=sys.stderr, flush=True)


def should_show(progress, num_steps, minimum=500):
    """``progress`` may be True, False or ``"auto"`` (shown on a terminal for runs of at least
    ``minimum`` steps)."""
    if progress == "auto":
        return sys.stderr.isatty() and num_steps >= minimum
    return bool(progress)


def host_bar(total, description, show):
    """A tqdm bar advanced from Python between compiled calls (``with host_bar(...) as bar:
    bar.update(n)``); disabled unless ``show``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not show, leave=False, file=sys.stderr)


class ProgressBar:
    """A tqdm bar advanced from inside jitted code.

    >>> bar = ProgressBar(1000, "sampling")       # doctest: +SKIP
    >>> bar.tick(i)                               # inside the scan body  # doctest: +SKIP
    """

    def __init__(self, total, description, enabled=True, every=None, log_only=False):
        self.total = int(total)
        self.every = every or max(1, self.total // 100)
        self.enabled = enabled
        self.log_only = log_only
        self._bar = None
        self._description = description
        self._heartbeat = Heartbeat(description.split(":")[0])
        self.describe = None  # (i, *values) -> the heartbeat's text (default "i of total")

    def update(self, i, *values):
        """Host side: step ``i`` (0-based) is done. Compiled code calls it through
        ``jax.debug.callback(bar.update, i)``; a run that is not shown ignores it. ``values``
        (more callback arguments) feed ``describe(i, *values) -> str``, the heartbeat's text."""
        if not self.enabled:  # a cached program compiled with the bar, run without it
            return
        if self.log_only:
            if int(i) < self.every:  # a run's first tick (programs and their bars are cached)
                self._heartbeat.restart()
            text = self.describe(i, *values) if self.describe else f"{int(i) + 1} of {self.total}"
            self._heartbeat(text)
            return
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
        jax.lax.cond(hit, lambda: jax.debug.callback(self.update, i), lambda: None)

    def postfix(self, **values):
        """Show ``values`` beside the bar (host side, between chunks); None values are left out."""
        if self._bar is not None and not self._bar.disable:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if v is not None})

    def restart(self, enabled, total=None, log_only=False):
        """A new run of a cached program: the next tick opens a new bar (shown or not; with
        ``log_only``, heartbeat lines instead of a bar)."""
        self.close()
        self.enabled = enabled
        self.log_only = log_only
        self._heartbeat.restart()
        if total is not None:
            self.total = int(total)
            self.every = max(1, self.total // 100)
        self._bar = None

    def close(self):
        """Close the bar (a run that ended early, e.g. by early stopping)."""
        if self._bar is not None:
            self._bar.close()

    def steps(self):
        """Step indices to feed the scan as ``xs``."""
        return jnp.arange(self.total)
