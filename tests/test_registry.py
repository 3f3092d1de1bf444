"""Backbones live in the MMEngine root registry: mmdet and mmseg both build them by bare name."""
import subprocess
import sys

import pytest
import torch

BACKBONES = ['RAVLT', 'SOFT']


def test_registered_in_root_only_once():
    from mmengine.registry import MODELS

    import mmlinattn  # noqa: F401
    for name in BACKBONES:
        assert name in MODELS.module_dict, name
        assert MODELS.get(name).__module__.startswith('mmlinattn.models.backbones')


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('name', BACKBONES)
def test_build_by_bare_name_from_child_registry(scope, name):
    import mmlinattn  # noqa: F401
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        # The child registry must not shadow our name with a class of its own.
        assert name not in MODELS.module_dict
        model = MODELS.build(dict(type=name, arch='t', out_indices=(1, 3))).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape[2:]) for o in outs] == [(8, 12), (2, 3)]


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_custom_imports_register_in_a_fresh_process(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)\n"
                   "model = dict(type='RAVLT', arch='t')\n")
    code = ('from mmengine.config import Config\n'
            'from mmdet.registry import MODELS\n'
            f'cfg = Config.fromfile({str(cfg)!r})\n'
            'm = MODELS.build(cfg.model)\n'
            'print(type(m).__module__, type(m).__name__)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ['mmlinattn.models.backbones.ravlt', 'RAVLT']


def test_every_family_has_a_backbone_a_converter_and_one_arch_table():
    """A family is an arch table, a backbone file and a converter file; each finds the others
    through the registries, so adding one touches no shared list."""
    from mmengine.registry import MODELS

    import mmlinattn  # noqa: F401
    from mmlinattn.archs import ARCH_TABLES
    from mmlinattn.converters import family_converter, registered_families
    from mmlinattn.models.backbones.base import PyramidBackbone
    backbones = {
        cls.arch_table.family: cls
        for cls in MODELS.module_dict.values()
        if isinstance(cls, type) and issubclass(cls, PyramidBackbone)
    }
    assert sorted(backbones) == registered_families() == sorted(ARCH_TABLES)
    for family, cls in backbones.items():
        table = family_converter(family).table
        assert table is cls.arch_table is ARCH_TABLES[family]
        assert MODELS.get(table.backbone) is cls


def test_new_modules_are_discovered_without_edits(tmp_path, monkeypatch):
    """``import_submodules`` (used by the backbone and converter packages) imports a module that
    was only dropped into the folder."""
    from mmlinattn.utils.discovery import import_submodules
    package = tmp_path / 'toy_families'
    package.mkdir()
    (package / '__init__.py').write_text('FOUND = []\n')
    for name in ('alpha', 'beta', '_private'):
        (package / f'{name}.py').write_text(f"from . import FOUND\nFOUND.append('{name}')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = import_submodules('toy_families')
    assert [m.__name__ for m in modules] == ['toy_families.alpha', 'toy_families.beta']
    assert sys.modules['toy_families'].FOUND == ['alpha', 'beta']
