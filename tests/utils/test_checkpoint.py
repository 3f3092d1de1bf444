"""Full mmengine checkpoints must save and resume under torch>=2.6 through mmlinattn's loader."""
import argparse
import os.path as osp
import pickle
import re

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader

import mmlinattn  # noqa: F401  (installs the loader)
from mmlinattn.utils.checkpoint import (UnreadableCheckpointError, UnsafeCheckpointError,
                                        safe_torch_load)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        labels = torch.stack(labels) if isinstance(labels, list) else labels
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((out.squeeze(-1) - labels)**2).mean())
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict()

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 2, generator=g)
        self.y = self.x @ torch.tensor([1.5, -2.0]) + 0.3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


def make_runner(work_dir, max_iters, resume=False, load_from=None):
    torch.manual_seed(0)  # the model is built before the Runner seeds anything
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', by_epoch=False, milestones=[3], gamma=0.5),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        experiment_name=f'toy_{max_iters}_{resume}')


def test_full_checkpoint_holds_history_buffers(tmp_path):
    runner = make_runner(tmp_path / 'a', max_iters=2)
    runner.train()
    ckpt = osp.join(tmp_path / 'a', 'iter_2.pth')
    # The plain torch>=2.6 default refuses it: this is the bug being fixed.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt, weights_only=True)
    loaded = CheckpointLoader.load_checkpoint(ckpt, map_location='cpu')
    assert loaded['meta']['iter'] == 2
    assert 'message_hub' in loaded and 'optimizer' in loaded


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = make_runner(tmp_path / 'straight', max_iters=6)
    straight.train()

    first = make_runner(tmp_path / 'split', max_iters=4)
    first.train()
    resumed = make_runner(tmp_path / 'split', max_iters=6, resume=True)
    resumed.train()

    assert resumed.iter == 6
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    lr_straight = straight.optim_wrapper.get_lr()['lr'][0]
    lr_resumed = resumed.optim_wrapper.get_lr()['lr'][0]
    assert lr_straight == lr_resumed == pytest.approx(0.05)


def test_load_from(tmp_path):
    runner = make_runner(tmp_path / 'a', max_iters=2)
    runner.train()
    weights = runner.model.linear.weight.detach().clone()
    other = make_runner(tmp_path / 'b', max_iters=2, load_from=str(tmp_path / 'a' / 'iter_2.pth'))
    other.load_or_resume()
    torch.testing.assert_close(other.model.linear.weight, weights)


class _Evil:

    def __reduce__(self):
        return (print, ('this must never run', ))


def test_arbitrary_pickles_are_refused(tmp_path, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': _Evil()}, path)
    with pytest.raises(
            UnsafeCheckpointError, match=r'unsafe checkpoint: it references builtins\.print'):
        safe_torch_load(str(path))
    assert 'this must never run' not in capsys.readouterr().out


def test_official_namespace_is_allowed(tmp_path):
    path = tmp_path / 'official.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'args': argparse.Namespace(lr=0.1)}, path)
    ckpt = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert ckpt['args'].lr == 0.1
    torch.testing.assert_close(ckpt['model']['w'], torch.ones(2))


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        safe_torch_load(str(tmp_path / 'nope.pth'))


def test_damaged_files_get_the_converters_diagnostics_through_mmengine(tmp_path):
    """mmengine's loader (``load_from``, ``--resume``) and the converters share one loader, so a
    damaged file gets the same one-line diagnosis everywhere, not a torch stack trace."""
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(1000.)}}, good)
    data = good.read_bytes()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    text = tmp_path / 'notes.pth'
    text.write_text('just some text\n')
    cases = [(truncated, 'truncated or corrupt checkpoint'), (empty, 'empty file (0 bytes)'),
             (text, 'not a PyTorch checkpoint: expected')]
    for path, message in cases:
        with pytest.raises(UnreadableCheckpointError, match=re.escape(message)) as info:
            CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
        assert str(path) in str(info.value)
    # The converters raise their own type with the same text.
    from mmlinattn.converters import CheckpointError, load_checkpoint_file
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_checkpoint_file(str(truncated))
    torch.testing.assert_close(
        load_checkpoint_file(str(good))['state_dict']['w'], torch.arange(1000.))


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_loader_switch_is_visible_and_can_be_turned_off(tmp_path):
    """``import mmlinattn`` replaces mmengine's local loader unless MMLINATTN_SAFE_LOADER=0."""
    import subprocess
    import sys
    code = ('import mmlinattn\n'
            'from mmlinattn.utils.checkpoint import is_safe_loader_installed\n'
            'print(is_safe_loader_installed())\n')
    for value, expected in ((None, 'True'), ('0', 'False')):
        env = {k: v for k, v in __import__('os').environ.items() if k != 'MMLINATTN_SAFE_LOADER'}
        if value is not None:
            env['MMLINATTN_SAFE_LOADER'] = value
        out = subprocess.run([sys.executable, '-c', code],
                             env=env,
                             capture_output=True,
                             text=True,
                             timeout=120)
        assert out.stdout.strip().splitlines()[-1] == expected, (value, out.stderr[-500:])


def test_files_mmengine_reads_are_read_identically(tmp_path):
    """Every file mmengine's own loader reads comes back the same through ours."""
    from mmengine.runner.checkpoint import load_from_local

    from mmlinattn.utils.checkpoint import (install_safe_checkpoint_loader,
                                            is_safe_loader_installed,
                                            uninstall_safe_checkpoint_loader)
    files = {
        'state_dict.pth': {
            'state_dict': {
                'w': torch.arange(6.).view(2, 3),
                'n': torch.tensor(3)
            }
        },
        'plain.pth': {
            'a.weight': torch.ones(2),
            'b': torch.zeros(1, dtype=torch.int64)
        },
        'meta.pth': {
            'state_dict': {
                'w': torch.ones(1)
            },
            'meta': {
                'epoch': 3,
                'classes': ['a']
            }
        },
        'legacy.pth': {
            'state_dict': {
                'w': torch.ones(3)
            }
        },
    }
    for name, obj in files.items():
        torch.save(obj, tmp_path / name, _use_new_zipfile_serialization=name != 'legacy.pth')
    try:
        for name in files:
            theirs = load_from_local(str(tmp_path / name), map_location='cpu')
            ours = CheckpointLoader.load_checkpoint(str(tmp_path / name), map_location='cpu')
            assert repr(theirs) == repr(ours), name
        uninstall_safe_checkpoint_loader()
        assert not is_safe_loader_installed()
        assert CheckpointLoader._schemes[''] is load_from_local
    finally:
        install_safe_checkpoint_loader()
    assert is_safe_loader_installed()
