"""What ``flow_vi`` returns: the draws of the fitted flow as a :class:`~probinfer.Posterior`
(:class:`FlowPosterior`), and the fitted flow itself as a trained estimator (:class:`FittedFlow`)
that draws afresh at any size, evaluates q and is saved in probinfer's one estimator format
(:mod:`probinfer.nn.estimator`, kind ``"flow_vi"``), so ``pi.load(path, model)`` gives it back.

>>> post = pi.flow_vi(target, key=0)                                 # doctest: +SKIP
>>> post.estimator.save("flow.msgpack")                              # doctest: +SKIP
>>> again = pi.load("flow.msgpack", model).posterior(key=1, n=4000)  # doctest: +SKIP
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from probinfer._utils import as_key, need_key
from probinfer.compiler import as_target
from probinfer.errors import DataError
from probinfer.nn import estimator as estimator_file
from probinfer.nn.flows import flow_from_config
from probinfer.posterior import Posterior

__all__ = ["FlowPosterior", "FittedFlow", "KIND"]

KIND = "flow_vi"


class FittedFlow(estimator_file.Estimator):
    """The flow q that ``flow_vi`` fitted to one Target's posterior, on its unconstrained space.

    Unlike an amortized estimator it answers for one data set only, the one it was fitted to,
    so ``x`` is None everywhere (it is in the signatures for the estimators' common vocabulary).

    Attributes:
        target, flow, params: the Target, the :class:`~probinfer.nn.flows.Flow` and its fitted
            parameters; settings, diagnostics: what ``flow_vi`` ran with and measured.
    """

    kind = KIND

    def __init__(self, *, target, flow, params, settings, diagnostics):
        self.target, self.flow, self.params = target, flow, params
        self.settings, self.diagnostics = dict(settings), dict(diagnostics)

    def _check_x(self, x):
        if x is not None:
            raise DataError(
                f"this flow was fitted by flow_vi to the data of '{self.target.name}' and answers "
                "for that data set only; pass no x (for posteriors of new data sets, train "
                "pi.npe)."
            )

    def sample(self, key, x=None, n=1000):
        """``n`` fresh draws of q: ``{site: (n, *site_shape)}`` (constrained; not
        importance-weighted)."""
        self._check_x(x)
        z = self.flow.sample(self.params, as_key(need_key(key, "FittedFlow.sample")), int(n))
        return {k: np.asarray(v) for k, v in _constrain(self.target, z).items()}

    def log_prob(self, theta, x=None):
        """log q of constrained latent values ``{site: (n, *site_shape)}``: the flow's density on
        the unconstrained space minus log|det ∂θ/∂z| of the constraining map. Returns (n,)."""
        self._check_x(x)
        values = {k: jnp.asarray(theta[k]) for k in self.target.latent_sites}
        z = jnp.atleast_2d(self.target.unconstrain(values))
        return np.asarray(_constrained_log_prob(self.target, self.flow, self.params, z))

    def posterior(self, x=None, *, key, n=1000):
        """A :class:`~probinfer.Posterior` of ``n`` fresh draws of q (one chain)."""
        return super().posterior(x, key=key, n=n)

    def _meta(self):
        return {
            "target": self.target.name,
            "data": self.target.data_digest(),
            "flow": self.flow.config(),
            "settings": self.settings,
            "diagnostics": self.diagnostics,
        }

    def _arrays(self):
        return {"params": jax.tree.map(np.asarray, self.params)}

    def __repr__(self):
        return f"FittedFlow({self.flow.kind} flow on '{self.target.name}', dim={self.flow.dim})"


class FlowPosterior(Posterior):
    """A :class:`~probinfer.Posterior` holding ``num_draws`` draws of the fitted flow, and the
    flow as a trained estimator (``estimator``, a :class:`FittedFlow`): :meth:`sample` draws
    afresh at any size, :meth:`log_prob` evaluates q. ``save`` writes the draws (a Posterior
    file); ``estimator.save`` writes the flow."""

    def __init__(self, draws, *, estimator, **kwargs):
        super().__init__(draws, **kwargs)
        self.estimator = estimator
        self.target, self.flow, self.params = estimator.target, estimator.flow, estimator.params

    def sample(self, *, key, n):
        """``n`` fresh draws of q: ``{site: (n, *site_shape)}`` (constrained values; not
        importance-weighted)."""
        return self.estimator.sample(key, None, n)

    def log_prob(self, values):
        """log q of constrained latent values ``{site: (n, *site_shape)}``. Returns (n,)."""
        return self.estimator.log_prob(values)


@partial(jax.jit, static_argnums=(0, 1))
def _constrained_log_prob(target, flow, params, z):
    """log q(z) − log|det ∂θ/∂z| for unconstrained points ``z`` (n, dim)."""
    return flow.log_prob(params, z) - target.log_abs_det_jacobian(z)


def _constrain(target, z):
    return jax.jit(jax.vmap(target.constrain))(z)


def _loader(path, header, arrays, model, *, model_args=(), model_kwargs=None, data=()):
    if model is None:
        raise DataError(
            f"'{path}' holds a flow fitted by flow_vi: pass the model it was fitted to, "
            "pi.load(path, model)."
        )
    target = as_target(model, model_args, model_kwargs, data)
    estimator_file.check_sites(path, header, target)
    meta = header["meta"]
    if meta["data"] != target.data_digest():
        raise DataError(
            f"'{path}' holds a flow fitted to other data than '{target.name}' is compiled with "
            "(same sites and shapes, other values); a flow_vi fit answers for its own data set "
            "only: compile the model with the data it was fitted to, or fit again."
        )
    return FittedFlow(
        target=target,
        flow=flow_from_config(meta["flow"], target.dim),
        params=jax.tree.map(jnp.asarray, arrays["params"]),
        settings=meta["settings"],
        diagnostics=meta["diagnostics"],
    )


estimator_file.register(KIND, _loader)
