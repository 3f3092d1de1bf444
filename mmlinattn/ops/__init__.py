"""Pure tensor functions (no module state). Each op kind has named implementations (backends) in
:mod:`mmlinattn.ops.registry`: ``'torch'`` (fast) and ``'reference'`` (the plain twin)."""
from .rala import (rank_augmented_linear_attention, rank_augmented_linear_attention_reference,
                   rope_softmax_attention, rope_softmax_attention_reference)
from .registry import DEFAULT_BACKEND, REFERENCE_BACKEND, get_op, op_backends, op_kinds, register_op
from .rope import apply_rope, apply_rope_reference, rope_frequencies, rope_sin_cos
from .soft import (gaussian_kernel, gaussian_kernel_reference, landmark_grid_size,
                   newton_schulz_pinv, newton_schulz_pinv_reference, softmax_free_attention,
                   softmax_free_attention_reference)

__all__ = [
    'DEFAULT_BACKEND', 'REFERENCE_BACKEND', 'get_op', 'op_backends', 'op_kinds', 'register_op',
    'rank_augmented_linear_attention', 'rank_augmented_linear_attention_reference',
    'rope_softmax_attention', 'rope_softmax_attention_reference', 'apply_rope',
    'apply_rope_reference', 'rope_frequencies', 'rope_sin_cos', 'gaussian_kernel',
    'gaussian_kernel_reference', 'landmark_grid_size', 'newton_schulz_pinv',
    'newton_schulz_pinv_reference', 'softmax_free_attention', 'softmax_free_attention_reference'
]
