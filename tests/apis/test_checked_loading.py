"""No silent partial load: every mmengine front door that loads a file into a model with an
mmlinattn backbone loads what the user meant or stops in one line (mmlinattn/loading.py).

Before: a converted (backbone-only) file given to ``load_from`` / ``tools/test.py`` /
``init_model`` / ``init_detector`` matched no key, mmengine logged "do not match exactly" and the
model stayed random (exit 0, random-model metrics).
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmlinattn  # noqa: F401
from mmlinattn.converters import save_checkpoint
from mmlinattn.loading import NoBackboneWeightsError, is_checked_loading_installed, plan_load
from mmlinattn.utils.checkpoint import CheckpointError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _backbone_only(path, whole_checkpoint):
    """What tools/convert_checkpoint.py writes by default: backbone keys without a prefix."""
    state = torch.load(whole_checkpoint, map_location='cpu', weights_only=True)['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    save_checkpoint(str(path), backbone, meta={'converted_from': 'test'})
    return backbone


def _perturbed(backbone):
    """The same backbone weights, shifted, so that 'loaded' is distinguishable from 'initial'."""
    return {k: (v + 0.5 if v.is_floating_point() else v) for k, v in backbone.items()}


def _perturbed_backbone_file(tmp_path, whole):
    """A backbone-only file of :func:`_perturbed` weights; returns (its weights, its path)."""
    backbone = _perturbed(_backbone_only(tmp_path / 'unused.pth', whole))
    path = tmp_path / 'backbone.pth'
    save_checkpoint(str(path), backbone, meta={})
    return backbone, path


def test_installed_on_import():
    assert is_checked_loading_installed()


@pytest.fixture
def logged(monkeypatch):
    """The messages mmlinattn.loading logs (mmengine's logger writes to a stream fixed early)."""
    import mmengine.logging
    lines = []
    original = mmengine.logging.print_log

    def record(msg, *args, **kwargs):
        lines.append(msg)
        return original(msg, *args, **kwargs)

    monkeypatch.setattr(mmengine.logging, 'print_log', record)
    return lines


def test_init_model_loads_a_backbone_only_file_into_the_backbone(demo_checkpoints, tmp_path,
                                                                 logged):
    from mmseg.apis import init_model
    config, whole = demo_checkpoints['seg']
    backbone, path = _perturbed_backbone_file(tmp_path, whole)
    model = init_model(config, str(path), device='cpu')
    loaded = model.backbone.state_dict()
    for key, value in backbone.items():
        if key != '_extra_state':
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    text = '\n'.join(logged)
    assert 'backbone-only RAVLT file: loaded into model.backbone' in text
    assert 'decode_head' in text and 'keep their initialisation' in text


def test_init_detector_loads_a_backbone_only_file_into_the_backbone(demo_checkpoints, tmp_path):
    from mmdet.apis import init_detector
    config, whole = demo_checkpoints['det']
    backbone, path = _perturbed_backbone_file(tmp_path, whole)
    model = init_detector(config, str(path), device='cpu')
    key = 'stem.0.conv.weight' if 'stem.0.conv.weight' in backbone else sorted(backbone)[0]
    torch.testing.assert_close(model.backbone.state_dict()[key], backbone[key], rtol=0, atol=0)


def test_runner_path_is_checked_too(demo_checkpoints, tmp_path):
    """``Runner.load_checkpoint`` (load_from, --resume, tools/test.py) calls the name mmengine's
    runner module imported; it reaches the checked loading."""
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import runner as runner_module
    config, whole = demo_checkpoints['seg']
    backbone = _perturbed(_backbone_only(tmp_path / 'unused.pth', whole))
    cfg = Config.fromfile(config)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    runner_module._load_checkpoint_to_model(model, {'state_dict': backbone})
    key = sorted(k for k in backbone if k != '_extra_state')[0]
    torch.testing.assert_close(model.backbone.state_dict()[key], backbone[key], rtol=0, atol=0)


def test_a_file_without_backbone_weights_is_an_error(demo_checkpoints, tmp_path):
    """A detector checkpoint whose backbone keys all miss (another backbone) stops the load."""
    from mmengine.runner import load_checkpoint
    from mmseg.apis import init_model
    config, whole = demo_checkpoints['seg']
    state = torch.load(whole, map_location='cpu', weights_only=True)['state_dict']
    foreign = {
        ('encoder.' + k[len('backbone.'):] if k.startswith('backbone.') else k): v
        for k, v in state.items()
    }
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': foreign}, path)
    model = init_model(config, device='cpu')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NoBackboneWeightsError, match=r"no weights for model\.backbone \(RAVLT\)"):
        load_checkpoint(model, str(path), map_location='cpu')
    for key, value in model.state_dict().items():  # nothing was loaded halfway
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_strict_load_of_a_backbone_only_file_is_refused(demo_checkpoints, tmp_path):
    from mmengine.runner import load_checkpoint
    from mmseg.apis import init_model
    config, whole = demo_checkpoints['seg']
    path = tmp_path / 'backbone.pth'
    _backbone_only(path, whole)
    model = init_model(config, device='cpu')
    with pytest.raises(CheckpointError, match='backbone-only file'):
        load_checkpoint(model, str(path), map_location='cpu', strict=True)


def test_plan_names_what_stays_random(demo_checkpoints):
    from mmengine.registry import MODELS, init_default_scope
    config, whole = demo_checkpoints['det']
    cfg = Config.fromfile(config)
    init_default_scope('mmdet')
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    state = torch.load(whole, map_location='cpu', weights_only=True)['state_dict']
    assert plan_load(model, state).complete
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    plan = plan_load(model, backbone)
    assert plan.kind == 'backbone' and not plan.complete
    assert plan.uncovered == ['neck', 'rpn_head', 'roi_head']
    assert plan.describe_gaps() == 'neck, rpn_head and roi_head'
    without_roi = {k: v for k, v in state.items() if not k.startswith('roi_head.')}
    plan = plan_load(model, without_roi)
    assert plan.kind == 'whole' and plan.uncovered == ['roi_head'] and not plan.complete


def test_models_without_our_backbone_load_as_before(tmp_path):
    """A plain module, and a backbone loaded on its own, go to mmengine unchanged."""
    from mmengine.runner import load_checkpoint
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'0.weight': torch.ones(2, 2), 'bias': torch.zeros(1)}}, path)
    load_checkpoint(net, str(path))  # an unexpected key is mmengine's log line, as before
    torch.testing.assert_close(net[0].weight, torch.ones(2, 2))


def test_inferencer_loads_a_backbone_only_file_into_the_backbone(demo_checkpoints, tmp_path,
                                                                 logged):
    from mmseg.apis import MMSegInferencer
    config, whole = demo_checkpoints['seg']
    backbone, path = _perturbed_backbone_file(tmp_path, whole)
    inferencer = MMSegInferencer(model=config, weights=str(path), device='cpu')
    # The inferencer's visualizer is a named global instance; a later runner would reuse it.
    type(inferencer.visualizer)._instance_dict.pop(inferencer.visualizer.instance_name, None)
    key = sorted(k for k in backbone if k != '_extra_state')[0]
    torch.testing.assert_close(
        inferencer.model.backbone.state_dict()[key], backbone[key], rtol=0, atol=0)
    assert any('backbone-only RAVLT file' in line for line in logged)
