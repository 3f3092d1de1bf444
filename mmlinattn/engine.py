"""Runner pieces for ``torch.compile`` (MMEngine's ``compile=True``), registered in the MMEngine
root ``HOOKS`` registry so that mmdet and mmseg configs name them."""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['plain_param_groups', 'PlainParamGroupsHook']


def plain_param_groups(optimizer: torch.optim.Optimizer) -> int:
    """Make every parameter group of ``optimizer`` a plain ``dict``; returns how many changed.

    mmengine builds optimizers from their config, so with ``paramwise_cfg`` (every shipped config
    has one) each group is an mmengine ``ConfigDict``. Dynamo cannot trace ``optimizer.step()``
    over those (``'UserDefinedDictVariable' object has no attribute 'items'``), which breaks
    ``compile=True``. The groups hold the same entries afterwards; the optimizer's state is keyed
    by parameter and is untouched.
    """
    changed = 0
    for index, group in enumerate(optimizer.param_groups):
        if type(group) is not dict:
            optimizer.param_groups[index] = dict(group)
            changed += 1
    return changed


@HOOKS.register_module()
class PlainParamGroupsHook(Hook):
    """Before training, :func:`plain_param_groups` on every optimizer of the runner (the tools
    add it when a config sets ``compile``)."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        wrappers = wrapper.values() if hasattr(wrapper, 'values') else [wrapper]
        for item in wrappers:
            plain_param_groups(item.optimizer)
