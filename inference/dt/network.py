"""The Distribution Transformer network (ALGORITHMS §11): a prior mixture and a data set in, a
posterior mixture out.

* one token per prior component, from its log weight, mean and Cholesky factor (log diagonal and
  off-diagonal entries);
* one token per data point (an MLP of its standardised features), refined by self-attention
  among the data points — no positional encoding, so the output is invariant to the order of the
  data and equivariant in the components (so the mixture does not depend on their order);
* per layer: components attend to each other, then to the data (cross-attention);
* each component token is read out as ``components_out`` posterior components, as corrections to
  its own prior component (log weight, mean, log-diagonal and off-diagonal of the factor); a
  small random read-out starts the network near "posterior = prior" with the copies of a
  component distinct.

The attention blocks are the PFN's (:class:`probinfer.inference.pfn.Block`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from probinfer.inference.dt.mixture import Mixture
from probinfer.nn.transformer import Block

__all__ = ["DistributionTransformer"]


def _tril_parts(tril):
    """``(log diagonal (..., D), strictly-lower entries (..., D(D−1)/2))``."""
    d = tril.shape[-1]
    rows, cols = np.tril_indices(d, -1)
    return jnp.log(jnp.abs(jnp.diagonal(tril, 0, -2, -1))), tril[..., rows, cols]


def _tril_from_parts(log_diag, lower):
    d = log_diag.shape[-1]
    rows, cols = np.tril_indices(d, -1)
    tril = jnp.zeros(log_diag.shape + (d,), log_diag.dtype)
    tril = tril.at[..., rows, cols].set(lower)
    return tril + jnp.exp(log_diag)[..., None] * jnp.eye(d)


class DistributionTransformer(nn.Module):
    """``(prior Mixture with batch (B,), features (B, n, e), mask (B, n)) -> posterior Mixture``
    with ``K · components_out`` components.

    Attributes:
        d_model, num_layers, num_heads: width, depth (data encoder and component layers each),
            attention heads.
        components_out: posterior components per prior component.
    """

    d_model: int = 128
    num_layers: int = 3
    num_heads: int = 4
    components_out: int = 2

    @nn.compact
    def __call__(self, prior, features, mask=None):
        d = prior.means.shape[-1]
        b, k = prior.logits.shape
        n = features.shape[-2]
        mask = jnp.ones((b, n), bool) if mask is None else mask
        log_w = jax.nn.log_softmax(prior.logits, -1)
        log_diag, lower = _tril_parts(prior.scale_tril)
        tokens = jnp.concatenate([log_w[..., None], prior.means, log_diag, lower], -1)
        h = nn.Dense(self.d_model, name="encode_component")(tokens)
        data = nn.Dense(self.d_model, name="encode_data")(
            nn.gelu(nn.Dense(self.d_model, name="encode_data_hidden")(features))
        )
        data_mask = (mask[:, None, :, None] & mask[:, None, None, :]) | jnp.eye(n, dtype=bool)
        cross_mask = jnp.broadcast_to(mask[:, None, None, :], (b, 1, k, n))
        ff = 2 * self.d_model
        for i in range(self.num_layers):
            data = Block(self.d_model, self.num_heads, ff, name=f"data_{i}")(data, data_mask)
        memory = nn.LayerNorm(name="data_norm")(data)
        # A data set with no valid point: cross-attention would average nothing; zero it instead.
        any_data = jnp.any(mask, -1)[:, None, None]
        for i in range(self.num_layers):
            h = Block(self.d_model, self.num_heads, ff, name=f"self_{i}")(h)
            crossed = Block(self.d_model, self.num_heads, ff, name=f"cross_{i}")(
                h, cross_mask, memory=memory
            )
            h = jnp.where(any_data, crossed, h)
        h = nn.LayerNorm(name="out_norm")(h)
        c = self.components_out
        size = 1 + d + d + lower.shape[-1]
        out = nn.Dense(c * size, name="readout", kernel_init=nn.initializers.normal(1e-2))(h)
        out = out.reshape(b, k, c, size)
        split = np.cumsum([1, d, d])
        d_logit, d_mean, d_log_diag, d_lower = jnp.split(out, split, -1)
        logits = log_w[..., None] - np.log(c) + d_logit[..., 0]
        means = prior.means[:, :, None] + d_mean * jnp.exp(log_diag)[:, :, None]
        tril = _tril_from_parts(log_diag[:, :, None] + d_log_diag, lower[:, :, None] + d_lower)
        return Mixture(
            logits.reshape(b, k * c), means.reshape(b, k * c, d), tril.reshape(b, k * c, d, d)
        )
