"""Mask R-CNN and UperNet training steps with the demo RAVLT on CUDA, mixed precision.

The models are built with mmengine from ``configs/maskrcnn_ravlt_t_demo.py`` and
``configs/upernet_ravlt_t_demo.py``, wrapped in an ``AmpOptimWrapper`` made from the config's
``optim_wrapper`` (float16 with a dynamic loss scale starting at :data:`INIT_SCALE`; UperNet also in
bfloat16), and run :data:`STEPS` ``model.train_step`` calls on one random batch (mmdet's
``demo_mm_inputs`` with boxes and masks; random images and label maps for mmseg). Every logged loss
must be finite at every step, every parameter finite at the end, and more than half of the
parameters (some of the backbone's among them) must have changed: the optimizer stepped.

Mask R-CNN also needs mmcv's compiled RoIAlign / NMS for CUDA: with an mmcv built without CUDA
ops (the CPU set-up builds one) that test is skipped and says so.
"""
import pytest
import torch
from cuda_test_utils import DEMO_CONFIGS, HALF_DTYPES, all_finite

STEPS = 3
BATCH = 2
IMAGE = (256, 256)  # the demo configs' training size
INIT_SCALE = 512.0  # mmdet's fp16 configs use a static 512


def build_model(task, device, seed=0):
    """The demo config's detector / segmentor, initialised from ``seed``, on ``device``."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmlinattn  # noqa: F401
    cfg = Config.fromfile(DEMO_CONFIGS[task])
    init_default_scope(cfg.default_scope)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model.to(device)


def build_amp_wrapper(cfg, model, dtype_name, wrapper_type='AmpOptimWrapper'):
    """The config's optimizer wrapper (optimizer, paramwise and clipping settings) as mixed
    precision in ``dtype_name`` (``dtype_name`` None: the config's wrapper as it is)."""
    from mmengine.optim import build_optim_wrapper
    if dtype_name is None:
        return build_optim_wrapper(model, dict(cfg.optim_wrapper))
    wrapper_cfg = dict(cfg.optim_wrapper, type=wrapper_type, dtype=dtype_name)
    if wrapper_type == 'AmpOptimWrapper':
        wrapper_cfg['loss_scale'] = dict(init_scale=INIT_SCALE)
    return build_optim_wrapper(model, wrapper_cfg)


def det_batch(num_classes):
    """Two random images with boxes and masks, as mmdet's data loader packs them."""
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=BATCH, image_shapes=(3, *IMAGE), num_classes=num_classes, with_mask=True)


def seg_batch(num_classes, seed=0):
    """Two random images with random label maps, as mmseg's data loader packs them."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(BATCH):
        inputs.append(torch.randint(0, 256, (3, *IMAGE), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=IMAGE, ori_shape=IMAGE))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, *IMAGE), generator=g, dtype=torch.int64))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def train_steps(model, wrapper, batch, steps=STEPS):
    """``steps`` calls of ``model.train_step``; returns the logged losses of each step and the
    parameters before the first step (CPU copies)."""
    model.train()
    before = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    logs = [model.train_step(batch, wrapper) for _ in range(steps)]
    return logs, before


def check_training(model, logs, before):
    """Finite losses at every step, finite parameters, and parameters that moved."""
    for step, log in enumerate(logs):
        bad = {k: v for k, v in log.items() if not all_finite([torch.as_tensor(v)])}
        assert not bad, f'step {step}: non-finite losses {bad}'
    params = dict(model.named_parameters())
    assert all_finite(params.values()), 'a parameter became NaN or inf'
    changed = [n for n, p in params.items() if not torch.equal(p.detach().cpu(), before[n])]
    assert len(changed) > len(params) // 2, f'only {len(changed)} of {len(params)} parameters moved'
    backbone = [n for n in changed if n.startswith('backbone.')]
    assert backbone, 'no backbone parameter moved'


def mmcv_has_cuda_ops() -> bool:
    """Whether mmcv was compiled with its CUDA ops (RoIAlign, NMS for CUDA tensors)."""
    try:
        from mmcv.ops import get_compiling_cuda_version
    except ImportError:
        return False
    return get_compiling_cuda_version() not in ('', 'not available')


def test_mask_rcnn_amp_training_step(cuda_device):
    """float16 only: mmdet's AMP mode. mmcv 2.1's CUDA RoIAlign / NMS kernels dispatch on float
    and half (not bfloat16), and the CPU NMS refuses half-precision scores."""
    if not mmcv_has_cuda_ops():
        pytest.skip('mmcv was built without CUDA ops (Mask R-CNN needs RoIAlign / NMS on CUDA): '
                    'rebuild it on the GPU machine with MMCV_WITH_OPS=1 FORCE_CUDA=1')
    cfg, model = build_model('det', cuda_device)
    wrapper = build_amp_wrapper(cfg, model, 'float16')
    batch = det_batch(len(cfg.metainfo['classes']))
    logs, before = train_steps(model, wrapper, batch)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(logs[0])
    check_training(model, logs, before)


@pytest.mark.parametrize('dtype_name', list(HALF_DTYPES))
def test_upernet_amp_training_step(dtype_name, cuda_device):
    if HALF_DTYPES[dtype_name] == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bfloat16 support')
    cfg, model = build_model('seg', cuda_device)
    wrapper = build_amp_wrapper(cfg, model, dtype_name)
    batch = seg_batch(len(cfg.metainfo['classes']))
    logs, before = train_steps(model, wrapper, batch)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(logs[0])
    check_training(model, logs, before)


def test_cpu_workarounds_stay_out_of_a_cuda_run():
    """With real CUDA, ``prepare_cpu_run`` changes nothing and SyncBN is kept."""
    from mmengine.config import Config

    from mmlinattn.utils.cpu import prepare_cpu_run, revert_sync_batchnorm_if_no_cuda
    cfg = Config.fromfile(DEMO_CONFIGS['seg'])
    cfg.launcher = 'pytorch'
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    before = cfg.to_dict()
    assert prepare_cpu_run(cfg) == [] and cfg.to_dict() == before
    sync_bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.SyncBatchNorm(4))
    assert revert_sync_batchnorm_if_no_cuda(sync_bn) is sync_bn
    assert isinstance(sync_bn[1], torch.nn.SyncBatchNorm)
