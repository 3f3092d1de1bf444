"""``ravlt_t`` learns the generated classification set with timm's own training utilities (slow).

No ImageNet here: the set is the demo shapes in the ImageFolder layout
(``tools/make_demo_data.py --only cls``), read by timm's dataset and loader, trained with timm's
optimizer factory, scheduler and loss, as ``train.py`` does.
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_ravlt_t_fine_tunes_on_the_generated_set(tmp_path):
    import timm
    from timm.data import create_dataset, create_loader, resolve_data_config
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    import mmlinattn  # noqa: F401
    subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'make_demo_data.py'), '--out',
        str(tmp_path), '--only', 'cls', '--num-train', '96', '--num-val', '30'
    ],
                   check=True,
                   capture_output=True,
                   timeout=300)
    root = str(tmp_path / 'cls')
    torch.manual_seed(0)
    model = timm.create_model('ravlt_t', num_classes=3, drop_path_rate=0.0)
    config = resolve_data_config({'input_size': (3, 64, 64), 'crop_pct': 1.0}, model=model)
    train_set = create_dataset('', root=root, split='train', is_training=True)
    val_set = create_dataset('', root=root, split='val')
    assert len(train_set) == 96 and len(val_set) == 30
    train_loader = create_loader(
        train_set,
        input_size=config['input_size'],
        batch_size=16,
        is_training=True,
        no_aug=True,
        mean=config['mean'],
        std=config['std'],
        num_workers=0,
        use_prefetcher=False,
        device=torch.device('cpu'))
    val_loader = create_loader(
        val_set,
        input_size=config['input_size'],
        batch_size=30,
        mean=config['mean'],
        std=config['std'],
        num_workers=0,
        crop_pct=1.0,
        use_prefetcher=False,
        device=torch.device('cpu'))
    epochs = 8
    optimizer = create_optimizer_v2(model, 'adamw', lr=2e-3, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched='cosine', num_epochs=epochs, warmup_epochs=1)
    criterion = LabelSmoothingCrossEntropy(smoothing=0.1)
    losses = []
    for epoch in range(epochs):  # 8 epochs x 6 steps = 48 steps
        model.train()
        for images, targets in train_loader:
            loss = criterion(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step(epoch + 1)
    model.eval()
    with torch.no_grad():
        images, targets = next(iter(val_loader))
        accuracy = (model(images).argmax(1) == targets).float().mean().item()
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    print(f'loss {first:.3f} -> {last:.3f}; val accuracy {accuracy:.3f} (chance 0.333)')
    assert last < 0.6 * first
    assert accuracy >= 0.7
