"""Calibration checks: TARP expected coverage, simulation-based calibration (SBC) and, for
estimators with a density, the expected coverage of highest-density regions.

>>> from probinfer.inference.calibration import tarp, sbc, calibrate
"""

from probinfer.inference.calibration.hpd import HPDCoverage, hpd_levels
from probinfer.inference.calibration.pipeline import Calibration, calibrate
from probinfer.inference.calibration.sbc import SBCResult, sbc
from probinfer.inference.calibration.tarp import Coverage, point_estimate_references, tarp

__all__ = [
    "tarp",
    "Coverage",
    "point_estimate_references",
    "sbc",
    "SBCResult",
    "calibrate",
    "Calibration",
    "HPDCoverage",
    "hpd_levels",
]
