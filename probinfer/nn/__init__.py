"""What every trained estimator shares, in the core so the families need not import each other:
flow layers and flows (:mod:`.flow_layers`, :mod:`.flows`), the variational bounds they are
fitted with (:mod:`.objectives`), transformer blocks (:mod:`.transformer`), embeddings of
observations (:mod:`.embeddings`), data-set layouts (:mod:`.layout`) and the chunked training
loop (:mod:`.training`).

>>> from probinfer.nn import make_flow
>>> flow = make_flow("nsf", dim=2)                              # doctest: +SKIP
"""

from probinfer.nn.embeddings import MLPEmbedding, SetEmbedding, default_features
from probinfer.nn.flows import FLOWS, Flow, make_flow
from probinfer.nn.layout import ObservationLayout
from probinfer.nn.objectives import OBJECTIVES, bound
from probinfer.nn.transformer import Block, SetTransformer, Transformer

__all__ = [
    "FLOWS",
    "Flow",
    "make_flow",
    "OBJECTIVES",
    "bound",
    "Block",
    "SetTransformer",
    "Transformer",
    "MLPEmbedding",
    "SetEmbedding",
    "default_features",
    "ObservationLayout",
]
