"""Inference families, one sub-package each (smc, sgmcmc, coin, flows, pfn, calibration).

They import the core (:mod:`probinfer`), never each other; shared kernels live in
:mod:`probinfer.kernels`.
"""
