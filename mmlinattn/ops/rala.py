"""Rank-augmented linear attention (RALA) and the RoPE softmax attention of RAVLT stages 3-4.

Paper: "Breaking the Low-Rank Dilemma of Linear Attention", Fan, Huang, He, CVPR 2025
(arXiv 2411.07635). Written from the formulas; no code from the official repository.

With ``phi(t) = ELU(t) + 1`` and ``p = softmax_j(mean_i phi(q_i) . phi(k_j) / sqrt(d))``::

    out_i = RoPE(phi(q_i)) . sum_j p_j RoPE(phi(k_j))^T v_j
            / (phi(q_i) . sum_j p_j phi(k_j) + eps)

The query-conditioned weights ``p_j`` (written ``alpha_j = N p_j`` on the keys) are the paper's
KV-buffer rank augmentation: a plain linear attention sums all keys with equal weight, which caps
the rank of the ``d x d`` buffer's contribution; re-weighting keys by their affinity to the mean
query restores it. The rest of the block (LePE, the output gate, projections) lives in
:mod:`mmlinattn.models.backbones.ravlt`.

Every function here takes ``(B, heads, N, head_dim)`` tensors and RoPE tables ``sin``/``cos`` of
shape ``(N, head_dim)`` from :func:`mmlinattn.ops.rope.rope_sin_cos`. Each fast op has a reference
twin with the same signature that spells the maths out (and materialises ``N x N`` matrices).
"""
import torch
import torch.nn.functional as F

from .registry import register_op
from .rope import apply_rope, apply_rope_reference

__all__ = [
    'rank_augmented_linear_attention', 'rank_augmented_linear_attention_reference',
    'rope_softmax_attention', 'rope_softmax_attention_reference', 'rope_softmax_attention_explicit'
]


def _kernel_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = ELU(x) + 1 > 0."""
    return F.elu(x) + 1.0


def rank_augmented_linear_attention(q: torch.Tensor,
                                    k: torch.Tensor,
                                    v: torch.Tensor,
                                    sin: torch.Tensor,
                                    cos: torch.Tensor,
                                    eps: float = 1e-6) -> torch.Tensor:
    """RALA in O(N) time and memory.

    Half-precision inputs (e.g. under autocast) are computed in float32: the key re-weighting, the
    ``(d, d)`` KV buffer and the normaliser are sums over all N tokens, which overflow or lose all
    precision in float16. Both factors of the KV buffer are pre-scaled by ``N ** -0.5`` so the
    buffer is the p-weighted mean rather than an N-fold sum.

    Args:
        q (Tensor): queries before the feature map, ``(B, heads, N, d)``.
        k (Tensor): keys before the feature map, ``(B, heads, N, d)``.
        v (Tensor): values, ``(B, heads, N, d)``.
        sin (Tensor): RoPE table, ``(N, d)``.
        cos (Tensor): RoPE table, ``(N, d)``.
        eps (float): added to the normaliser. Defaults to 1e-6.

    Returns:
        Tensor: ``(B, heads, N, d)`` in the dtype of ``v``.
    """
    out_dtype = v.dtype
    compute_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, k, v = (t.to(compute_dtype) for t in (q, k, v))
        sin, cos = sin.to(compute_dtype), cos.to(compute_dtype)
        num_tokens, head_dim = q.shape[-2], q.shape[-1]

        q = _kernel_feature_map(q)
        k = _kernel_feature_map(k)
        # Keys re-weighted by affinity to the mean query: alpha_j = N softmax_j(q_bar.k_j/sqrt(d)).
        q_mean = q.mean(dim=-2, keepdim=True)  # (B, h, 1, d)
        scores = (q_mean @ k.transpose(-1, -2)) * head_dim**-0.5  # (B, h, 1, N)
        alpha = scores.softmax(dim=-1).transpose(-1, -2) * num_tokens  # (B, h, N, 1)
        k = k * alpha

        # The normaliser uses the un-rotated features.
        denom = q @ k.mean(dim=-2, keepdim=True).transpose(-1, -2) + eps  # (B, h, N, 1)
        q_rot = apply_rope(q, sin, cos)
        k_rot = apply_rope(k, sin, cos)
        scale = num_tokens**-0.5
        kv = (k_rot * scale).transpose(-1, -2) @ (v * scale)  # (B, h, d, d)
        out = (q_rot @ kv) / denom  # (B, h, N, d)
    return out.to(out_dtype)


def rank_augmented_linear_attention_reference(q: torch.Tensor,
                                              k: torch.Tensor,
                                              v: torch.Tensor,
                                              sin: torch.Tensor,
                                              cos: torch.Tensor,
                                              eps: float = 1e-6) -> torch.Tensor:
    """Same as :func:`rank_augmented_linear_attention`, written as an explicit ``N x N`` weighting.

    Computes in the input dtype (use float64 for tests); O(N^2) memory.
    """
    head_dim = q.shape[-1]
    phi_q, phi_k = _kernel_feature_map(q), _kernel_feature_map(k)
    q_bar = phi_q.mean(dim=-2)  # (B, h, d)
    p = torch.softmax(torch.einsum('bhd,bhnd->bhn', q_bar, phi_k) / head_dim**0.5, dim=-1)
    rot_q = apply_rope_reference(phi_q, sin, cos)
    rot_k = apply_rope_reference(phi_k, sin, cos)
    weights = torch.einsum('bhid,bhjd->bhij', rot_q, rot_k) * p[:, :, None, :]  # (B, h, N, N)
    denom = torch.einsum('bhid,bhd->bhi', phi_q, torch.einsum('bhj,bhjd->bhd', p, phi_k)) + eps
    return torch.einsum('bhij,bhjd->bhid', weights, v) / denom[..., None]


def rope_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sin: torch.Tensor,
                           cos: torch.Tensor) -> torch.Tensor:
    """Global softmax attention on RoPE-rotated queries and keys (RAVLT stages 3-4).

    Dispatches to :func:`torch.nn.functional.scaled_dot_product_attention`, which picks a fused
    (flash / memory-efficient) kernel where one exists, so no ``N x N`` tensor is built here.
    Time is O(N^2).

    Args:
        q (Tensor): ``(B, heads, N, d)``.
        k (Tensor): ``(B, heads, N, d)``.
        v (Tensor): ``(B, heads, N, d)``.
        sin (Tensor): RoPE table, ``(N, d)``.
        cos (Tensor): RoPE table, ``(N, d)``.

    Returns:
        Tensor: ``(B, heads, N, d)``; scale ``d ** -0.5``, no mask, no dropout.
    """
    # Fused SDPA kernels (flash / memory-efficient, on CPU and CUDA) need a unit stride in the
    # last dimension; RAVLT's heads are strided views of a channels-first map, which would send
    # SDPA to its N x N fallback.
    q, k = apply_rope(q, sin, cos).contiguous(), apply_rope(k, sin, cos).contiguous()
    return F.scaled_dot_product_attention(q, k, v.contiguous())


def rope_softmax_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                     sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Same as :func:`rope_softmax_attention` with the attention matrix materialised."""
    q, k = apply_rope_reference(q, sin, cos), apply_rope_reference(k, sin, cos)
    attn = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1]**0.5, dim=-1)  # (B, h, N, N)
    return attn @ v


def rope_softmax_attention_explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                    sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """The released code's order of :func:`rope_softmax_attention`: rotate q and k with the real
    ``x cos + rotate_pairs(x) sin`` form, build ``softmax(q k^T / sqrt(d))`` explicitly
    (``N x N`` per head, O(N^2) memory) and multiply by v. The benchmarks' official-algorithm
    path (:mod:`mmlinattn.analysis.official`); shapes as there.
    """
    q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
    attn = (q @ k.transpose(-1, -2)) * q.shape[-1]**-0.5  # (B, h, N, N)
    return attn.softmax(dim=-1) @ v


register_op('rala', 'torch', rank_augmented_linear_attention)
register_op('rala', 'reference', rank_augmented_linear_attention_reference)
register_op('rope_softmax', 'torch', rope_softmax_attention)
register_op('rope_softmax', 'reference', rope_softmax_attention_reference)
register_op('rope_softmax', 'explicit', rope_softmax_attention_explicit)
