"""tools/train.py and tools/test.py: a bad checkpoint or override is one line and exit code 2,
before anything runs (no config dump, no traceback)."""
import importlib.util
import os
import os.path as osp
import shutil

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_DEMO = osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py')


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'mmlinattn_tool_{name}',
                                                  osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line(capfd, *words):
    out, err = capfd.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert 'Traceback' not in err and not out.strip(), (out, err)
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope='module')
def seg_checkpoint(demo_checkpoints):
    return demo_checkpoints['seg'][1]


def test_test_tool_truncated_and_unsafe_checkpoints(tmp_path, seg_checkpoint, capfd):
    tool = load_tool('test')
    data = open(seg_checkpoint, 'rb').read()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    assert tool.main([SEG_DEMO, str(truncated)]) == 2
    one_line(capfd, str(truncated), 'truncated')
    unsafe = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': {}, 'x': os.system}, unsafe)
    assert tool.main([SEG_DEMO, str(unsafe)]) == 2
    one_line(capfd, 'unsafe checkpoint: it references posix.system')


def test_test_tool_checkpoint_that_contradicts_the_config(seg_checkpoint, capfd):
    tool = load_tool('test')
    assert tool.main([
        SEG_DEMO, seg_checkpoint, '--cfg-options',
        "model.backbone.attn_types=['linear','linear','linear','linear']"
    ]) == 2
    one_line(capfd, 'attn_types=', "set attn_types=('linear', 'linear', 'softmax', 'softmax')")


def test_resume_from_a_truncated_last_checkpoint_names_the_newest_intact_one(
        tmp_path, seg_checkpoint, capfd):
    tool = load_tool('train')
    work = tmp_path / 'work'
    work.mkdir()
    good = work / 'iter_2.pth'
    shutil.copy(seg_checkpoint, good)
    bad = work / 'iter_4.pth'
    bad.write_bytes(open(seg_checkpoint, 'rb').read()[:1000])
    os.utime(good, (1, 1))  # older than the broken one
    (work / 'last_checkpoint').write_text(str(bad))
    assert tool.main([SEG_DEMO, '--work-dir', str(work), '--resume']) == 2
    line = one_line(capfd, str(bad), 'last_checkpoint', 'truncated', f'--resume {good}')
    assert 'newest intact checkpoint there is' in line
    assert tool.main([SEG_DEMO, '--work-dir', str(work), '--resume', str(bad)]) == 2
    one_line(capfd, f'--resume {good}')
    bad.unlink()
    good.write_bytes(b'')
    (work / 'last_checkpoint').write_text(str(good))
    assert tool.main([SEG_DEMO, '--work-dir', str(work), '--resume']) == 2
    one_line(capfd, 'empty file', 'no intact checkpoint is left there')


def test_length_override_that_the_loop_does_not_count(capfd):
    tool = load_tool('train')
    coco = osp.join(ROOT, 'configs', 'maskrcnn_ravlt_s_coco.py')
    assert tool.main([coco, '--cfg-options', 'train_cfg.max_iters=100']) == 2
    one_line(capfd, 'EpochBasedTrainLoop', 'train_cfg.max_epochs=N')
    assert tool.main([SEG_DEMO, '--cfg-options', 'train_cfg.max_epochs=1']) == 2
    one_line(capfd, 'IterBasedTrainLoop', 'train_cfg.max_iters=N')


@pytest.fixture(scope='module')
def small_ade(tmp_path_factory):
    """A 2 + 1 image ADE-layout demo set (the train tool checks the data before the model)."""
    from mmlinattn.datasets.demo_data import make_ade_demo
    root = str(tmp_path_factory.mktemp('small_ade') / 'ade') + '/'
    make_ade_demo(root, num_train=2, num_val=1)
    return root


def _backbone_file(tmp_path, whole):
    from mmlinattn.converters import save_checkpoint
    state = torch.load(whole, map_location='cpu', weights_only=True)['state_dict']
    path = tmp_path / 'backbone_only.pth'
    save_checkpoint(
        str(path), {
            k[9:]: v
            for k, v in state.items() if k.startswith('backbone.')
        }, meta={})
    return str(path)


def test_test_tool_refuses_a_backbone_only_file(tmp_path, seg_checkpoint, capfd):
    """Before: evaluated a random model (mIoU ~2) with exit 0."""
    path = _backbone_file(tmp_path, seg_checkpoint)
    assert load_tool('test').main([SEG_DEMO, path]) == 2
    one_line(capfd, path, 'backbone-only RAVLT file', 'decode_head and auxiliary_head',
             f'python tools/train.py {SEG_DEMO} --cfg-options load_from={path}')


def test_test_tool_refuses_load_from_next_to_its_checkpoint(seg_checkpoint, capfd):
    """Before: the load_from override was ignored without a word."""
    assert load_tool('test').main(
        [SEG_DEMO, seg_checkpoint, '--cfg-options', 'load_from=other.pth']) == 2
    one_line(capfd, 'load_from=other.pth', 'drop load_from')


def test_demo_tool_with_a_checkpoint_of_the_other_task(tmp_path, demo_checkpoints, photograph,
                                                       capfd):
    """Before: a traceback from init_model."""
    det_checkpoint = demo_checkpoints['det'][1]
    assert load_tool('demo').main(
        [photograph, SEG_DEMO, det_checkpoint, '--out-dir',
         str(tmp_path)]) == 2
    one_line(capfd, det_checkpoint)


@pytest.mark.parametrize('override, words', [
    ('model.backbone.arch=tinyy', ('model.backbone:', "arch 'tinyy'", 'choose one of')),
    ('model.backbone.out_indice=[0,1]',
     ('model.backbone:', "RAVLT has no argument 'out_indice'", "did you mean 'out_indices'?")),
    pytest.param(
        'model.decode_head.type=UPerHeed', ('model.decode_head:', "type 'UPerHeed'"),
        marks=pytest.mark.slow),
    pytest.param(
        'model.backbone.drop_path_rate=1.5', ('model.backbone:', 'drop_path_rate'),
        marks=pytest.mark.slow),
])
def test_model_key_mistakes_are_one_line_in_every_tool(override, words, seg_checkpoint, capfd,
                                                       small_ade):
    """Before: a 536-line log ending in a 15-frame traceback (train), tracebacks elsewhere."""
    data = [f'{split}_dataloader.dataset.data_root={small_ade}' for split in ('train', 'val')]
    assert load_tool('train').main([SEG_DEMO, '--cfg-options', override, *data]) == 2
    one_line(capfd, *words)
    assert load_tool('test').main([SEG_DEMO, seg_checkpoint, '--cfg-options', override]) == 2
    one_line(capfd, *words)


def test_resume_with_nothing_to_resume_says_so(tmp_path, capfd, small_ade):
    """Before: 'Auto resumed from the latest checkpoint None' and training from scratch."""
    root = small_ade
    tool = load_tool('train')
    args = tool.parse_args([
        SEG_DEMO, '--work-dir',
        str(tmp_path / 'empty'), '--resume', '--cfg-options',
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}'
    ])
    cfg = tool.build_cfg(args)
    assert cfg.resume is False and not cfg.get('load_from')
    _, err = capfd.readouterr()
    assert err.strip() == (f'--resume: {tmp_path / "empty"} holds no checkpoint yet (no '
                           'last_checkpoint file), so there is nothing to resume; training starts '
                           'from scratch')


def test_resume_from_weights_without_training_state(tmp_path, seg_checkpoint, capfd):
    tool = load_tool('train')
    assert tool.main([SEG_DEMO, '--work-dir', str(tmp_path), '--resume', seg_checkpoint]) == 2
    one_line(capfd, 'without a training state', f'--cfg-options load_from={seg_checkpoint}')
