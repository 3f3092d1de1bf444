"""Fixtures shared by the tool and inference-API tests: a photograph, fresh demo checkpoints."""
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIGS = {
    'det': osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_demo.py'),
    'seg': osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py'),
}


@pytest.fixture(scope='session')
def photograph(tmp_path_factory):
    """scikit-image's ``coffee`` photograph (400 x 600, RGB) saved as a PNG; returns its path."""
    import cv2
    from skimage import data
    path = tmp_path_factory.mktemp('photo') / 'coffee.png'
    cv2.imwrite(str(path), data.coffee()[..., ::-1])
    return str(path)


@pytest.fixture(scope='session')
def demo_checkpoints(tmp_path_factory):
    """Freshly initialised (seeded) demo detector and segmentor saved as checkpoints with their
    classes and palette: ``{'det': (config, checkpoint), 'seg': (config, checkpoint)}``."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    out = tmp_path_factory.mktemp('checkpoints')
    result = {}
    for task, config in DEMO_CONFIGS.items():
        cfg = Config.fromfile(config)
        init_default_scope(cfg.default_scope)
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        meta = dict(
            dataset_meta=dict(
                classes=list(cfg.metainfo['classes']),
                palette=[list(c) for c in cfg.metainfo['palette']]))
        path = out / f'{task}.pth'
        torch.save(dict(state_dict=model.state_dict(), meta=meta), path)
        result[task] = (config, str(path))
    return result
