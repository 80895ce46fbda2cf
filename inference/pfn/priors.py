"""Priors over data sets for training PFNs (ALGORITHMS §2): each is a jittable sampler of a
batch of data sets, ``prior.sample(key, batch_size, seq_len) -> (x (B, T, d), y (B, T))``.

* :class:`GPPrior` — a Gaussian process with an RBF kernel and fixed hyper-parameters,
  k(x, x') = outputscale · exp(−|x − x'|² / (2 lengthscale²)), observation-noise variance
  ``noise``, inputs uniform on [0, 1]^d. It also gives the exact posterior predictive
  (:meth:`GPPrior.predictive`) a PFN trained on it must match.
* :class:`GPHyperPrior` — the same with hyper-parameters drawn per data set (Gamma hyper-priors).
* :class:`BNNPrior` — a one-hidden-layer tanh network with Gaussian weights; regression (Gaussian
  noise) or binary classification (y ∈ {0, 1}).
* :class:`ModelPrior` — **any probinfer model**: inputs from a user-given distribution, outputs
  from the model's prior predictive.

>>> prior = GPPrior(lengthscale=0.1, outputscale=0.1, noise=0.1)
>>> x, y = prior.sample(jax.random.PRNGKey(0), 8, 50)
>>> x.shape, y.shape
((8, 50, 1), (8, 50))
"""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from probinfer.errors import DataError, ModelError

__all__ = ["GPPrior", "GPHyperPrior", "BNNPrior", "ModelPrior", "prior_from_config"]

_JITTER = 1e-6


def _rbf(x1, x2, lengthscale, outputscale):
    """``(n1, n2)`` RBF kernel matrix; ``lengthscale`` scalar or ``(d,)``."""
    d2 = jnp.sum(((x1[:, None, :] - x2[None, :, :]) / lengthscale) ** 2, -1)
    return outputscale * jnp.exp(-0.5 * d2)


def _uniform_inputs(key, batch_size, seq_len, num_features):
    return jax.random.uniform(key, (batch_size, seq_len, num_features))


def _gp_draw(key, x, lengthscale, outputscale, noise):
    """One data set's y ~ N(0, K + noise·I) at inputs ``x (T, d)``."""
    cov = _rbf(x, x, lengthscale, outputscale) + (noise + _JITTER) * jnp.eye(x.shape[0])
    return jnp.linalg.cholesky(cov) @ jax.random.normal(key, (x.shape[0],))


@dataclasses.dataclass(frozen=True)
class GPPrior:
    """GP regression data sets with an RBF kernel and fixed hyper-parameters (the paper's 1-D
    defaults: outputscale = lengthscale = noise = 0.1; ``noise`` and ``outputscale`` are
    variances)."""

    lengthscale: float = 0.1
    outputscale: float = 0.1
    noise: float = 0.1
    num_features: int = 1
    kind = "gp"

    def sample(self, key, batch_size, seq_len):
        key_x, key_y = jax.random.split(key)
        x = _uniform_inputs(key_x, batch_size, seq_len, self.num_features)
        keys = jax.random.split(key_y, batch_size)
        draw = lambda k, xi: _gp_draw(k, xi, self.lengthscale, self.outputscale, self.noise)  # noqa: E731
        return x, jax.vmap(draw)(keys, x)

    def predictive(self, x_train, y_train, x_test):
        """Exact posterior predictive of y at ``x_test (m, d)`` given ``(x_train (n, d),
        y_train (n,))``: ``(mean (m,), variance (m,))``, observation noise included."""
        k_tt = _rbf(x_train, x_train, self.lengthscale, self.outputscale)
        k_st = _rbf(x_test, x_train, self.lengthscale, self.outputscale)
        chol = jnp.linalg.cholesky(k_tt + (self.noise + _JITTER) * jnp.eye(x_train.shape[0]))
        alpha = jax.scipy.linalg.cho_solve((chol, True), y_train)
        v = jax.scipy.linalg.solve_triangular(chol, k_st.T, lower=True)
        mean = k_st @ alpha
        var = self.outputscale + self.noise - jnp.sum(v**2, 0)
        return mean, var

    def log_predictive(self, x_train, y_train, x_test, y_test):
        """Exact log posterior predictive density of each ``y_test`` (``(m,)``)."""
        mean, var = self.predictive(x_train, y_train, x_test)
        return dist.Normal(mean, jnp.sqrt(var)).log_prob(y_test)

    def config(self):
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class GPHyperPrior:
    """GP data sets whose RBF hyper-parameters are drawn per data set: lengthscale ~
    Gamma(lengthscale_shape, lengthscale_rate) (per input dimension), outputscale ~
    Gamma(outputscale_shape, outputscale_rate), noise ~ Gamma(noise_shape, noise_rate)."""

    num_features: int = 1
    lengthscale_shape: float = 2.0
    lengthscale_rate: float = 10.0
    outputscale_shape: float = 2.0
    outputscale_rate: float = 2.0
    noise_shape: float = 1.5
    noise_rate: float = 15.0
    kind = "gp_hyper"

    def sample_hypers(self, key, batch_size):
        """``batch_size`` hyper-parameter draws: ``{"lengthscale": (B, d), "outputscale": (B,),
        "noise": (B,)}``."""
        k1, k2, k3 = jax.random.split(key, 3)
        gamma = lambda k, a, b, shape: jax.random.gamma(k, a, shape) / b  # noqa: E731
        return {
            "lengthscale": gamma(k1, self.lengthscale_shape, self.lengthscale_rate,
                                 (batch_size, self.num_features)),
            "outputscale": gamma(k2, self.outputscale_shape, self.outputscale_rate, (batch_size,)),
            "noise": gamma(k3, self.noise_shape, self.noise_rate, (batch_size,)),
        }  # fmt: skip

    def sample(self, key, batch_size, seq_len, return_hypers=False):
        """``(x, y)``, or ``(x, y, hypers)`` with ``return_hypers=True`` (the per-data-set
        hyper-parameters of :meth:`sample_hypers` that generated them)."""
        key_x, key_h, key_y = jax.random.split(key, 3)
        x = _uniform_inputs(key_x, batch_size, seq_len, self.num_features)
        h = self.sample_hypers(key_h, batch_size)
        keys = jax.random.split(key_y, batch_size)
        y = jax.vmap(_gp_draw)(keys, x, h["lengthscale"], h["outputscale"], h["noise"])
        return (x, y, h) if return_hypers else (x, y)

    def config(self):
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class BNNPrior:
    """Data sets from a random one-hidden-layer tanh network f(x) = w₂ᵀ tanh(W₁x + b₁) + b₂ with
    weights N(0, weight_scale² / fan-in); regression adds N(0, noise) (a variance), classification
    draws y ~ Bernoulli(sigmoid(f(x))). Inputs uniform on [0, 1]^d."""

    num_features: int = 1
    num_hidden: int = 32
    weight_scale: float = 2.0
    noise: float = 0.01
    classification: bool = False
    kind = "bnn"

    def _one(self, key, x):
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        d, h = self.num_features, self.num_hidden
        w1 = jax.random.normal(k1, (d, h)) * self.weight_scale / jnp.sqrt(d)
        b1 = jax.random.normal(k2, (h,)) * self.weight_scale
        w2 = jax.random.normal(k3, (h,)) * self.weight_scale / jnp.sqrt(h)
        f = jnp.tanh((x - 0.5) @ w1 + b1) @ w2 + jax.random.normal(k4, ())
        if self.classification:
            return jax.random.bernoulli(k5, jax.nn.sigmoid(f)).astype(jnp.float32)
        return f + jnp.sqrt(self.noise) * jax.random.normal(k5, f.shape)

    def sample(self, key, batch_size, seq_len):
        key_x, key_f = jax.random.split(key)
        x = _uniform_inputs(key_x, batch_size, seq_len, self.num_features)
        return x, jax.vmap(self._one)(jax.random.split(key_f, batch_size), x)

    def config(self):
        return {"kind": self.kind, **dataclasses.asdict(self)}


class ModelPrior:
    """Data sets from a probinfer model's prior predictive: for each data set, inputs
    x_1..x_T ~ ``inputs`` (i.i.d.), then parameters and y from the model called as
    ``model(x, **{y: None})``.

    Args:
        model: a model function whose argument ``x`` (name set by ``x``) holds the inputs
            ``(T, d)`` and whose observed site ``y`` is a vector ``(T,)`` (one output per input).
        inputs: a NumPyro distribution of one input row (event shape ``(d,)``, or a scalar
            distribution for d = 1), e.g. ``dist.Uniform(0, 1)``.
        x, y: the model's input argument name and output site name.
        model_kwargs: further fixed keyword arguments of the model.

    Example:
        >>> def model(x, y=None):
        ...     w = pi.sample("w", dist.Normal(0, 1))
        ...     pi.sample("y", dist.Normal(w * x[:, 0], 0.1), obs=y)
        >>> prior = ModelPrior(model, inputs=dist.Uniform(0.0, 1.0))
        >>> prior.sample(jax.random.PRNGKey(0), 4, 20)[1].shape
        (4, 20)
    """

    kind = "model"

    def __init__(self, model, *, inputs, x="x", y="y", model_kwargs=None):
        if not callable(model):
            raise ModelError(f"ModelPrior needs a model function, got {type(model).__name__}.")
        self.model, self.inputs, self.x, self.y = model, inputs, x, y
        self.model_kwargs = dict(model_kwargs or {})
        event = tuple(inputs.event_shape)
        if len(event) > 1:
            raise DataError(
                f"ModelPrior inputs= must describe one input row (event shape (d,) or ()), "
                f"got event shape {event}."
            )
        self.num_features = event[0] if event else 1
        self._check()

    def _one(self, key, seq_len):
        key_x, key_m = jax.random.split(key)
        x = self.inputs.sample(key_x, (seq_len,)).reshape(seq_len, self.num_features)
        kwargs = {**self.model_kwargs, self.x: x}
        if self.y in inspect.signature(self.model).parameters:
            kwargs[self.y] = None  # an observed site's argument: simulate it instead
        trace = numpyro.handlers.trace(numpyro.handlers.seed(self.model, key_m)).get_trace(**kwargs)
        if self.y not in trace:
            raise ModelError(
                f"ModelPrior: the model has no sample site '{self.y}'; pass y= the name of its "
                f"output site (sites: {sorted(trace)})."
            )
        return x, trace[self.y]["value"]

    def _check(self):
        _, y = jax.eval_shape(lambda k: self._one(k, 3), jax.random.PRNGKey(0))
        if y.shape != (3,):
            raise ModelError(
                f"ModelPrior: site '{self.y}' has shape {y.shape} for 3 inputs; a PFN needs one "
                "scalar output per input row (shape (T,))."
            )

    def sample(self, key, batch_size, seq_len):
        x, y = jax.vmap(lambda k: self._one(k, seq_len))(jax.random.split(key, batch_size))
        return x, y.astype(jnp.float32)

    def config(self):
        return {"kind": self.kind, "num_features": self.num_features, "x": self.x, "y": self.y}


_KINDS = {"gp": GPPrior, "gp_hyper": GPHyperPrior, "bnn": BNNPrior}


def prior_from_config(config):
    """The prior a saved PFN was trained on (None for a :class:`ModelPrior`: its model is code,
    not data — pass ``prior=`` to :func:`~probinfer.inference.pfn.load`)."""
    config = dict(config)
    kind = config.pop("kind")
    return _KINDS[kind](**config) if kind in _KINDS else None
