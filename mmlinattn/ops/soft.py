"""Softmax-free (SOFT / SOFT++) attention: Gaussian-kernel Nystrom attention with a Newton inverse.

Papers: "SOFT: Softmax-free Transformer with Linear Complexity", Lu et al., NeurIPS 2021
(arXiv 2110.11945) and "Softmax-free Linear Transformers", Lu et al., IJCV 2024 (arXiv 2207.03341).
Written from the formulas and from measurements of the released code's outputs; no code from the
official repository.

Per image and head, with scaled queries ``q`` (``Q / d ** 0.25``, keys are the same tensor) and
``m`` landmarks ``l`` pooled from them, the attention approximates
``S_ij = exp(-|q_i - q_j|^2 / 2)`` by its Nystrom form::

    K1 = k(q, l)              (N, m)        k(a, b) = exp(-|a - b|^2 / 2)
    A  = k(l, l)              (m, m)
    S ~ K1 A^+ K1^T           out = (K1 A^+) (K1^T V)      O(N m d + N m^2 + m^3)

There is no row normalisation ("softmax-free"). ``A^+`` comes from a fixed number of Newton-Schulz
iterations (:func:`newton_schulz_pinv`), which for the released models is generally *not* converged:
outputs of the official checkpoints depend on the exact iteration, so it is reproduced here.

SOFT++ adds a symmetric normalisation (:data:`NORMALIZATIONS`):

* ``'core'`` - what the released SOFT-Norm code computes: only the landmark core is normalised
  with the degrees of the landmark kernel, ``K1 (D_A^-1/2 A^+ D_A^-1/2) K1^T``,
  ``D_A = diag(A 1_m)``.
* ``'full'`` - the textbook ``D^-1/2 S D^-1/2`` of the whole approximated matrix,
  ``D = diag(S 1_N)``, evaluated from the factors as ``S 1 = K1 (A^+ (K1^T 1))``; linear in N.

Every op computes in float32 (float64 if given float64) with autocast disabled: the exponentials
and the iteration lose all precision in half precision. Every fast op has a ``*_reference`` twin
with the same signature that spells the maths out (direct differences, unrolled autograd, the
``N x N`` matrix materialised).
"""
import math
import warnings
from typing import Optional, Tuple

import torch

from .export import ExportUnsupportedError, example_size, is_exporting
from .registry import register_op

__all__ = [
    'PINV_MODES', 'PINV_MODE_ALIASES', 'BATCH_COUPLED_PINV_MODES', 'NORMALIZATIONS',
    'resolve_pinv_mode', 'newton_schulz_pinv_macs', 'gaussian_kernel', 'gaussian_kernel_reference',
    'newton_schulz_pinv', 'newton_schulz_pinv_reference', 'softmax_free_attention',
    'softmax_free_attention_reference', 'softmax_free_attention_released_order',
    'landmark_grid_size', 'landmark_grid_size_exportable', 'EXPORTABLE_PINV_MODES',
    'SHIFTED_INVERSE_EXPORT_MAX_SIZE', 'shifted_inverse_newton_steps'
]

#: How the landmark kernel ``A`` is inverted, named by what is computed (see
#: :func:`newton_schulz_pinv`): ``'newton_shifted'`` iterates on ``A + 0.01 I`` (released SOFT),
#: ``'newton_batch_scaled'`` on ``A`` with one initial scale for the whole batch (released SOFT++),
#: ``'newton'`` on ``A`` with a scale per matrix, and ``'shifted_inverse'`` computes the exact
#: inverse of ``A + 0.01 I`` (Cholesky, eigen-decomposition fallback).
PINV_MODES = ('newton_shifted', 'newton_batch_scaled', 'newton', 'shifted_inverse')
#: Former names, still accepted (with a ``DeprecationWarning``).
PINV_MODE_ALIASES = {
    'official': 'newton_shifted',
    'official_norm': 'newton_batch_scaled',
    'per_matrix': 'newton'
}
#: Modes whose result for one matrix depends on the other matrices of the batch (one shared scale):
#: an image's output depends on its batch, and a NaN / inf in one image makes all of them NaN.
BATCH_COUPLED_PINV_MODES = ('newton_batch_scaled', )
#: Modes that export to ONNX with the same numerics: the Newton modes as the same iteration,
#: ``'shifted_inverse'`` (ONNX has no Cholesky) as a Newton-Schulz iteration run to convergence
#: (see :func:`shifted_inverse_newton_steps`), equal to the Cholesky inverse up to float rounding.
EXPORTABLE_PINV_MODES = ('newton_shifted', 'newton_batch_scaled', 'newton', 'shifted_inverse')
#: Largest landmark count ``m`` for which the export form of ``'shifted_inverse'`` has converged;
#: bound the count with ``max_landmarks`` (the shipped configs use 256).
SHIFTED_INVERSE_EXPORT_MAX_SIZE = 4096
#: Symmetric normalisation variants, see :func:`softmax_free_attention`.
NORMALIZATIONS = ('none', 'core', 'full')

# Constants of the released code's two iterations.
# 'newton_shifted': Tikhonov shift added to A before iterating. The released code builds the
# identity
# in float32, so its float64 runs add float32(0.01); using that value here reproduces them to 1e-13
# (plain 0.01 differs by 2e-8 relative, which the iteration amplifies to ~1e-9).
_SHIFT = 0.009999999776482582  # float32(0.01)
_SAFETY = 0.9  # 'newton_shifted': factor on the classical 2 / |A|_1^2 initial scale
_SEARCH_TOL = 1.01  # scale search: accept alpha once |I - alpha A A|_1 <= this
_MAX_HALVINGS = 10


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def resolve_pinv_mode(mode: str) -> str:
    """The canonical name of a pinv mode (former names are accepted with a deprecation warning).

    Raises:
        ValueError: unknown mode.
    """
    if mode in PINV_MODE_ALIASES:
        canonical = PINV_MODE_ALIASES[mode]
        warnings.warn(
            f'pinv_mode {mode!r} is a former name of {canonical!r}; use {canonical!r}',
            DeprecationWarning,
            stacklevel=3)
        return canonical
    if mode not in PINV_MODES:
        raise ValueError(f'pinv mode {mode!r} unknown; choose one of {list(PINV_MODES)} (former '
                         f'names: {sorted(PINV_MODE_ALIASES)})')
    return mode


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel ``exp(-|a_i - b_j|^2 / 2)`` between two row sets.

    The squared distance is expanded as ``|a|^2 + |b|^2 - 2 a.b`` (one matmul), which is also the
    evaluation order of the released checkpoints' "torch" kernel. It is not clamped at 0, so
    rounding can give ``exp(eps) > 1`` on a diagonal, as in the released code. Callers scale the
    queries by ``d ** -0.25`` beforehand.

    Args:
        a (Tensor): ``(..., Na, d)``.
        b (Tensor): ``(..., Nb, d)``.

    Returns:
        Tensor: ``(..., Na, Nb)`` in float32 (float64 for float64 inputs).
    """
    dtype = _compute_dtype(a)
    with torch.autocast(device_type=a.device.type, enabled=False):
        a, b = a.to(dtype), b.to(dtype)
        sq_a = (a * a).sum(-1, keepdim=True)  # (..., Na, 1)
        sq_b = (b * b).sum(-1).unsqueeze(-2)  # (..., 1, Nb)
        dist = sq_a + sq_b - 2 * (a @ b.transpose(-1, -2))
        return torch.exp(-0.5 * dist)


def gaussian_kernel_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Same as :func:`gaussian_kernel` by direct differences (O(Na Nb d) memory)."""
    dtype = _compute_dtype(a)
    diff = a.to(dtype).unsqueeze(-2) - b.to(dtype).unsqueeze(-3)  # (..., Na, Nb, d)
    return torch.exp(-0.5 * (diff * diff).sum(-1))


def _eye_like(mat: torch.Tensor) -> torch.Tensor:
    return torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)


def _max_col_abs_sum(mat: torch.Tensor) -> torch.Tensor:
    """Matrix 1-norm of each matrix, ``(..., m, m) -> (...)``."""
    return mat.abs().sum(-2).amax(-1)


def _halving_search_scale(mat: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Vectorised 'halve alpha while |I - alpha A A|_1 > 1.01, at most 10 times', per matrix.

    ``alpha`` has shape ``mat.shape[:-2]``. No data-dependent control flow: every candidate scale
    ``alpha / 2^k`` is tested and the first accepted one is selected with ``torch.where``.
    """
    eye = _eye_like(mat)
    square = mat @ mat
    chosen = alpha / 2**_MAX_HALVINGS
    found = torch.zeros_like(alpha, dtype=torch.bool)
    for k in range(_MAX_HALVINGS):
        cand = alpha / 2**k
        ok = _max_col_abs_sum(eye - cand[..., None, None] * square) <= _SEARCH_TOL
        chosen = torch.where(~found & ok, cand, chosen)
        found = found | ok
    return chosen


def _batch_halving_search_scale(mat: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``'newton_batch_scaled'``'s search with tensor operations (the graph-export form).

    The eager loop halves ``alpha`` and ``alpha A A`` while ``max |I - alpha A A|_1 > 1.01`` over
    the whole batch, at most 10 times, and stops at the first accepted scale (one host
    synchronisation per step). Here every step is evaluated, in the same order and with the same
    halvings, and the first accepted scale is selected with ``torch.where``: the same scale bit for
    bit, with no data-dependent control flow. ``alpha`` is 0-dim; so is the result.
    """
    eye = _eye_like(mat)
    square = mat @ (alpha * mat)
    chosen, found = alpha, torch.zeros_like(alpha, dtype=torch.bool)
    for _ in range(_MAX_HALVINGS):
        ok = _max_col_abs_sum(eye - square).max() <= _SEARCH_TOL
        chosen = torch.where(found | ~ok, chosen, alpha)
        found = found | ok
        alpha, square = alpha / 2, square / 2
    return torch.where(found, chosen, alpha)


def _newton_schulz_iterate(mat: torch.Tensor,
                           num_iters: int,
                           mode: str,
                           traceable: bool = False) -> torch.Tensor:
    """The forward iteration shared by the fast op; ``mat`` is ``(..., m, m)``, no autograd.

    ``traceable=True`` (graph export) computes the same values with tensor operations only: no
    host synchronisation, no data-dependent Python branch (see :func:`_batch_halving_search_scale`
    and, for ``'shifted_inverse'``, :func:`_shifted_inverse_traceable`).
    """
    compiling = not traceable and torch.compiler.is_compiling()
    if not traceable and mat.numel() == 0:  # an empty batch
        return mat.clone()
    if mode == 'shifted_inverse':
        if traceable:
            return _shifted_inverse_traceable(mat)
        return _shifted_inverse_compiled(mat) if compiling else _shifted_inverse(mat)
    traceable = traceable or compiling  # torch.compile: the export forms of the search
    row_sum_max = mat.sum(-1).amax(-1)  # (...)
    if mode == 'newton_shifted':
        target = mat + _SHIFT * _eye_like(mat)
        alpha = _SAFETY * 2 / row_sum_max**2
    elif mode == 'newton_batch_scaled' and traceable:
        target = mat
        alpha = _batch_halving_search_scale(mat, 2 / row_sum_max.max()**2).expand_as(row_sum_max)
    elif mode == 'newton_batch_scaled':
        _warn_if_batch_poisoned(mat)
        target = mat
        alpha = 2 / row_sum_max.max()**2  # one scale for the batch
        eye = _eye_like(mat)
        # alpha A A once: halving alpha halves it exactly (a power-of-two scaling), so this equals
        # the released code's recomputation of A (alpha A) at every step bit for bit.
        square = mat @ (alpha * mat)
        for _ in range(_MAX_HALVINGS):  # host sync every step
            if _max_col_abs_sum(eye - square).max() <= _SEARCH_TOL:
                break
            alpha, square = alpha / 2, square / 2
        alpha = alpha.expand_as(row_sum_max)
    else:
        target = mat
        alpha = _halving_search_scale(mat, 2 / row_sum_max**2)
    inv = alpha[..., None, None] * target
    for _ in range(num_iters):
        inv = 2 * inv - inv @ target @ inv
    return inv


def _shifted_inverse(mat: torch.Tensor) -> torch.Tensor:
    """``(A_s + 0.01 I)^-1`` per matrix, ``A_s = (A + A^T) / 2`` (``A`` is symmetric up to
    rounding): Cholesky, and an eigen-decomposition pseudo-inverse for the matrices Cholesky
    rejects (kernels of coinciding landmarks that rounding made indefinite); a non-finite matrix
    gives NaN. Per matrix, so batch-independent."""
    target = (mat + mat.transpose(-1, -2)) / 2 + _SHIFT * _eye_like(mat)
    factor, info = torch.linalg.cholesky_ex(target)
    inv = torch.cholesky_inverse(factor)
    failed = info != 0
    if bool(failed.any()):  # one host sync, only to decide on the fallback
        inv = inv.clone()
        finite = torch.isfinite(target).flatten(-2).all(-1)
        inv[failed & ~finite] = float('nan')  # NaN in, NaN out: for this matrix only
        repair = failed & finite
        if bool(repair.any()):
            inv[repair] = _eigen_pinv(target[repair])
    return inv


def _shifted_inverse_compiled(mat: torch.Tensor) -> torch.Tensor:
    """:func:`_shifted_inverse` as ``torch.compile`` traces it: the same Cholesky, and the same
    fallback chosen with ``torch.cond`` instead of a host synchronisation (one graph, no break).
    The fallback branch decomposes every matrix of the batch (eager: only the rejected ones), with
    the same per-matrix result."""
    eye = _eye_like(mat)
    target = (mat + mat.transpose(-1, -2)) / 2 + _SHIFT * eye
    factor, info = torch.linalg.cholesky_ex(target)
    inv = torch.cholesky_inverse(factor)
    failed = info != 0

    def repaired(inv, target, failed):
        finite = torch.isfinite(target).flatten(-2).all(-1)[..., None, None]
        fallback = _eigen_pinv(torch.where(finite, target, eye))
        fallback = torch.where(finite, fallback, torch.full_like(fallback, float('nan')))
        return torch.where(failed[..., None, None], fallback, inv).flatten()

    # Both branches return a fresh 1-D tensor: torch.cond compares the branches' strides, and with
    # symbolic sizes the row-major strides of a (..., m, m) result are not recognised as equal.
    def kept(inv, target, failed):
        return inv.clone(memory_format=torch.contiguous_format).flatten()

    return torch.cond(failed.any(), repaired, kept, (inv, target, failed)).reshape(inv.shape)


def shifted_inverse_newton_steps(max_size: int, dtype: torch.dtype = torch.float32) -> int:
    """Newton-Schulz steps after which the export form of ``'shifted_inverse'`` has converged to
    the rounding of ``dtype`` for every landmark kernel of size ``m <= max_size``.

    The iteration ``V <- 2 V - V T V`` on ``T = A_s + 0.01 I``, started at ``V_0 = alpha I``, keeps
    ``V`` a polynomial in ``T``, so it acts on each eigenvalue ``lambda`` of ``T`` on its own: the
    error ``1 - lambda v`` starts at ``1 - alpha lambda`` and is squared by every step. A Gaussian
    kernel is positive semi-definite with entries in ``[0, 1]``, so ``lambda`` lies in
    ``[0.01, s]`` where ``s <= m + 0.01`` is the largest row sum of ``T`` (entries are
    non-negative); ``alpha = 2 / (s + 0.01)`` bounds every starting error by
    ``e0 = (s - 0.01) / (s + 0.01) <= m / (m + 0.02)``. The count is the smallest ``k`` with
    ``e0 ** (2 ** k) <= u`` (``u`` the unit roundoff of ``dtype``) at ``m = max_size``, plus one
    step of margin for the rounding of ``s`` and of the iterates.

    Args:
        max_size (int): bound on the matrix size ``m``.
        dtype (torch.dtype): float32 or float64. Defaults to float32.

    Returns:
        int: the step count (23 for ``m <= 4096`` in float32).

    Examples:
        >>> shifted_inverse_newton_steps(256), shifted_inverse_newton_steps(4096)
        (19, 23)
    """
    if max_size < 1:
        raise ValueError(f'max_size must be a positive int, got {max_size}')
    unit_roundoff = torch.finfo(dtype).eps / 2
    log_e0 = math.log1p(-2 * _SHIFT / (max_size + 2 * _SHIFT))  # log(m / (m + 0.02)), < 0
    return math.ceil(math.log2(math.log(unit_roundoff) / log_e0)) + 1


def _shifted_inverse_traceable(mat: torch.Tensor) -> torch.Tensor:
    """The export form of :func:`_shifted_inverse` (ONNX has no Cholesky): the same
    ``(A_s + 0.01 I)^-1`` by a Newton-Schulz iteration with the fixed step count of
    :func:`shifted_inverse_newton_steps` for ``m <= SHIFTED_INVERSE_EXPORT_MAX_SIZE``, tensor
    operations only. Where a graph later meets a larger ``m`` (unbounded landmarks, a larger image)
    the step count no longer covers it and the result is NaN, not an unconverged inverse. Per
    matrix, as the eager op; the eager eigen-decomposition fallback for matrices Cholesky rejects
    (not positive definite, which a Gaussian kernel plus 0.01 I is unless rounding breaks it) has
    no counterpart: such a matrix does not converge.

    Raises:
        ExportUnsupportedError: the example input's ``m`` is larger than the bound.
    """
    size = mat.shape[-1]  # a 0-dim tensor while the TorchScript tracer runs
    traced = example_size(size)
    if traced is not None and traced > SHIFTED_INVERSE_EXPORT_MAX_SIZE:
        raise ExportUnsupportedError(
            f"pinv_mode='shifted_inverse' exports as a Newton-Schulz iteration whose step count "
            f'covers up to {SHIFTED_INVERSE_EXPORT_MAX_SIZE} landmarks, and this input has '
            f'{traced}; bound the landmark count with max_landmarks (e.g. 256, as the shipped '
            'configs do) or export at a smaller input size')
    eye = _eye_like(mat)
    target = (mat + mat.transpose(-1, -2)) / 2 + _SHIFT * eye
    alpha = 2 / (target.sum(-1).amax(-1) + _SHIFT)  # (...)
    inv = alpha[..., None, None] * eye
    for _ in range(shifted_inverse_newton_steps(SHIFTED_INVERSE_EXPORT_MAX_SIZE, mat.dtype)):
        inv = 2 * inv - inv @ target @ inv
    covered = (size if torch.is_tensor(size) else torch.tensor(size)) <= \
        SHIFTED_INVERSE_EXPORT_MAX_SIZE
    return torch.where(covered, inv, torch.full_like(inv, float('nan')))


def _eigen_pinv(mat: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of symmetric matrices from their eigen-decomposition (eigenvalues below
    ``m * eps * |lambda|_max`` are treated as zero)."""
    values, vectors = torch.linalg.eigh(mat)
    cutoff = values.abs().amax(-1, keepdim=True) * mat.shape[-1] * torch.finfo(mat.dtype).eps
    inverse = torch.where(values.abs() > cutoff, 1 / values, torch.zeros_like(values))
    return (vectors * inverse.unsqueeze(-2)) @ vectors.transpose(-1, -2)


def _warn_if_batch_poisoned(mat: torch.Tensor) -> None:
    """Name the failure ``'newton_batch_scaled'`` cannot avoid: a non-finite matrix poisons all."""
    finite = torch.isfinite(mat).flatten(-2).all(-1).flatten()  # host sync, as the search
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        warnings.warn(
            f"pinv_mode='newton_batch_scaled': {len(bad)} of {finite.numel()} landmark kernels "
            f'(image x head, flat indices {bad[:8]}) hold NaN or inf; this mode shares one Newton '
            'scale across the whole batch (as the released SOFT++ code does), so every image of '
            "the batch is now NaN. pinv_mode='newton' keeps the other images finite.",
            RuntimeWarning,
            stacklevel=2)


def newton_schulz_pinv_macs(m: int, num_iters: int, mode: str) -> int:
    """Multiply-adds of :func:`newton_schulz_pinv` for one ``(m, m)`` matrix (the one source of
    this cost, used by the FLOP counter :mod:`mmlinattn.analysis.flops`).

    Each iteration ``V <- 2 V - (V P) V`` is two ``m x m`` products (``2 m^3``); ``m^2`` is the
    initial scaling; the modes with a scale search add the ``A A`` product (``m^3``, computed
    once). ``'shifted_inverse'``: the Cholesky factorisation (``m^3 / 3``) and the inverse from it
    (``2 m^3 / 3``); the eigen-decomposition fallback, taken only for matrices Cholesky rejects,
    is not counted.
    """
    mode = PINV_MODE_ALIASES.get(mode, mode)
    if mode == 'shifted_inverse':  # Cholesky (m^3 / 3) and the inverse from it (2 m^3 / 3)
        return m**3 + m**2
    macs = 2 * num_iters * m**3 + m**2
    if mode != 'newton_shifted':
        macs += m**3
    return macs


class _NewtonSchulzPinv(torch.autograd.Function):
    """Iterate without a graph; differentiate as an exact inverse: ``dA = -V^T G V^T``."""

    @staticmethod
    def forward(ctx, mat, num_iters, mode):
        inv = _newton_schulz_iterate(mat, num_iters, mode)
        ctx.save_for_backward(inv)
        ctx.symmetric_input = mode == 'shifted_inverse'
        return inv

    @staticmethod
    def backward(ctx, grad):
        inv_t = ctx.saved_tensors[0].transpose(-1, -2)
        with torch.autocast(device_type=grad.device.type, enabled=False):
            grad_mat = -(inv_t @ grad.to(inv_t.dtype) @ inv_t)
            if ctx.symmetric_input:  # the forward reads (A + A^T) / 2
                grad_mat = (grad_mat + grad_mat.transpose(-1, -2)) / 2
            return grad_mat, None, None


def newton_schulz_pinv(mat: torch.Tensor,
                       num_iters: int = 20,
                       mode: str = 'newton_shifted') -> torch.Tensor:
    """Moore-Penrose inverse of a batch of (symmetric) matrices by Newton-Schulz iteration, or the
    exact inverse of the shifted matrix (``mode='shifted_inverse'``).

    ``V_0 = alpha P``, then ``num_iters`` times ``V <- 2 V - (V P) V``. The iterations run without
    an autograd graph; the backward applies the derivative of an exact inverse once,
    ``dL/dA = -V^T (dL/dV) V^T``, evaluated at the final iterate (exact when converged; the
    released SOFT-Norm code instead back-propagated through all iterations, which differs where the
    iteration has not converged). Works on CPU and GPU.

    Modes (``s`` = largest row sum of ``A``):

    * ``'newton_shifted'`` (formerly ``'official'``) - the released SOFT models:
      ``P = A + 0.01 I`` and, per matrix, ``alpha = 0.9 * 2 / s^2``. No host synchronisation.
    * ``'newton_batch_scaled'`` (formerly ``'official_norm'``) - the released SOFT-Norm (SOFT++)
      models: ``P = A`` and a single
      ``alpha = 2 / s^2`` with ``s`` taken over the *whole batch and all heads*, halved while
      ``max |I - alpha A A|_1 > 1.01`` (at most 10 times). The search synchronises with the host
      once per halving, and an image's output depends on the other images of its batch (measured on
      the official fixture: up to 3.2e-4 relative on stage outputs). **A NaN or inf in one image
      makes every image of the batch NaN** (the shared scale becomes NaN); a ``RuntimeWarning``
      names the affected matrices when it happens. Use it to reproduce released weights, never to
      train.
    * ``'newton'`` (formerly ``'per_matrix'``) - for training: the same search done independently
      for every matrix and fully vectorised (no host synchronisation, no data-dependent Python
      control flow, graph- and export-friendly, batch-independent;
      ``torch.compile(fullgraph=True)`` traces it). Measured against ``'newton_batch_scaled'``
      with the official SOFT-Norm fixture weights: stage outputs differ by up to 2.8e-2
      max-normalised at 64 x 96 (1.6e-2 at 71 x 103, 2.5e-3 at 128 x 160): each matrix gets a
      larger scale than the batch-global one, so it is closer to converged. Reproducing released
      SOFT++ outputs therefore needs ``'newton_batch_scaled'``.

    * ``'shifted_inverse'`` - for training and high resolution: ``(A + 0.01 I)^-1`` computed
      directly (Cholesky; an eigen-decomposition pseudo-inverse for matrices Cholesky rejects),
      with the same analytic backward, which is exact here. 15x cheaper than 20 Newton steps at
      m = 256 on CPU; per matrix, batch-independent. It is the fully converged ``'newton_shifted'``
      (up to the 0.9 safety factor, which only affects the unconverged iterates) and, for
      SOFT++, a converged and regularised version of the released unshifted iteration.

    The scales assume non-negative entries (true for Gaussian kernels), for which the largest row
    sum is ``|A|_inf >= sigma_max(A)``.

    With a fixed ``num_iters`` the result is a spectrally truncated inverse: eigen-directions with
    ``alpha * lambda^2 << 2^-num_iters`` are not inverted. Do not expect ``torch.linalg.pinv``.

    While the model is exported (:func:`mmlinattn.ops.export.is_exporting`) the iteration runs as
    plain tensor operations (unrolled in the graph, the halving search evaluated with
    ``torch.where``, same values). ``'shifted_inverse'`` (ONNX has no Cholesky) then runs a
    Newton-Schulz iteration on ``A_s + 0.01 I`` from ``V_0 = alpha I``, whose fixed step count
    (:func:`shifted_inverse_newton_steps`) converges for every ``m`` up to
    :data:`SHIFTED_INVERSE_EXPORT_MAX_SIZE`: the Cholesky inverse up to float rounding, with no
    host synchronisation. A larger ``m`` raises
    :class:`~mmlinattn.ops.export.ExportUnsupportedError` at export and gives NaN in the graph.

    Args:
        mat (Tensor): ``(..., m, m)``.
        num_iters (int): Newton-Schulz steps. Defaults to 20 (all released models).
        mode (str): one of :data:`PINV_MODES` (or a former name). Defaults to
            ``'newton_shifted'``.

    Returns:
        Tensor: ``(..., m, m)`` in float32 (float64 for float64 input).
    """
    mode = resolve_pinv_mode(mode)
    with torch.autocast(device_type=mat.device.type, enabled=False):
        mat = mat.to(_compute_dtype(mat))
        if is_exporting():  # the same iteration as plain tensor operations, for the graph
            return _newton_schulz_iterate(mat, num_iters, mode, traceable=True)
        return _NewtonSchulzPinv.apply(mat, num_iters, mode)


def newton_schulz_pinv_reference(mat: torch.Tensor,
                                 num_iters: int = 20,
                                 mode: str = 'newton_shifted') -> torch.Tensor:
    """Same iteration as :func:`newton_schulz_pinv` with plain autograd through every step.

    Matrices are handled one at a time with explicit Python loops; ``'newton'`` is literally
    ``'newton_batch_scaled'`` applied to each matrix on its own. The scale is a constant for
    autograd
    (it does not matter once the iteration has converged).
    """
    mode = resolve_pinv_mode(mode)
    mat = mat.to(_compute_dtype(mat))
    if mat.numel() == 0:
        return mat.clone()
    flat = mat.reshape(-1, *mat.shape[-2:])
    eye = _eye_like(mat)

    def search(group):  # the 'newton_batch_scaled' scale of a group
        group = [a.detach() for a in group]
        alpha = 2 / max(float(a.sum(-1).max()) for a in group)**2
        for _ in range(_MAX_HALVINGS):
            worst = max(float((eye - a @ (alpha * a)).abs().sum(0).max()) for a in group)
            if worst <= _SEARCH_TOL:
                break
            alpha /= 2
        return alpha

    if mode == 'newton_batch_scaled':
        global_alpha = search(list(flat))
    outs = []
    for a in flat:
        if mode == 'shifted_inverse':
            outs.append(torch.linalg.inv((a + a.transpose(0, 1)) / 2 + _SHIFT * eye))
            continue
        if mode == 'newton_shifted':
            target = a + _SHIFT * eye
            alpha = _SAFETY * 2 / a.detach().sum(-1).max()**2
        else:
            target = a
            alpha = global_alpha if mode == 'newton_batch_scaled' else search([a])
        inv = alpha * target
        for _ in range(num_iters):
            inv = 2 * inv - inv @ target @ inv
        outs.append(inv)
    return torch.stack(outs).reshape(mat.shape)


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f'normalization {normalization!r} unknown; '
                         f'choose one of {list(NORMALIZATIONS)}')


def softmax_free_attention(q: torch.Tensor,
                           landmarks: torch.Tensor,
                           v: torch.Tensor,
                           normalization: str = 'none',
                           pinv_mode: str = 'newton_shifted',
                           num_iters: int = 20,
                           eps: float = 1e-6) -> torch.Tensor:
    """Gaussian-kernel Nystrom attention of SOFT / SOFT++ in O(N m d + m^2 d + m^3).

    Never forms an ``N x N`` matrix. Evaluated as ``K1 (A^+ (K1^T V))``: ``N m d + m^2 d + N m d``
    multiply-adds per head, where the released code's ``(K1 A^+) (K1^T V)`` costs
    ``N m^2 + N m d + N m d`` (4.3x slower at N = 16,800, m = 256, d = 32); the values agree to
    rounding (:func:`softmax_free_attention_released_order`).

    Args:
        q (Tensor): queries already scaled by ``d ** -0.25`` (they are also the keys),
            ``(B, heads, N, d)``.
        landmarks (Tensor): bottleneck tokens, ``(B, heads, m, d)``.
        v (Tensor): values, ``(B, heads, N, d)``.
        normalization (str): ``'none'`` (SOFT), ``'core'`` (released SOFT++:
            ``K1 D_A^-1/2 A^+ D_A^-1/2 K1^T`` with ``D_A = diag(A 1)``) or ``'full'``
            (``D^-1/2 S D^-1/2`` with ``D = diag(S 1)``, ``S = K1 A^+ K1^T``). Defaults to
            ``'none'``.
        pinv_mode (str): see :func:`newton_schulz_pinv`. Defaults to ``'newton_shifted'``.
        num_iters (int): Newton-Schulz steps. Defaults to 20.
        eps (float): ``'full'`` only: degrees are clamped to at least ``eps`` before ``^-1/2``
            (an approximate ``A^+`` does not guarantee positive row sums). Defaults to 1e-6.

    Returns:
        Tensor: ``(B, heads, N, d)`` in the dtype of ``v``.

    Examples:
        >>> q, v = torch.randn(2, 4, 100, 32) / 32 ** 0.25, torch.randn(2, 4, 100, 32)
        >>> out = softmax_free_attention(q, q[:, :, ::10], v, normalization='full')
        >>> out.shape
        torch.Size([2, 4, 100, 32])
    """
    _check_normalization(normalization)
    dtype = _compute_dtype(q)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, landmarks, v32 = q.to(dtype), landmarks.to(dtype), v.to(dtype)
        k1 = gaussian_kernel(q, landmarks)  # (B, h, N, m)
        core_inv = _normalised_core_inverse(landmarks, normalization, pinv_mode, num_iters)
        k1_t = k1.transpose(-1, -2)
        if normalization == 'full':
            col = k1.sum(-2).unsqueeze(-1)  # K1^T 1: (B, h, m, 1)
            deg = (k1 @ (core_inv @ col)).clamp_min(eps).rsqrt()  # (B, h, N, 1)
            out = deg * (k1 @ (core_inv @ (k1_t @ (deg * v32))))
        else:
            out = k1 @ (core_inv @ (k1_t @ v32))  # N m d + m^2 d + N m d
    return out.to(v.dtype)


def _normalised_core_inverse(landmarks: torch.Tensor, normalization: str, pinv_mode: str,
                             num_iters: int) -> torch.Tensor:
    """``A^+`` of the landmark kernel, with ``'core'``'s symmetric degree scaling applied."""
    core = gaussian_kernel(landmarks, landmarks)  # (B, h, m, m)
    core_inv = newton_schulz_pinv(core, num_iters, pinv_mode)
    if normalization == 'core':
        deg = core.sum(-1, keepdim=True).rsqrt()  # (B, h, m, 1)
        core_inv = deg * core_inv * deg.transpose(-1, -2)
    return core_inv


def softmax_free_attention_released_order(q: torch.Tensor,
                                          landmarks: torch.Tensor,
                                          v: torch.Tensor,
                                          normalization: str = 'none',
                                          pinv_mode: str = 'newton_shifted',
                                          num_iters: int = 20,
                                          eps: float = 1e-6) -> torch.Tensor:
    """:func:`softmax_free_attention` in the released code's order ``(K1 A^+) (K1^T V)``, which
    costs ``N m^2`` per head for the ``N x m`` product ``K1 A^+`` (the default order costs
    ``m^2 d``). The same values up to rounding; kept as a backend (``'released_order'``) for the
    benchmarks and tests."""
    _check_normalization(normalization)
    dtype = _compute_dtype(q)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q, landmarks, v32 = q.to(dtype), landmarks.to(dtype), v.to(dtype)
        k1 = gaussian_kernel(q, landmarks)
        core_inv = _normalised_core_inverse(landmarks, normalization, pinv_mode, num_iters)
        if normalization == 'full':
            col = k1.sum(-2).unsqueeze(-1)
            deg = (k1 @ (core_inv @ col)).clamp_min(eps).rsqrt()
            out = deg * ((k1 @ core_inv) @ (k1.transpose(-1, -2) @ (deg * v32)))
        else:
            out = (k1 @ core_inv) @ (k1.transpose(-1, -2) @ v32)
    return out.to(v.dtype)


def softmax_free_attention_reference(q: torch.Tensor,
                                     landmarks: torch.Tensor,
                                     v: torch.Tensor,
                                     normalization: str = 'none',
                                     pinv_mode: str = 'newton_shifted',
                                     num_iters: int = 20,
                                     eps: float = 1e-6) -> torch.Tensor:
    """Same as :func:`softmax_free_attention` with ``S`` (``N x N``) materialised."""
    _check_normalization(normalization)
    dtype = _compute_dtype(q)
    q, landmarks, v32 = q.to(dtype), landmarks.to(dtype), v.to(dtype)
    k1 = gaussian_kernel_reference(q, landmarks)
    core = gaussian_kernel_reference(landmarks, landmarks)
    core_inv = newton_schulz_pinv_reference(core, num_iters, pinv_mode)
    if normalization == 'core':
        d_a = torch.diag_embed(core.sum(-1)**-0.5)
        core_inv = d_a @ core_inv @ d_a
    sim = k1 @ core_inv @ k1.transpose(-1, -2)  # (B, h, N, N)
    if normalization == 'full':
        d_s = torch.diag_embed(sim.sum(-1).clamp_min(eps)**-0.5)
        sim = d_s @ sim @ d_s
    return (sim @ v32).to(v.dtype)


def landmark_grid_size(height: int,
                       width: int,
                       ratio: int,
                       max_landmarks: Optional[int] = None) -> Tuple[int, int]:
    """Landmark grid of a stage: ``floor(H / r) x floor(W / r)``, optionally bounded.

    The released models use a stride-``r`` convolution, so the number of landmarks grows with the
    image (m = N / r^2) and the O(m^3) inverse dominates at detection resolution. With
    ``max_landmarks`` the convolution's grid is average-pooled down to the largest grid with the
    same aspect ratio (each side scaled by ``sqrt(max_landmarks / m)``, floored, at least 1) that
    holds at most ``max_landmarks`` landmarks, so cost stays linear in the number of pixels.

    Args:
        height (int): stage grid height H.
        width (int): stage grid width W.
        ratio (int): landmark ratio r (kernel and stride of the landmark convolution).
        max_landmarks (int, optional): bound on the landmark count; None = the official grid.

    Returns:
        tuple[int, int]: landmark grid ``(h, w)``.

    Examples:
        >>> landmark_grid_size(200, 336, 8), landmark_grid_size(200, 336, 8, max_landmarks=256)
        ((25, 42), (12, 20))
    """
    if height < ratio or width < ratio:
        raise ValueError(f'stage grid {height}x{width} is smaller than the landmark ratio {ratio}: '
                         'the input image is too small for this model (the released SOFT models '
                         'need at least 29 px per side)')
    grid_h, grid_w = height // ratio, width // ratio
    if max_landmarks is None or grid_h * grid_w <= max_landmarks:
        return grid_h, grid_w
    if max_landmarks < 1:
        raise ValueError(f'max_landmarks must be a positive int or None, got {max_landmarks}')
    scale = math.sqrt(max_landmarks / (grid_h * grid_w))
    out_h = max(1, min(grid_h, int(grid_h * scale)))
    out_w = max(1, min(grid_w, int(grid_w * scale)))
    while out_h * out_w > max_landmarks:  # only when one side was clamped up to 1
        if out_h >= out_w:
            out_h -= 1
        else:
            out_w -= 1
    return out_h, out_w


def landmark_grid_size_exportable(
        height,
        width,
        ratio: int,
        max_landmarks: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`landmark_grid_size` with tensor operations, for grids known only at run time.

    The same integers for every size (tested against it): the bound's scale is computed in float64
    as Python computes it (one correctly rounded division and square root, a product, a floor),
    and the decrement loop, which only runs when one side was clamped up to 1, is its closed form
    (the other side becomes ``max_landmarks``). Used while the model is exported, where the grid
    must follow the input size instead of being frozen at the export size. The "too small for the
    landmark ratio" check is not part of the graph.

    Args:
        height (int | Tensor): stage grid height H (a 0-dim integer tensor while tracing).
        width (int | Tensor): stage grid width W.
        ratio (int): landmark ratio r.
        max_landmarks (int, optional): bound on the landmark count; None = the official grid.

    Returns:
        tuple[Tensor, Tensor]: 0-dim int64 tensors ``(h, w)``.
    """
    height, width = (s if torch.is_tensor(s) else torch.tensor(s) for s in (height, width))
    grid_h = torch.div(height, ratio, rounding_mode='floor')
    grid_w = torch.div(width, ratio, rounding_mode='floor')
    if max_landmarks is None:
        return grid_h, grid_w
    total = grid_h * grid_w
    # A tensor divided into: ``scalar / tensor`` is evaluated as ``reciprocal(t) * scalar``,
    # which rounds differently from Python's division.
    bound = torch.full_like(total, max_landmarks, dtype=torch.float64)
    scale = torch.sqrt(bound / total.to(torch.float64))
    out_h = torch.floor(grid_h.to(torch.float64) * scale).to(grid_h.dtype)
    out_w = torch.floor(grid_w.to(torch.float64) * scale).to(grid_w.dtype)
    out_h = torch.maximum(torch.minimum(out_h, grid_h), torch.ones_like(out_h))
    out_w = torch.maximum(torch.minimum(out_w, grid_w), torch.ones_like(out_w))
    over = out_h * out_w > max_landmarks  # one side is 1: the loop shrinks the other one
    shrink_h = over & (out_h >= out_w)
    shrink_w = over & (out_h < out_w)
    most = torch.full_like(out_h, max_landmarks)
    out_h = torch.where(shrink_h, torch.div(most, out_w, rounding_mode='floor'), out_h)
    out_w = torch.where(shrink_w, torch.div(most, out_h, rounding_mode='floor'), out_w)
    bounded = total > max_landmarks
    return torch.where(bounded, out_h, grid_h), torch.where(bounded, out_w, grid_w)


register_op('gaussian_kernel', 'torch', gaussian_kernel)
register_op('gaussian_kernel', 'reference', gaussian_kernel_reference)
register_op('newton_schulz_pinv', 'torch', newton_schulz_pinv)
register_op('newton_schulz_pinv', 'reference', newton_schulz_pinv_reference)
register_op('softmax_free', 'torch', softmax_free_attention)
register_op('softmax_free', 'reference', softmax_free_attention_reference)
register_op('softmax_free', 'released_order', softmax_free_attention_released_order)
