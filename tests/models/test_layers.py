"""LayerNorm2d: channel-wise LayerNorm on NCHW maps, registered as 'LN2d'."""
import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.registry import MODELS

from mmlinattn.models.layers import LayerNorm2d


def test_matches_layernorm_over_channels():
    norm = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    ref = nn.LayerNorm(6, eps=1e-6)
    ref.load_state_dict(norm.state_dict())
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(norm(x), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    assert list(norm.state_dict()) == ['weight', 'bias'] and norm.eps == 1e-6


def test_registered_and_buildable():
    assert MODELS.get('LN2d') is LayerNorm2d
    name, layer = build_norm_layer(dict(type='LN2d', eps=1e-5), 8)
    assert name == 'ln' and isinstance(layer, LayerNorm2d) and layer.eps == 1e-5
