"""The FLOP handles count what the same computation written with explicit matmuls counts."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlinattn.analysis.flops import (NEWTON_SCHULZ_PINV_OP, SDPA_OP, count_backbone_flops,
                                      count_flops)
from mmlinattn.models import RAVLT
from mmlinattn.ops.rala import rope_softmax_attention_reference
from mmlinattn.ops.soft import newton_schulz_pinv, softmax_free_attention


class FusedAttention(nn.Module):

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class ExplicitAttention(nn.Module):

    def forward(self, q, k, v):
        attn = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1]**-0.5, dim=-1)
        return attn @ v


@pytest.mark.parametrize(
    'batch, heads, queries, keys, dim, value_dim',
    [
        (2, 3, 10, 10, 8, 8),  # self-attention: 2 * B * h * N^2 * d
        (1, 2, 7, 13, 8, 16),  # cross-attention with a wider value
    ],
    ids=['self', 'cross'])
def test_sdpa_handle_equals_explicit_matmuls(batch, heads, queries, keys, dim, value_dim):
    q = torch.randn(batch, heads, queries, dim)
    k = torch.randn(batch, heads, keys, dim)
    v = torch.randn(batch, heads, keys, value_dim)
    fused = count_flops(FusedAttention(), (q, k, v))
    explicit = count_flops(ExplicitAttention(), (q, k, v), extra_handles=False)
    assert fused.total == explicit.total == batch * heads * queries * keys * (dim + value_dim)
    assert fused.by_operator['scaled_dot_product_attention'] == fused.total
    assert SDPA_OP not in fused.unsupported

    plain = count_flops(FusedAttention(), (q, k, v), extra_handles=False)
    assert plain.total == 0 and plain.unsupported[SDPA_OP] == 1  # what mmengine alone reports


def test_ravlt_t_224_equals_explicit_matmul_model():
    model = RAVLT(arch='t')
    fast = count_backbone_flops(model)
    for module in model.modules():
        if getattr(module, 'attn_type', None) == 'softmax':
            module.attn_op = rope_softmax_attention_reference  # q @ k^T and attn @ v
    explicit = count_flops(model, torch.rand(1, 3, 224, 224), extra_handles=False)

    assert fast.total == explicit.total
    assert fast.attention == explicit.by_operator['matmul']
    assert fast.by_operator['scaled_dot_product_attention'] == \
        explicit.by_operator['matmul'] - fast.by_operator['matmul']
    assert not any('scaled_dot_product' in op for op in explicit.unsupported)
    # Independent check against fvcore on the released classifier (spec rala.md §2.4, rounded
    # to 1e6): attention matmuls 0.201G; convs 2.412G including the classifier's 1x1 convs
    # 512->1024 on 7x7 and 1024->1000 on 1x1, which a backbone does not have.
    assert round(fast.attention / 1e9, 3) == 0.201
    classifier_convs = 512 * 1024 * 49 + 1024 * 1000
    assert round((fast.by_operator['conv'] + classifier_convs) / 1e9, 3) == 2.412


class Pinv(nn.Module):

    def __init__(self, num_iters, mode):
        super().__init__()
        self.num_iters, self.mode = num_iters, mode

    def forward(self, mat):
        return newton_schulz_pinv(mat, self.num_iters, self.mode)


@pytest.mark.parametrize('mode, search', [('newton_shifted', 0), ('newton_batch_scaled', 1),
                                          ('newton', 1)])
def test_newton_handle_counts_cubes(mode, search):
    m, iters = 6, 5
    points = torch.rand(2, 3, m, 4)
    mat = torch.exp(-torch.cdist(points, points)**2)  # (2, 3, m, m) Gaussian kernel
    count = count_flops(Pinv(iters, mode), mat)
    assert count.total == 2 * 3 * (2 * iters * m**3 + m**2 + search * m**3)
    assert NEWTON_SCHULZ_PINV_OP not in count.unsupported
    plain = count_flops(Pinv(iters, mode), mat, extra_handles=False)
    assert plain.total == 0 and plain.unsupported[NEWTON_SCHULZ_PINV_OP] == 1


class SoftAttention(nn.Module):

    def forward(self, q, landmarks, v):
        return softmax_free_attention(q, landmarks, v, num_iters=7)


def test_softmax_free_attention_count():
    batch, heads, tokens, m, dim = 1, 2, 20, 5, 8
    q, v = torch.randn(batch, heads, tokens, dim), torch.randn(batch, heads, tokens, dim)
    landmarks = q[:, :, ::4]
    count = count_flops(SoftAttention(), (q, landmarks, v))
    kernels = tokens * m * dim + m * m * dim  # q l^T and l l^T
    inverse = 2 * 7 * m**3 + m**2
    products = m * tokens * dim + m * m * dim + tokens * m * dim  # K1 (A+ (K1^T V))
    assert count.total == batch * heads * (kernels + inverse + products)
    assert count.attention == count.total


def tiny_cascade_mask_rcnn():
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromstring("_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']", '.py')
    init_default_scope('mmdet')
    width, classes = 8, 3
    model = cfg.model
    model.backbone = dict(
        type='RAVLT',
        arch=dict(embed_dims=[16, 32, 48, 64], depths=[1] * 4, num_heads=[1, 2, 3, 4]))
    model.neck.update(in_channels=[16, 32, 48, 64], out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    for head in model.roi_head.bbox_head:
        head.update(in_channels=width, fc_out_channels=16, num_classes=classes)
    model.roi_head.mask_roi_extractor.out_channels = width
    model.roi_head.mask_head.update(in_channels=width, conv_out_channels=width, num_classes=classes)
    torch.manual_seed(0)
    detector = MODELS.build(model)
    detector.init_weights()
    return detector.eval(), width, classes


def test_cascade_mask_heads_counted_on_first_rois():
    """mmdet 3.3 runs a cascade's mask heads on every proposal; the count follows mmdet's
    (and the papers') convention of the first N."""
    from mmlinattn.analysis.flops import count_model_flops
    model, width, classes = tiny_cascade_mask_rcnn()
    counts = {
        cap: count_model_flops(model, 'mmdet', (128, 128), max_mask_rois=cap).total
        for cap in (10, 20, None)
    }
    # FCNMaskHead per RoI: 4 convs 3x3 on 14x14, a 2x2 stride-2 deconv, 1x1 logits on 28x28
    per_roi = 4 * 196 * 9 * width**2 + 196 * 4 * width**2 + 784 * width * classes
    assert counts[20] - counts[10] == 3 * 10 * per_roi  # 3 stages, 10 more RoIs
    assert counts[None] > counts[20]  # more than 20 proposals
    assert '_mask_forward' not in vars(model.roi_head)  # the patch is undone
