"""ONNX export of mmlinattn backbones and of the detectors / segmentors built on them.

What is exported (:func:`export_spec`):

* ``part='backbone'``: the config's backbone alone; input ``input`` ``(B, 3, H, W)``, outputs
  ``feat0``, ``feat1``, ... (its tuple of feature maps).
* ``part='model'``: the whole network up to its raw head outputs (mmengine's ``mode='tensor'``),
  input ``input`` = the data preprocessor's output (normalised, RGB as the config converts it):

  - segmentors (UperNet, Semantic FPN, any ``EncoderDecoder``): ``logits``, the decode head's
    ``(B, classes, H / 4, W / 4)`` map (mmseg's ``_forward``);
  - one-stage detectors (RetinaNet, ...): the head's per-level outputs, ``cls_score{i}`` and
    ``bbox_pred{i}`` (mmdet's ``_forward``);
  - two-stage detectors (Mask R-CNN, Cascade Mask R-CNN, ...): the neck's maps ``neck{i}`` and the
    RPN head's per-level ``rpn_cls_score{i}`` / ``rpn_bbox_pred{i}``. mmdet's ``_forward`` of a
    two-stage detector runs the RPN's proposal post-processing (NMS) and the RoI heads on its
    proposals; those are not exportable on this stack (below), so the graph stops at the heads
    that see whole feature maps, and anchors, decoding, NMS and the RoI heads run outside it.

**Exporter: the TorchScript-based one** (``torch.onnx.export(..., dynamo=False)``). Both were tried
(torch 2.13, onnxscript 0.7.2) with the export forms below, with dynamic batch, height and width,
and checked in ONNX Runtime at two other sizes: each exports RAVLT (both attention layouts), SOFT
/ SOFT++ (bounded and unbounded landmarks), UperNet, Semantic FPN and the Mask R-CNN up to the
RPN head to <= 2.3e-6 max-normalised. The TorchScript one is used because:

* it is 12-40x faster: tiny test models export in 1-2 s against 20 s (RAVLT), 28-32 s (Mask
  R-CNN, UperNet) and 47-55 s (SOFT, Semantic FPN) with ``dynamo=True`` on one core, which keeps
  the 30-odd exports of the deployment tests in the default suite;
* it reports every value a trace freezes (a ``TracerWarning`` where Python reads a tensor):
  :func:`export_onnx` returns them, and the tests require none for every model, so a size that
  would stop following the input is found at export time;
* the dynamo path needed more care for the same result: ``dynamic_shapes`` per input
  (``Dim('H', min=32)`` fails on RAVLT with "Invalid ranges [2:1]"; ``Dim.DYNAMIC`` passes), and
  its ONNX translation rejected ``torch.div(int, tensor, rounding_mode='floor')``.

torch >= 2.9 prints a ``DeprecationWarning`` for it (it is no longer the default) and may remove it
one day: the export forms check :func:`torch.compiler.is_exporting` too, so switching is the
``dynamo=True`` argument plus ``dynamic_shapes``.

Numerics: the ops take their export forms only while exporting
(:func:`mmlinattn.ops.export.is_exporting`): the Newton-Schulz inverse as plain unrolled tensor
operations (the ``'newton_batch_scaled'`` halving search with ``torch.where``, the same scale bit
for bit), SOFT's bounded landmark grid with tensor arithmetic (the same integers as
:func:`~mmlinattn.ops.soft.landmark_grid_size`) and its average pooling, like mmseg's pyramid
pooling (``nn.AdaptiveAvgPool2d``), as two matrix products whose size follows the input; and
``pinv_mode='shifted_inverse'`` (Cholesky in PyTorch; ONNX has no Cholesky, linear solve or
eigen-decomposition) as a Newton-Schulz iteration on the same ``A + 0.01 I`` with a fixed step
count that converges to float32 rounding for up to
:data:`~mmlinattn.ops.soft.SHIFTED_INVERSE_EXPORT_MAX_SIZE` landmarks
(:func:`~mmlinattn.ops.soft.shifted_inverse_newton_steps`): the Cholesky inverse up to rounding.
An example with more landmarks is refused (:class:`~mmlinattn.ops.export.ExportUnsupportedError`,
naming ``max_landmarks``). Eager PyTorch is unchanged.

**Not exportable: the post-processed detector** (boxes, labels, masks). On this stack:

* mmcv 2.1.0's ``nms`` (used by mmdet's ``batched_nms`` for RPN proposals and final detections)
  is an autograd Function without an ONNX symbolic (mmcv 2.0 dropped its ONNX support and moved
  it to mmdeploy) whose forward calls the compiled extension ``mmcv._ext.nms`` through pybind11.
  The tracer records no node for it: exporting ``nms(boxes, scores, 0.5)`` alone gives a graph
  whose ``boxes`` input is gone and which applies the example's keep-mask as a constant (silently
  wrong for any other image); ``torch.export`` stops with "The tensor has a non-zero number of
  elements, but its data is not allocated yet" (the extension cannot run on fake tensors);
* mmcv's ``RoIAlign`` symbolic writes ``Squeeze`` with an ``axes`` attribute (the opset < 13
  form): at opset 11 it matches eager exactly, at 13 and above ONNX Runtime rejects the file as
  invalid, and our graphs need opset >= 14 (``scaled_dot_product_attention``). The RoI heads
  also branch in Python on data (``if inds.numel() > 0`` per FPN level in
  ``SingleRoIExtractor``), which a trace freezes;
* mmdeploy 1.3.1 (the last release) cannot be installed with onnx 1.23 (it pins
  ``protobuf<=3.20.2``, onnx needs ``>=6.31.1``); installed beside it without dependencies it
  calls ``torch.onnx.export`` without ``dynamo=False`` (so torch 2.13 runs the dynamo exporter,
  which rejects its arguments) and, with that forced, imports ``_cast_Long`` from
  ``torch.onnx.symbolic_opset9``, which torch 2.13 no longer has. With both patched it exported
  the demo Mask R-CNN (standard NonMaxSuppression, RoiAlign, TopK, NonZero nodes) and ONNX
  Runtime ran it, but its post-processing follows mmdeploy's own settings, not the config's
  ``test_cfg`` (its detections were not compared with mmdet's); not adopted.
"""
import contextlib
import json
import os
import os.path as osp
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..ops.export import ExportUnsupportedError, adaptive_avg_pool2d_exportable
from ..utils.run_config import UserInputError

__all__ = [
    'PARTS', 'DEFAULT_OPSET', 'TOLERANCE', 'ExportSpec', 'Comparison', 'OrtBenchmark',
    'require_onnx', 'build_model', 'export_spec', 'export_onnx', 'simplify_onnx', 'create_session',
    'run_onnxruntime', 'run_torch', 'compare_outputs', 'photograph', 'verification_inputs',
    'verify_onnx', 'benchmark_backbone'
]

#: What ``--part`` selects, see the module docstring.
PARTS = ('backbone', 'model')
#: Default ONNX opset (scaled_dot_product_attention needs >= 14, LayerNormalization is 17).
DEFAULT_OPSET = 17
MIN_OPSET = 14
#: Largest max-normalised error (float32) :func:`verify_onnx` accepts.
TOLERANCE = 1e-4
INPUT_NAME = 'input'
#: ImageNet mean / std (RGB, 0-255), used where a config has no data preprocessor.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
DEPLOY_HINT = 'pip install -e .[deploy]'


def require_onnx() -> Tuple[Any, Any]:
    """Import onnx and onnxruntime.

    Returns:
        tuple: the ``onnx`` and ``onnxruntime`` modules.

    Raises:
        UserInputError: one of them is not installed, naming the extra that installs both.
    """
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise UserInputError(f'{err.name} is not installed; ONNX export needs the deploy extra: '
                             f'{DEPLOY_HINT}') from None
    return onnx, onnxruntime


# --------------------------------------------------------------------------------------------
# Model building and weights


def build_model(cfg,
                checkpoint: Optional[str] = None,
                seed: int = 0,
                whole: bool = False) -> Tuple[nn.Module, str]:
    """Build the model of ``cfg`` in eval mode, with the weights of ``checkpoint`` or seeded random
    weights.

    The backbone's ``init_cfg`` (pretrained ImageNet weights, often a placeholder path in our
    configs) is never followed: the weights come from ``checkpoint`` or from the seed.

    Args:
        cfg (Config): an mmdet or mmseg config with ``model.backbone``.
        checkpoint (str, optional): a whole-model checkpoint (keys under ``backbone.``, e.g. from
            ``tools/train.py``) or a backbone checkpoint (official or converted with
            ``tools/convert_checkpoint.py``); None: random weights from ``seed``.
        seed (int): seed of the random initialisation. Defaults to 0.
        whole (bool): the whole model is exported, so ``checkpoint`` must hold all its weights
            (a backbone-only file is refused). Defaults to False.

    Returns:
        tuple[nn.Module, str]: the model and one line saying where its weights come from.

    Raises:
        UserInputError: no ``model.backbone`` in the config, an unknown ``default_scope``, or a
            checkpoint that is damaged or does not fit (the one-line diagnosis of
            :func:`mmlinattn.utils.run_config.check_checkpoint`).
    """
    import copy

    from mmengine.registry import MODELS, DefaultScope

    from ..utils.run_config import check_checkpoint, task_of
    model_cfg = cfg.get('model')
    if not isinstance(model_cfg, dict) or not model_cfg.get('backbone'):
        raise UserInputError('the config defines no model.backbone; give a detector or segmentor '
                             'config (e.g. configs/upernet_ravlt_t_demo.py)')
    scope = task_of(cfg)
    if checkpoint is not None:
        check_checkpoint(cfg, checkpoint, '--checkpoint', whole=whole)
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg['backbone'].pop('init_cfg', None)
    if model_cfg.get('pretrained') is not None:  # mmseg's spelling of the same
        model_cfg['pretrained'] = None
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
        if checkpoint is None:
            with _quiet_logger():
                model.init_weights()
            source = f'no --checkpoint: random weights (seed {seed}), not a trained model'
        else:
            source = _load_weights(model, checkpoint)
    return model.eval(), source


@contextlib.contextmanager
def _quiet_logger():
    """mmengine's ``init_weights`` logs every parameter's initialiser; keep it to warnings."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_weights(model: nn.Module, path: str) -> str:
    """Load a whole-model or a backbone checkpoint into ``model``; one line saying which."""
    from ..converters.common import load_checkpoint_file, load_pretrained, unwrap_state_dict
    from ..utils.checkpoint import CheckpointError
    try:
        state = unwrap_state_dict(load_checkpoint_file(path))
        if not any(k.startswith('backbone.') for k in state):
            load_pretrained(model.backbone, path)
            return (f'--checkpoint {path}: backbone weights; the other modules keep random '
                    'weights (seed)')
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # a shape mismatch outside the backbone
            lines = [ln.strip() for ln in str(err).splitlines() if 'size mismatch' in ln]
            raise UserInputError(f'--checkpoint: {path} does not fit the config\'s model: '
                                 f'{lines[0] if lines else str(err).splitlines()[0]}') from None
    except CheckpointError as err:
        raise UserInputError(f'--checkpoint: {err}') from None
    missing = [k for k in missing if not k.endswith('_extra_state')]
    if missing or unexpected:
        parts = [
            f'{len(keys)} {label} (e.g. {keys[0]})'
            for label, keys in (('missing', missing), ('unexpected', unexpected)) if keys
        ]
        raise UserInputError(f'--checkpoint: {path} does not fit the config\'s model: '
                             f'{", ".join(parts)} tensor(s)')
    return f'--checkpoint {path}: whole model'


# --------------------------------------------------------------------------------------------
# What is exported


@dataclass
class ExportSpec:
    """A module to export and the names of its outputs.

    Attributes:
        module (nn.Module): called as ``module(input)``, returns a tuple of tensors.
        output_names (list[str] | None): one per returned tensor; None until
            :func:`export_onnx` names them.
        description (str): what the outputs are.
    """
    module: nn.Module
    output_names: Optional[List[str]]
    description: str


class _BackboneOutputs(nn.Module):

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x))


class _SegmentorLogits(nn.Module):

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.model._forward(x), )


class _DetectorHeads(nn.Module):
    """Flattened raw head outputs: ``(neck maps +) [cls per level] + [bbox per level] (+ ...)``."""

    def __init__(self, model: nn.Module, two_stage: bool):
        super().__init__()
        self.model = model
        self.two_stage = two_stage
        self.group_sizes: List[int] = []

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.two_stage:
            feats = self.model.extract_feat(x)
            groups = [list(feats)] + [list(g) for g in self.model.rpn_head.forward(feats)]
        else:
            groups = [list(g) for g in self.model._forward(x)]
        self.group_sizes = [len(g) for g in groups]
        return tuple(t for group in groups for t in group)

    def output_names(self) -> List[str]:
        """Names of the outputs of the last call, numbered per level."""
        if self.two_stage:
            groups = ['neck', 'rpn_cls_score', 'rpn_bbox_pred']
        else:
            groups = ['cls_score', 'bbox_pred', 'objectness']
        groups += [f'out{i}_' for i in range(len(groups), len(self.group_sizes))]
        return [f'{g}{i}' for g, size in zip(groups, self.group_sizes) for i in range(size)]


def export_spec(model: nn.Module, part: str) -> ExportSpec:
    """The module exported for ``part`` of ``model`` (module docstring); output names are set by
    :func:`export_onnx`.

    Args:
        model (nn.Module): from :func:`build_model`.
        part (str): one of :data:`PARTS`.

    Returns:
        ExportSpec: in eval mode.

    Raises:
        UserInputError: an unknown part, or a model of a kind this module does not know.
    """
    if part not in PARTS:
        raise UserInputError(f'unknown part {part!r}; choose one of {list(PARTS)}')
    if part == 'backbone':
        return ExportSpec(
            _BackboneOutputs(model.backbone).eval(), None,
            'the backbone feature maps (feat0 at stride 4, ...)')
    if hasattr(model, 'decode_head'):
        return ExportSpec(
            _SegmentorLogits(model).eval(), None,
            'the decode head logits (B, classes, H/4, W/4), before resizing and argmax')
    if getattr(model, 'with_rpn', False):
        return ExportSpec(
            _DetectorHeads(model, two_stage=True).eval(), None,
            'the neck maps and the RPN head outputs per level (anchors, proposal NMS and the RoI '
            'heads run outside the graph)')
    if hasattr(model, 'bbox_head'):
        return ExportSpec(
            _DetectorHeads(model, two_stage=False).eval(), None,
            'the head outputs per level, before decoding and NMS (mmdet\'s mode="tensor")')
    raise UserInputError(f'{type(model).__name__}: --part model knows segmentors with a '
                         'decode_head and detectors with a bbox_head or rpn_head; use --part '
                         'backbone')


def _name_outputs(spec: ExportSpec, outputs: Sequence[torch.Tensor]) -> List[str]:
    if isinstance(spec.module, _BackboneOutputs):
        return [f'feat{i}' for i in range(len(outputs))]
    if isinstance(spec.module, _SegmentorLogits):
        return ['logits']
    if isinstance(spec.module, _DetectorHeads):
        return spec.module.output_names()
    return [f'out{i}' for i in range(len(outputs))]


# --------------------------------------------------------------------------------------------
# Export


def _pool_forward(size: Tuple[Optional[int], Optional[int]]):

    def forward(x: torch.Tensor) -> torch.Tensor:
        target = tuple(x.shape[-2 + i] if s is None else s for i, s in enumerate(size))
        return adaptive_avg_pool2d_exportable(x, target)

    return forward


def _upsample_forward(module: nn.Module):
    """mmseg's ``Upsample`` with the output size computed in the graph (its own forward takes
    ``int(size * scale_factor)``, which a trace freezes at the export size)."""
    import torch.nn.functional as F
    factors = module.scale_factor
    factors = tuple(factors) if isinstance(factors, tuple) else (factors, factors)

    def forward(x: torch.Tensor) -> torch.Tensor:
        size = [
            torch.floor((t if torch.is_tensor(t) else torch.tensor(t)) * f).to(torch.int64)
            for t, f in zip(x.shape[-2:], factors)
        ]
        return F.interpolate(x, size, None, module.mode, module.align_corners)

    return forward


@contextlib.contextmanager
def _export_patches(module: nn.Module):
    """While exporting, give the third-party layers whose output size a trace would freeze a
    forward that computes it in the graph (the same values in eager PyTorch):

    * ``nn.AdaptiveAvgPool2d`` with an output other than 1 x 1 (mmseg's pyramid pooling in
      UperNet): ONNX's pooling windows are fixed attributes, so the exporter can only write a
      global pool or the window of the export size; replaced by matrix products;
    * mmseg's ``Upsample`` without a fixed size (Semantic FPN's scale heads).
    """
    patched = []
    for sub in module.modules():
        if isinstance(sub, nn.AdaptiveAvgPool2d):
            size = sub.output_size
            size = (size, size) if isinstance(size, int) else tuple(size)
            if size != (1, 1):  # GlobalAveragePool is size-independent already
                sub.forward = _pool_forward(size)
                patched.append(sub)
        elif (type(sub).__name__ == 'Upsample' and type(sub).__module__.startswith('mmseg')
              and not getattr(sub, 'size', None) and getattr(sub, 'scale_factor', None)):
            sub.forward = _upsample_forward(sub)
            patched.append(sub)
    try:
        yield
    finally:
        for sub in patched:
            del sub.forward


def export_onnx(spec: ExportSpec,
                path: str,
                shape: Sequence[int] = (224, 224),
                dynamic: bool = False,
                opset: int = DEFAULT_OPSET,
                batch: int = 1) -> List[str]:
    """Export ``spec.module`` to ``path`` with the TorchScript-based exporter, and check the file.

    Args:
        spec (ExportSpec): from :func:`export_spec`; its output names are filled in.
        path (str): the ``.onnx`` file to write.
        shape (Sequence[int]): ``(H, W)`` of the example input. Defaults to (224, 224).
        dynamic (bool): batch, height and width dynamic (``dynamic_axes``). Defaults to False.
        opset (int): ONNX opset, 14 to 20. Defaults to :data:`DEFAULT_OPSET`.
        batch (int): batch of the example input. Defaults to 1.

    Returns:
        list[str]: tracer warnings raised outside torch (a value computed in Python from a
        tensor, frozen at the export size), ``file:line: message``; expected to be empty.

    Raises:
        UserInputError: an opset out of range, or a setting that cannot be exported (e.g.
            more SOFT landmarks than the exported ``'shifted_inverse'`` covers), in one line.
    """
    onnx, _ = require_onnx()
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset
    if not MIN_OPSET <= opset <= max_opset:
        raise UserInputError(f'--opset {opset} unsupported; choose {MIN_OPSET} to {max_opset} '
                             '(scaled_dot_product_attention needs 14)')
    height, width = shape
    example = torch.randn(batch, 3, height, width)
    # The exporter restores the module's mode afterwards: a wrapper left in training mode would
    # switch the wrapped model (BatchNorm!) back to training.
    spec.module.eval()
    with torch.no_grad():
        outputs = spec.module(example)
    spec.output_names = spec.output_names or _name_outputs(spec, outputs)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {INPUT_NAME: {0: 'batch', 2: 'height', 3: 'width'}}
        for name, out in zip(spec.output_names, outputs):
            axes = {0: 'batch'}
            if out.dim() == 4:
                axes.update({2: f'{name}_height', 3: f'{name}_width'})
            dynamic_axes[name] = axes
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    with warnings.catch_warnings(record=True) as caught, torch.no_grad(), \
            _export_patches(spec.module):
        warnings.simplefilter('always', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=FutureWarning)
        try:
            torch.onnx.export(
                spec.module, (example, ),
                path,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=spec.output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True)
        except ExportUnsupportedError as err:
            hint = ''
            if 'max_landmarks' in str(err):
                hint = ' (in a config: model.backbone.max_landmarks, e.g. --cfg-options ' \
                       'model.backbone.max_landmarks=256)'
            raise UserInputError(f'{err}{hint}') from None
    onnx.checker.check_model(path)
    frozen = []
    torch_dir = osp.dirname(osp.abspath(torch.__file__))
    for w in caught:
        filename = osp.abspath(w.filename)
        if not issubclass(w.category, torch.jit.TracerWarning) or filename.startswith(torch_dir):
            continue
        root = osp.dirname(package) if filename.startswith(package) else osp.dirname(torch_dir)
        frozen.append(f'{osp.relpath(filename, root)}:{w.lineno}: '
                      f'{str(w.message).splitlines()[0][:120]}')
    return sorted(set(frozen))


def simplify_onnx(path: str) -> None:
    """Fold constants and remove dead nodes in place (onnxscript's optimizer).

    Args:
        path (str): the ``.onnx`` file, rewritten.
    """
    onnx, _ = require_onnx()
    try:
        import onnxscript.optimizer
    except ImportError:
        raise UserInputError(f'--simplify needs onnxscript: {DEPLOY_HINT}') from None
    model = onnx.load(path)
    onnx.save(onnxscript.optimizer.optimize(model), path)
    onnx.checker.check_model(path)


# --------------------------------------------------------------------------------------------
# Running and comparing


def create_session(path: str,
                   threads: Optional[int] = None,
                   optimize: bool = True,
                   profile_prefix: Optional[str] = None):
    """An ONNX Runtime session on the CPU execution provider.

    Args:
        path (str): the ``.onnx`` file.
        threads (int, optional): intra-op threads; None: ``torch.get_num_threads()`` (the same
            as PyTorch in this process). Inter-op parallelism is off (sequential execution).
        optimize (bool): all graph optimizations (``ORT_ENABLE_ALL``); False disables them.
            Defaults to True.
        profile_prefix (str, optional): turn on ONNX Runtime's profiler, writing
            ``<prefix>_<date>.json`` (``session.end_profiling()`` returns the file name).

    Returns:
        onnxruntime.InferenceSession
    """
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def run_onnxruntime(session, x: torch.Tensor) -> List[np.ndarray]:
    """Run ``session`` on ``x`` (its one input); returns every output."""
    return session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})


def run_torch(spec: ExportSpec, x: torch.Tensor) -> List[torch.Tensor]:
    """The eager PyTorch outputs of ``spec.module`` (no grad), in export order."""
    with torch.no_grad():
        return list(spec.module(x))


@dataclass
class Comparison:
    """Errors of ONNX Runtime against PyTorch on one input.

    Attributes:
        label (str): which input.
        max_abs (float): largest absolute difference over all outputs.
        max_normalised (float): largest ``max |ort - torch| / max |torch|`` over the outputs.
        per_output (dict): ``{name: (max_abs, max_normalised)}``.
    """
    label: str
    max_abs: float
    max_normalised: float
    per_output: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f'{self.label}: max abs error {self.max_abs:.3e}, max-normalised '
                f'{self.max_normalised:.3e}')


def compare_outputs(reference: Sequence[torch.Tensor],
                    outputs: Sequence[np.ndarray],
                    names: Optional[Sequence[str]] = None,
                    label: str = '') -> Comparison:
    """Max absolute and max-normalised errors of ``outputs`` against ``reference``.

    A NaN (or infinity) where the other side has another value is an infinite error; NaN in both
    agrees. The scale of the normalisation is the largest finite ``|reference|``.

    Args:
        reference (Sequence[Tensor]): PyTorch outputs.
        outputs (Sequence[ndarray]): ONNX Runtime outputs, same order and shapes.
        names (Sequence[str], optional): output names for the report.
        label (str): what the input was.

    Returns:
        Comparison

    Raises:
        ValueError: different counts or shapes.
    """
    if len(reference) != len(outputs):
        raise ValueError(f'{len(outputs)} outputs against {len(reference)} reference outputs')
    names = list(names) if names else [f'out{i}' for i in range(len(reference))]
    per_output = {}
    for name, ref, out in zip(names, reference, outputs):
        ref = ref.detach().cpu().double().numpy()
        out = np.asarray(out, dtype=np.float64)
        if ref.shape != out.shape:
            raise ValueError(f'{name}: shape {out.shape} against {ref.shape}')
        with np.errstate(invalid='ignore'):
            same = (out == ref) | (np.isnan(out) & np.isnan(ref))
            error = np.nan_to_num(np.where(same, 0.0, np.abs(out - ref)), nan=np.inf)
        finite = np.abs(ref[np.isfinite(ref)])
        diff = float(error.max()) if ref.size else 0.0
        scale = float(finite.max()) if finite.size else 0.0
        per_output[name] = (diff, diff / scale if scale > 0 else diff)
    return Comparison(label, max(v[0] for v in per_output.values()),
                      max(v[1] for v in per_output.values()), per_output)


def _preprocessor_stats(cfg) -> Tuple[Sequence[float], Sequence[float], bool]:
    """Mean, std and channel order (True: RGB) the model's inputs are normalised with."""
    model_cfg = cfg.get('model') if cfg is not None else None
    prep = model_cfg.get('data_preprocessor') if isinstance(model_cfg, dict) else None
    if not prep or prep.get('mean') is None:
        return IMAGENET_MEAN, IMAGENET_STD, True
    rgb = bool(prep.get('bgr_to_rgb', False))  # images are loaded BGR
    return prep['mean'], prep.get('std') or (1.0, 1.0, 1.0), rgb


def photograph(shape: Optional[Sequence[int]] = None, cfg=None) -> torch.Tensor:
    """scikit-image's ``coffee`` photograph (400 x 600) as a normalised model input.

    Args:
        shape (Sequence[int], optional): ``(H, W)`` to resize to (bilinear); None keeps 400 x 600.
        cfg (Config, optional): normalise with its ``model.data_preprocessor`` mean / std and
            channel order; None (or no preprocessor): ImageNet's, RGB.

    Returns:
        Tensor: ``(1, 3, H, W)`` float32.
    """
    try:
        from skimage import data
    except ImportError:
        raise UserInputError(f'the photograph check needs scikit-image: {DEPLOY_HINT}') from None
    image = data.coffee()  # RGB uint8
    if shape is not None and tuple(shape) != image.shape[:2]:
        import cv2
        image = cv2.resize(image, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
    mean, std, rgb = _preprocessor_stats(cfg)
    if not rgb:
        image = image[..., ::-1]
    pixels = (image.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def verification_inputs(shape: Sequence[int],
                        dynamic: bool,
                        cfg=None,
                        seed: int = 0) -> Dict[str, torch.Tensor]:
    """The inputs :func:`verify_onnx` checks: random at the export size and the photograph;
    with ``dynamic`` the photograph at its own 400 x 600 and a random batch of 2 at a non-square
    size that is not a multiple of 32 instead of the export size.

    Args:
        shape (Sequence[int]): export ``(H, W)``.
        dynamic (bool): the file was exported with dynamic axes.
        cfg (Config, optional): for the photograph's normalisation.
        seed (int): seed of the random inputs. Defaults to 0.

    Returns:
        dict[str, Tensor]: label -> ``(B, 3, H, W)`` input.
    """
    height, width = (int(s) for s in shape)
    generator = torch.Generator().manual_seed(seed)
    inputs = {f'random 1x3x{height}x{width}': torch.randn(1, 3, height, width, generator=generator)}
    if dynamic:
        other = (height + height // 4 + 3, width - width // 4 + 7)
        inputs[f'random 2x3x{other[0]}x{other[1]}'] = torch.randn(2, 3, *other, generator=generator)
        inputs['coffee 1x3x400x600'] = photograph(None, cfg)
    else:
        inputs[f'coffee 1x3x{height}x{width}'] = photograph((height, width), cfg)
    return inputs


def verify_onnx(spec: ExportSpec,
                path: str,
                inputs: Dict[str, torch.Tensor],
                threads: Optional[int] = None) -> List[Comparison]:
    """Run the exported file in ONNX Runtime (CPU) and compare with PyTorch on each input.

    Args:
        spec (ExportSpec): what was exported (its eager module is the reference).
        path (str): the ``.onnx`` file.
        inputs (dict[str, Tensor]): label -> input, e.g. :func:`verification_inputs`.
        threads (int, optional): ONNX Runtime threads; None: as PyTorch.

    Returns:
        list[Comparison]: one per input.
    """
    session = create_session(path, threads)
    results = []
    for label, x in inputs.items():
        results.append(
            compare_outputs(
                run_torch(spec, x), run_onnxruntime(session, x), spec.output_names, label=label))
    return results


# --------------------------------------------------------------------------------------------
# Speed


@dataclass
class OrtBenchmark:
    """Backbone forward time, PyTorch eager against ONNX Runtime, at one size.

    Attributes:
        shape (tuple[int, int]): ``(H, W)``.
        threads (int): intra-op threads of both.
        torch_s (float): median seconds of the eager forward (``no_grad``).
        ort_s (float): median seconds of ``session.run`` (graph optimizations on).
        torch_runs (list[float]): every timed eager call.
        ort_runs (list[float]): every timed ONNX Runtime call.
        max_normalised (float): max-normalised error of ONNX Runtime's output on the timed input.
        top_ops (list[tuple[str, float, float]]): where ONNX Runtime is slower (or profiling was
            asked for): its profiler's op types by total kernel time, ``(op_type, seconds per
            call, share of all kernel time)``; else empty.
    """
    shape: Tuple[int, int]
    threads: int
    torch_s: float
    ort_s: float
    torch_runs: List[float]
    ort_runs: List[float]
    max_normalised: float
    top_ops: List[Tuple[str, float, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """ONNX Runtime time / PyTorch time."""
        return self.ort_s / self.torch_s


def _timed(fn, repeats: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def _profile_top_ops(path: str, x: torch.Tensor, threads: int, workdir: str,
                     top: int) -> List[Tuple[str, float, float]]:
    """Op types of one profiled ONNX Runtime call, by total kernel time."""
    session = create_session(path, threads, profile_prefix=osp.join(workdir, 'ort_profile'))
    run_onnxruntime(session, x)  # warm-up: the profile of the first call includes allocation
    run_onnxruntime(session, x)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    totals: Dict[str, float] = {}
    calls = 0
    for event in events:
        if event.get('cat') == 'Session' and event.get('name') == 'model_run':
            calls += 1
        if event.get('cat') != 'Node' or not event.get('name', '').endswith('_kernel_time'):
            continue
        op = event.get('args', {}).get('op_name', '?')
        totals[op] = totals.get(op, 0.0) + event.get('dur', 0) * 1e-6
    calls = max(calls, 1)
    overall = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [(op, seconds / calls, seconds / overall) for op, seconds in ranked]


def benchmark_backbone(backbone: nn.Module,
                       shape: Sequence[int],
                       threads: Optional[int] = None,
                       repeats: int = 3,
                       warmup: int = 1,
                       top_ops: int = 10,
                       profile: Optional[bool] = None,
                       opset: int = DEFAULT_OPSET,
                       workdir: Optional[str] = None) -> OrtBenchmark:
    """Time a backbone's forward in PyTorch eager and in ONNX Runtime at one input size.

    The backbone is exported at exactly that size (static shapes, batch 1), ONNX Runtime runs
    with all graph optimizations on and the same number of intra-op threads as PyTorch
    (``torch.set_num_threads(threads)`` for the duration of the call). Both get ``warmup``
    untimed calls, then ``repeats`` timed ones on the same input; medians are reported. Where
    ONNX Runtime is slower, one call is profiled (``SessionOptions.enable_profiling``) and the op
    types that took the most kernel time are returned.

    Args:
        backbone (nn.Module): in eval mode (call ``.eval()`` first).
        shape (Sequence[int]): ``(H, W)``.
        threads (int, optional): threads for both; None: ``torch.get_num_threads()``.
        repeats (int): timed calls each. Defaults to 3.
        warmup (int): untimed calls each first. Defaults to 1.
        top_ops (int): how many op types to report. Defaults to 10.
        profile (bool, optional): profile ONNX Runtime: None (default) only where it is slower
            than PyTorch, True always, False never.
        opset (int): ONNX opset. Defaults to :data:`DEFAULT_OPSET`.
        workdir (str, optional): where the ``.onnx`` file and the profile go; None: a temporary
            folder, removed afterwards.

    Returns:
        OrtBenchmark
    """
    height, width = (int(s) for s in shape)
    previous = torch.get_num_threads()
    threads = threads or previous
    spec = ExportSpec(_BackboneOutputs(backbone).eval(), None, 'backbone')
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory())
        os.makedirs(workdir, exist_ok=True)
        torch.set_num_threads(threads)
        stack.callback(torch.set_num_threads, previous)
        path = osp.join(workdir, f'backbone_{height}x{width}.onnx')
        export_onnx(spec, path, (height, width), dynamic=False, opset=opset)
        with torch.no_grad():
            torch_runs = _timed(lambda: spec.module(x), repeats, warmup)
            reference = list(spec.module(x))
        session = create_session(path, threads)
        outputs = []
        ort_runs = _timed(lambda: outputs.append(run_onnxruntime(session, x)), repeats, warmup)
        error = compare_outputs(reference, outputs[-1]).max_normalised
        session = outputs = None  # free ONNX Runtime's arena before profiling
        result = OrtBenchmark((height, width), threads, statistics.median(torch_runs),
                              statistics.median(ort_runs), torch_runs, ort_runs, error)
        if top_ops > 0 and (profile or (profile is None and result.ort_s > result.torch_s)):
            result.top_ops = _profile_top_ops(path, x, threads, workdir, top_ops)
    return result
