"""Calibration checks: TARP expected coverage and simulation-based calibration (SBC).

>>> from probinfer.inference.calibration import tarp, sbc, calibrate
"""

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
]
