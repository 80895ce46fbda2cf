"""The PFN transformer (ALGORITHMS §2) and the attention blocks shared with the Distribution
Transformer.

No positional encoding: the network is a function of the *set* of context points. A context
token is Linear_x(x) + Linear_y(y), a query token Linear_x(x). The attention mask lets every
position attend to all context positions and a query also to itself — queries never see each
other, so a query's prediction does not depend on which other queries are in the batch (exactly).

Positions ``< num_context`` of a sequence are context, the rest queries; ``num_context`` may be a
traced integer, so one compiled program serves every split position during training.

>>> net = Transformer(num_buckets=10, d_model=32, num_layers=2, num_heads=2)
>>> x, y = jnp.zeros((3, 8, 1)), jnp.zeros((3, 8))
>>> params = net.init(jax.random.PRNGKey(0), x, y, 5)
>>> net.apply(params, x, y, 5).shape
(3, 8, 10)
"""

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["Transformer", "SetTransformer", "Block", "pfn_mask"]


class Block(nn.Module):
    """Pre-norm transformer block: h + MHA(LN(h)), then h + MLP(LN(h)) (GELU)."""

    d_model: int
    num_heads: int
    d_ff: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, h, mask=None, memory=None):
        """``h (B, T, D)``; ``mask (B or 1, 1, T, S)`` boolean (True: may attend); ``memory
        (B, S, D)`` attends to another sequence (cross-attention) instead of ``h`` itself."""
        a = nn.LayerNorm(dtype=self.dtype)(h)
        kv = a if memory is None else memory
        h = h + nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, qkv_features=self.d_model, dtype=self.dtype
        )(a, kv, mask=mask)
        a = nn.LayerNorm(dtype=self.dtype)(h)
        a = nn.Dense(self.d_ff, dtype=self.dtype)(a)
        return h + nn.Dense(self.d_model, dtype=self.dtype)(nn.gelu(a))


def pfn_mask(seq_len, num_context):
    """``(1, 1, T, T)``: position i may attend to j when j is context (j < num_context) or
    j = i."""
    i = jnp.arange(seq_len)
    return ((i[None, :] < num_context) | (i[:, None] == i[None, :]))[None, None]


class Transformer(nn.Module):
    """The PFN network: ``(x (B, T, d), y (B, T), num_context) -> logits (B, T, num_buckets)``
    (the logits at context positions are computed but meaningless).

    Attributes:
        num_buckets: size of the bar-distribution head.
        d_model, num_layers, num_heads: width, depth, heads; ``d_ff`` the MLP width (None:
            2·d_model).
        dtype: computation dtype (``jnp.bfloat16`` on GPUs); parameters stay float32.
    """

    num_buckets: int = 1000
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    d_ff: int | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, y, num_context):
        seq_len = x.shape[-2]
        is_context = (jnp.arange(seq_len) < num_context)[None, :, None]
        h = nn.Dense(self.d_model, dtype=self.dtype, name="encode_x")(x)
        y_token = nn.Dense(self.d_model, dtype=self.dtype, name="encode_y")(y[..., None])
        h = h + jnp.where(is_context, y_token, 0.0)
        mask = pfn_mask(seq_len, num_context)
        for i in range(self.num_layers):
            h = Block(
                self.d_model, self.num_heads, self.d_ff or 2 * self.d_model, self.dtype,
                name=f"block_{i}",
            )(h, mask)  # fmt: skip
        h = nn.LayerNorm(dtype=self.dtype)(h)
        return nn.Dense(self.num_buckets, dtype=jnp.float32, name="head")(h).astype(jnp.float32)

    def config(self):
        return {
            "num_buckets": self.num_buckets,
            "d_model": self.d_model,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "d_ff": self.d_ff,
            "dtype": jnp.dtype(self.dtype).name,
        }


class SetTransformer(nn.Module):
    """A permutation-invariant encoder of a set of observations, ``(b, m, e) -> (b, features)``:
    a token Dense(x_i) per element, ``num_layers`` blocks of self-attention among the elements
    (no positional encoding), a mean over the tokens and a Dense read-out. As the embedding of
    :func:`~probinfer.npe` it makes a PFN for a model's *parameters* (see
    :func:`~probinfer.parameter_posterior`).
    """

    features: int = 32
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    reads_sets = True  # tells NPE to hand it (b, m, e) sets, not flattened observations

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.d_model)(x)
        for _ in range(self.num_layers):
            h = Block(self.d_model, self.num_heads, 2 * self.d_model)(h)
        h = nn.LayerNorm()(jnp.mean(h, axis=-2))
        return nn.Dense(self.features)(nn.gelu(nn.Dense(self.d_model)(h)))
