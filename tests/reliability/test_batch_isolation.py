"""A NaN or inf in one image never reaches the other images of its batch, in every attention mode
except SOFT++'s released ``'newton_batch_scaled'`` inverse, whose batch coupling is kept for
fidelity,
warned about when it bites, and used by no shipped config (see tests/configs)."""
import itertools

import pytest
import torch

import mmlinattn  # noqa: F401
from mmlinattn.models import RAVLT, SOFT
from mmlinattn.ops.rala import rank_augmented_linear_attention, rope_softmax_attention
from mmlinattn.ops.rope import rope_sin_cos
from mmlinattn.ops.soft import (BATCH_COUPLED_PINV_MODES, NORMALIZATIONS, PINV_MODES,
                                softmax_free_attention)

BAD_VALUES = {'nan': float('nan'), 'inf': float('inf')}


def poison(x, value, index=1):
    x = x.clone()
    x[index].view(-1)[::7] = value
    return x


def assert_isolated(run, inputs, value):
    """Image 1 poisoned: images 0 and 2 stay finite and equal to the clean batch's."""
    clean = run(*inputs)
    dirty = run(*(poison(t, value) for t in inputs))
    for i in (0, 2):
        assert torch.isfinite(dirty[i]).all()
        torch.testing.assert_close(dirty[i], clean[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('value', sorted(BAD_VALUES))
@pytest.mark.parametrize(
    'op', [rank_augmented_linear_attention, rope_softmax_attention], ids=['rala', 'rope_softmax'])
def test_ravlt_ops(op, value):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 64, 16) for _ in range(3))
    sin, cos = rope_sin_cos(8, 8, 16)
    assert_isolated(lambda q, k, v: op(q, k, v, sin, cos), (q, k, v), BAD_VALUES[value])


SOFT_MODES = [(n, p) for n, p in itertools.product(NORMALIZATIONS, PINV_MODES)
              if p not in BATCH_COUPLED_PINV_MODES]


@pytest.mark.parametrize('value', sorted(BAD_VALUES))
@pytest.mark.parametrize('normalization,pinv_mode', SOFT_MODES)
def test_soft_op(normalization, pinv_mode, value):
    torch.manual_seed(0)
    q = torch.randn(3, 2, 64, 16) / 2
    v = torch.randn(3, 2, 64, 16)

    def run(q, v):
        return softmax_free_attention(q, q[:, :, ::8], v, normalization, pinv_mode)

    assert_isolated(run, (q, v), BAD_VALUES[value])


@pytest.mark.parametrize('normalization', ['core', 'full'])
def test_official_norm_couples_the_batch_and_says_so(normalization):
    torch.manual_seed(0)
    q = torch.randn(3, 2, 64, 16) / 2
    dirty = poison(q, float('nan'))
    with pytest.warns(RuntimeWarning, match="every image of the batch is now NaN.*'newton'"):
        out = softmax_free_attention(dirty, dirty[:, :, ::8], torch.randn(3, 2, 64, 16),
                                     normalization, 'newton_batch_scaled')
    assert not torch.isfinite(out[0]).any() and not torch.isfinite(out[2]).any()


SMALL_RAVLT = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
SMALL_SOFT = dict(embed_dims=[16, 24, 32, 48], depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 3])


@pytest.mark.parametrize('name,build', [
    ('ravlt', lambda: RAVLT(arch=SMALL_RAVLT)),
    ('ravlt_linear', lambda: RAVLT(arch=SMALL_RAVLT, attn_types=('linear', ) * 4)),
    ('soft_official', lambda: SOFT(arch=SMALL_SOFT, normalization='none')),
    ('softpp_per_matrix',
     lambda: SOFT(arch=SMALL_SOFT, normalization='core', pinv_mode='newton', max_landmarks=16)),
])
def test_backbones_in_eval_mode(name, build):
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(3, 3, 64, 64)

    def run(x):
        with torch.no_grad():
            return torch.cat([o.flatten(1) for o in model(x)], dim=1)

    assert_isolated(run, (x, ), float('nan'))


@pytest.mark.parametrize('name,build', [
    ('ravlt', lambda: RAVLT(arch=SMALL_RAVLT)),
    ('soft', lambda: SOFT(arch=SMALL_SOFT)),
    ('softpp_official_norm', lambda: SOFT(arch=SMALL_SOFT, normalization='core')),
    ('softpp_full', lambda: SOFT(arch=SMALL_SOFT, normalization='full', pinv_mode='newton')),
])
def test_empty_batch_gives_empty_maps(name, build):
    """A batch of 0 images (e.g. an empty shard) gives empty maps of the right shapes, forward and
    backward, as it does for every torchvision / mmdet backbone."""
    model = build()
    x = torch.zeros(0, 3, 64, 96, requires_grad=True)
    outs = model.train()(x)
    assert [tuple(o.shape) for o in outs] == [(0, c, -(-64 // 2**(i + 2)), -(-96 // 2**(i + 2)))
                                              for i, c in enumerate(model.embed_dims)]
    sum(o.sum() for o in outs).backward()
    assert x.grad.shape == x.shape
