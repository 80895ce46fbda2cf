"""Coin sampling: particle inference with no learning rate (Coin SVGD, Coin KSDD), and SVGD.

>>> import probinfer as pi
>>> post = pi.coin_svgd(target, key=0, num_particles=100)     # doctest: +SKIP
"""

from probinfer import runners
from probinfer.inference.coin.runner import (
    coin_draws,
    coin_ksdd,
    coin_svgd,
    ksdd_draws,
    svgd,
    svgd_draws,
)
from probinfer.inference.coin.stein import bandwidth, stein_direction

__all__ = ["coin_svgd", "coin_ksdd", "svgd", "stein_direction", "bandwidth"]

runners.register("coin_svgd", coin_svgd, coin_draws)
runners.register("coin_ksdd", coin_ksdd, ksdd_draws)
runners.register("svgd", svgd, svgd_draws)
