"""Is q(θ | x) right *at this x*? The local classifier two-sample test (L-C2ST; Linhart, Gramfort &
Rodrigues 2023, "L-C2ST: Local Diagnostics for Posterior Approximations in Simulation-Based
Inference"; ALGORITHMS §12).

Calibration (TARP, SBC, HPD) averages over the prior predictive: a posterior can pass them and
still be wrong at the one data set a user cares about. L-C2ST trains, once per estimator, a
classifier d(θ, x) on N simulations (θ_i, x_i) ~ p(θ) p(x | θ) (class 1) against
(θ'_i, x_i) with θ'_i ~ q(θ | x_i) (class 0). Where q = p the classes are exchangeable and the
Bayes classifier says 1/2 everywhere, so at an observed x_o the statistic

    T(x_o) = (1/n) Σ_j (d(θ_j, x_o) − 1/2)²,      θ_j ~ q(θ | x_o),

is near zero when q(· | x_o) = p(· | x_o). Its null distribution is T under classifiers trained
on the same rows with the labels permuted (``num_null`` of them; all classifiers train side by side
in one program on the same minibatches, each its own label column and initialisation — the same
steps, so the null carries the same overfitting as the real classifier). The p-value is T's rank among
the null statistics. The classifier reads θ on the unconstrained space and x flattened, both
standardised by the simulations; the training is amortized: :meth:`LocalC2ST.test` at another
x_o costs n draws of q and one forward pass.

>>> check = pi.local_c2st(post, key=0)                      # doctest: +SKIP
>>> check.test(x_obs, key=1).verdict()                      # doctest: +SKIP
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from probinfer._utils import as_key
from probinfer.errors import DataError
from probinfer.nn.flow_layers import MLP
from probinfer.nn.training import Trainer, stream_keys

__all__ = ["local_c2st", "LocalC2ST", "LocalC2STResult"]

_LEVEL = 0.05


class LocalC2STResult(NamedTuple):
    """``statistic`` T(x_o); ``p_value`` (its rank among the null statistics); ``null`` the
    null statistics; ``probabilities`` (n,) the classifier's d(θ_j, x_o) at q's draws (a
    histogram near 1/2 is a good sign; mass above 1/2 marks where q puts too little)."""

    statistic: float
    p_value: float
    null: np.ndarray
    probabilities: np.ndarray

    def rejected(self, level=_LEVEL):
        return self.p_value < level

    def verdict(self, level=_LEVEL):
        head = "q(θ | x) differs from the posterior at this x" if self.rejected(level) else (
            "no local difference between q(θ | x) and the posterior found at this x"
        )  # fmt: skip
        floor = 1 / (self.null.size + 1)  # the smallest p-value a rank can give
        blind = (
            f"; with {self.null.size} it cannot reject at this level (its smallest p-value is "
            f"{floor:.3g}): train with num_null ≥ {int(np.ceil(2 / level))}"
        ) if floor > level else ""  # fmt: skip
        return (
            f"{head} (L-C2ST: T = {self.statistic:.3g}, p = {self.p_value:.3g} against "
            f"{self.null.size} permutation classifiers, level {level:.3g}{blind})."
        )


class LocalC2ST:
    """The trained classifiers of :func:`local_c2st`; :meth:`test` at any observed x."""

    def __init__(self, estimator, classifier, params, standardisation):
        self.estimator, self.classifier, self.params = estimator, classifier, params
        self._theta_loc, self._theta_scale, self._x_loc, self._x_scale = standardisation
        self._d = jax.jit(self._probabilities)

    @property
    def num_null(self):
        return int(jax.tree.leaves(self.params)[0].shape[0]) - 1

    def _probabilities(self, params, z, features):
        """(copies, n) classifier probabilities at standardised rows (z (n, dθ), features)."""
        inputs = jnp.concatenate([z, jnp.broadcast_to(features, (z.shape[0], features.size))], -1)
        logits = jax.vmap(lambda p: self.classifier.apply(p, inputs)[:, 0])(params)
        return jax.nn.sigmoid(logits)

    def test(self, x, *, key, n=1000):
        """T(x_o) and its permutation p-value at one data set ``x`` from ``n`` draws of q."""
        target = self.estimator.target
        x = x if isinstance(x, dict) else {target.observed_sites[0]: x}
        theta = self.estimator.sample(as_key(key), x, int(n))
        z = _unconstrained(target, theta)
        features = _flat(x, target, batched=False)
        if features.shape[-1] != self._x_loc.size:
            raise DataError(
                f"local_c2st.test got x with {features.shape[-1]} values; the classifiers "
                f"were trained on {self._x_loc.size}."
            )
        probabilities = np.asarray(self._d(
            self.params, (z - self._theta_loc) / self._theta_scale,
            (features - self._x_loc) / self._x_scale,
        ))  # fmt: skip
        statistics = np.mean((probabilities - 0.5) ** 2, axis=1)
        observed, null = float(statistics[0]), statistics[1:]
        p_value = (1 + np.sum(null >= observed)) / (1 + null.size)
        return LocalC2STResult(observed, float(p_value), null, probabilities[0])


def local_c2st(estimator, *, key, num_simulations=10_000, num_null=100, num_steps=3_000,
               batch_size=256, hidden=(64, 64)):  # fmt: skip
    """Train L-C2ST's classifier and its ``num_null`` permutation twins for ``estimator``.

    Args:
        estimator: a posterior estimator whose ``sample(key, x, n)`` takes a batch of data sets
            (:func:`~probinfer.npe`'s, with any flow; TSNPE's answers for one x only); its
            ``target`` simulates the training rows.
        key: int seed or PRNG key.
        num_simulations: N pairs (θ_i, x_i), each with one draw θ'_i ~ q(θ | x_i): 2N rows.
        num_null: classifiers on permuted labels (the p-value's resolution is 1/(num_null+1)).
        num_steps, batch_size: Adam (10⁻³) steps of every classifier, rows per step (the
            same for all, so the null is the real classifier's).
        hidden: the classifier MLP's hidden widths (GELU).

    Returns:
        :class:`LocalC2ST` — ``.test(x, key=)`` gives a :class:`LocalC2STResult`.

    Example:
        >>> check = local_c2st(post, key=0, num_simulations=5_000)       # doctest: +SKIP
        >>> check.test({"x": x_obs}, key=1).p_value                       # doctest: +SKIP
    """
    if int(num_simulations) < 100 or int(num_null) < 1:
        raise DataError(
            f"local_c2st needs num_simulations ≥ 100 and num_null ≥ 1; got {num_simulations} "
            f"and {num_null}."
        )
    if getattr(estimator, "settings", {}).get("observed") is not None:
        raise DataError(
            "local_c2st needs an estimator for every x; this one was trained for one data set "
            "(settings['observed'], TSNPE): train pi.npe to check it locally."
        )
    target = estimator.target
    key_sim, key_q, key_label, key_init, key_train = jax.random.split(as_key(key), 5)
    params, observations = target.simulate(key_sim, int(num_simulations))
    z_true = _unconstrained(target, params)
    features = _flat(observations, target, batched=True)
    draws = estimator.sample(key_q, observations, 1)
    z_q = _unconstrained(target, {k: v[:, 0] for k, v in draws.items()})
    finite = np.all(np.isfinite(np.concatenate([z_true, z_q, features], 1)), 1)
    z_true, z_q, features = z_true[finite], z_q[finite], features[finite]
    theta_loc, theta_scale = _standardisation(z_true)
    x_loc, x_scale = _standardisation(features)
    rows = z_true.shape[0]
    z = (np.concatenate([z_true, z_q]) - theta_loc) / theta_scale
    x = np.tile((features - x_loc) / x_scale, (2, 1))
    labels = np.concatenate([np.ones(rows), np.zeros(rows)]).astype(np.float32)
    permuted = jax.vmap(lambda k: jax.random.permutation(k, labels))(
        jax.random.split(key_label, int(num_null))
    )
    columns = np.concatenate([labels[:, None], np.asarray(permuted).T], 1)  # (2N, 1 + num_null)
    classifier = MLP(tuple(hidden), 1)
    copies = int(num_null) + 1
    init = jax.vmap(lambda k: classifier.init(k, jnp.zeros((1, z.shape[1] + x.shape[1]))))(
        stream_keys(key_init, copies)
    )
    trainer = Trainer(_loss(classifier), lambda _: optax.adam(1e-3), copies=copies,
                      hyper=jnp.arange(copies, dtype=jnp.float32), with_hyper=True,
                      desc="local_c2st")  # fmt: skip
    data = {"z": jnp.asarray(z, jnp.float32), "x": jnp.asarray(x, jnp.float32),
            "labels": jnp.asarray(columns, jnp.float32)}  # fmt: skip
    fitted = trainer.fit(init, key=key_train, num_steps=int(num_steps), data=data,
                         batch_size=min(int(batch_size), 2 * rows), progress=False)  # fmt: skip
    return LocalC2ST(estimator, classifier, fitted.params, (theta_loc, theta_scale, x_loc, x_scale))


def _loss(classifier):
    def loss(params, key, batch, column):
        logits = classifier.apply(params, jnp.concatenate([batch["z"], batch["x"]], -1))[:, 0]
        labels = jnp.take(batch["labels"], column.astype(jnp.int32), axis=1)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))

    return loss


def _unconstrained(target, theta):
    """(n, dim) unconstrained values of constrained draws ``{site: (n, *shape)}``."""
    values = {k: jnp.asarray(theta[k]) for k in target.latent_sites}
    return np.asarray(jax.vmap(target.unconstrain)(values), np.float64)


def _flat(observations, target, *, batched):
    """The observed sites flattened and concatenated: (n, x_dim), or (1, x_dim) for one."""
    parts = []
    for site in target.observed_sites:
        value = np.asarray(observations[site], np.float64)
        parts.append(value.reshape(value.shape[0] if batched else 1, -1))
    return np.concatenate(parts, 1)


def _standardisation(rows):
    loc, scale = rows.mean(0), rows.std(0)
    return loc, np.where(scale > 1e-8, scale, 1.0)
