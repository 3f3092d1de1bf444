"""``torch.compile`` for detectors and segmentors: regional compilation of their dense modules.

MMEngine's ``compile=True`` compiles the whole ``train_step``: the data preprocessor (which sees
every unpadded image size), the losses, and ``optimizer.step()``, whose parameter groups mmengine
builds as ``ConfigDict`` objects that dynamo cannot trace and whose learning rate changes every
iteration (a guard, so a recompilation per iteration until dynamo gives up). Our tools compile
instead where the cost is and the shapes are regular: the backbone, the neck and a segmentor's
decode heads (:func:`compile_dense_modules`), through :class:`CompileModelHook`. Each is compiled in
place (``nn.Module.compile``), so state-dict keys, checkpoints and ``load_from`` are unchanged.
"""
from typing import Any, List

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['DENSE_MODULES', 'compile_dense_modules', 'CompileModelHook', 'compile_with_hook']

#: Attributes of an mmdet / mmseg model that are compiled (RPN and RoI heads stay eager: their
#: proposals and samples have data-dependent sizes).
DENSE_MODULES = ('backbone', 'neck', 'decode_head', 'auxiliary_head')


def compile_dense_modules(model: nn.Module, **compile_kwargs: Any) -> List[str]:
    """Compile ``model``'s backbone, neck and decode heads in place.

    Args:
        model (nn.Module): a detector or segmentor (a model wrapper is looked through).
        **compile_kwargs: passed to :func:`torch.compile` (``backend``, ``mode``, ``dynamic``,
            ``fullgraph``, ...).

    Returns:
        list[str]: the names of the compiled modules.
    """
    from .loading import unwrap_model
    model = unwrap_model(model)
    compiled = []
    for name in DENSE_MODULES:
        module = getattr(model, name, None)
        if isinstance(module, nn.ModuleList):
            for item in module:
                item.compile(**compile_kwargs)
        elif isinstance(module, nn.Module):
            module.compile(**compile_kwargs)
        else:
            continue
        compiled.append(name)
    return compiled


@HOOKS.register_module()
class CompileModelHook(Hook):
    """Compile the model's dense modules (:func:`compile_dense_modules`) before training or
    testing. :func:`compile_with_hook` adds it for a config's ``compile=True`` /
    ``compile=dict(...)`` (``tools/train.py``, ``tools/test.py``) or ``tools/test.py --compile``.

    Args:
        **compile_kwargs: passed to :func:`torch.compile`.
    """

    priority = 'VERY_LOW'

    def __init__(self, **compile_kwargs: Any) -> None:
        self.compile_kwargs = compile_kwargs
        self._done = False

    def _compile(self, runner) -> None:
        if self._done:
            return
        names = compile_dense_modules(runner.model, **self.compile_kwargs)
        self._done = True
        runner.logger.info(f'torch.compile({self.compile_kwargs or ""}) of the model\'s '
                           f'{", ".join(names)}; the first iterations compile')

    def before_train(self, runner) -> None:
        self._compile(runner)

    def before_test(self, runner) -> None:
        self._compile(runner)

    def before_val(self, runner) -> None:
        self._compile(runner)


def compile_with_hook(cfg, requested: bool = False) -> bool:
    """Turn ``cfg.compile`` (``True`` or a dict of :func:`torch.compile` options), or
    ``requested``, into a :class:`CompileModelHook` in ``cfg.custom_hooks``.

    ``compile`` is removed from ``cfg`` so that mmengine does not compile its whole ``train_step``
    as well.

    Returns:
        bool: whether the hook was added.
    """
    options = cfg.pop('compile', None)
    if not (options or requested):
        return False
    options = dict(options) if isinstance(options, dict) else {}
    cfg.custom_hooks = list(cfg.get('custom_hooks')
                            or []) + [dict(type='CompileModelHook', **options)]
    return True
