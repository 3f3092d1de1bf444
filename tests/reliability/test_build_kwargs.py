"""Bad constructor arguments of both backbones fail at build time with one line naming the knob."""
import pytest

import mmlinattn  # noqa: F401
from mmlinattn.models import RAVLT, SOFT

RAVLT_ARCH = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
SOFT_ARCH = dict(embed_dims=[16, 24, 32, 48], depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 3])
BACKBONES = {'RAVLT': (RAVLT, RAVLT_ARCH), 'SOFT': (SOFT, SOFT_ARCH)}

SHARED = [
    (dict(drop_path_rate=1.5), r'drop_path_rate must be a number in \[0, 1\), got 1.5'),
    (dict(drop_path_rate=-0.1), r'drop_path_rate must be a number in \[0, 1\), got -0.1'),
    (dict(drop_path_rate=1.0), r'drop_path_rate must be a number in \[0, 1\)'),
    (dict(drop_path_rate='0.1'), r'drop_path_rate must be a number in \[0, 1\)'),
    (dict(out_indices=(1, 1)), r'out_indices \(1, 1\) names a stage twice'),
    (dict(out_indices=(3, -1)), r'names a stage twice'),
    (dict(out_indices=()), 'out_indices is empty'),
    (dict(out_indices=(0, 4)), r'out_indices must be in \[0, 3\]'),
    (dict(out_indices=(0.5, )), 'out_indices must hold ints'),
    (dict(frozen_stages=5), r'frozen_stages must be an int in \[-1, 4\]'),
    (dict(frozen_stages=-2), r'frozen_stages must be an int in \[-1, 4\]'),
    (dict(in_channels=0), 'in_channels must be a positive int'),
]


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
@pytest.mark.parametrize('kwargs,message', SHARED, ids=[str(k) for k, _ in SHARED])
def test_shared_knobs(backbone, kwargs, message):
    cls, arch = BACKBONES[backbone]
    with pytest.raises(ValueError, match=message):
        cls(arch=arch, **kwargs)


@pytest.mark.parametrize('backbone', sorted(BACKBONES))
@pytest.mark.parametrize('arch_update,message', [
    (dict(depths=[1, 0, 1, 1]), r"arch\['depths'\]\[1\] \(stage 1\) must be a positive int"),
    (dict(embed_dims=[16, 32, 48, -64]), r"arch\['embed_dims'\]\[3\] \(stage 3\)"),
    (dict(num_heads=[2, 2, 4]), r"arch\['num_heads'\] must list 4 values"),
    (dict(num_heads=[2, 2, 4, 1.5]),
     r"arch\['num_heads'\]\[3\] \(stage 3\) must be a positive int"),
])
def test_arch_numbers(backbone, arch_update, message):
    cls, arch = BACKBONES[backbone]
    with pytest.raises(ValueError, match=message):
        cls(arch=dict(arch, **arch_update))


@pytest.mark.parametrize('kwargs,message', [
    (dict(arch=dict(RAVLT_ARCH, mlp_ratios=[3.5, 0, 3.5, 3.5])),
     r"arch\['mlp_ratios'\]\[1\] must be a positive number"),
    (dict(arch=dict(RAVLT_ARCH, drop_path_rate=2)), r"arch\['drop_path_rate'\] must be"),
    (dict(arch=RAVLT_ARCH, attn_types=('linear', ) * 3), 'attn_types must give one of'),
    (dict(arch=dict(RAVLT_ARCH, num_heads=[2, 2, 4, 32])),
     'head_dim = 64 / 32 = 2 must be divisible by 4'),
])
def test_ravlt_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RAVLT(**kwargs)


@pytest.mark.parametrize('kwargs,message', [
    (dict(newton_iters=0), 'newton_iters must be a positive int'),
    (dict(max_landmarks=0), 'max_landmarks must be a positive int or None'),
    (dict(max_landmarks=64.0), 'max_landmarks must be a positive int or None'),
    (dict(landmark_ratios=(8, 0, 2)), r'landmark_ratios\[1\] must be a positive int'),
    (dict(local_kernel_sizes=(9, 4, 3)), 'local_kernel_sizes must be odd'),
    (dict(pretrain_img_size=16), 'pretrain_img_size must be an int or \\(height, width\\) of at '
     'least 32'),
    (dict(normalization='sym'), "normalization 'sym' unknown"),
    (dict(norm=True, normalization='none'), 'norm=True contradicts normalization'),
    (dict(pinv_mode='exact'), "pinv_mode 'exact' unknown"),
])
def test_soft_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SOFT(arch=SOFT_ARCH, **kwargs)
