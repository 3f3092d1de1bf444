"""Model analysis: FLOP counting that includes our attention ops, and the papers' numbers."""
from .flops import (EXTRA_FLOP_HANDLES, FlopCount, count_backbone_flops, count_flops,
                    count_model_flops, num_params)
from .reported import reported_backbone, reported_model

__all__ = [
    'EXTRA_FLOP_HANDLES', 'FlopCount', 'count_flops', 'count_backbone_flops', 'count_model_flops',
    'num_params', 'reported_backbone', 'reported_model'
]
