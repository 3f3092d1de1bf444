"""Convert an official (or already converted) checkpoint into an mmlinattn checkpoint.

Examples::

    # official ImageNet weights -> backbone checkpoint for init_cfg=dict(type='Pretrained', ...)
    python tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth
    # official mmdet-2.x Mask R-CNN -> whole detector for mmdet 3.x `load_from`
    python tools/convert_checkpoint.py maskrcnn_s_1x_12_epoch.pth ravlt_s_maskrcnn.pth --whole-model

The source file is only read (``weights_only=True``). Every tensor is checked against a backbone of
the inferred architecture before anything is written; the output is written atomically, records
what the weights are (family, arch, and the settings that change their function, e.g. SOFT vs
SOFT++) and is never an existing file unless ``--force`` is given. Refusals print one line and exit
with code 2, leaving the destination untouched.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

from mmlinattn.converters import CONVERTER_VERSION  # noqa: E402
from mmlinattn.converters import (BACKBONE_PREFIX, CheckpointError, advice_notes, backbone_advice,
                                  backbone_config, checkpoint_arch, convert_state_dict,
                                  family_converter, load_checkpoint_file, registered_families,
                                  save_checkpoint, unwrap_state_dict)

EXIT_REFUSED = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint to convert (official or mmlinattn)')
    parser.add_argument('dst', help='output path')
    parser.add_argument(
        '--family',
        choices=['auto'] + registered_families(),
        default='auto',
        help='model family of SRC; refused if the weights say otherwise '
        '(default: auto)')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    parser.add_argument(
        '--whole-model',
        action='store_true',
        help='for detector/segmentor checkpoints: keep neck and heads, re-key the '
        'backbone under backbone. (default: backbone only)')
    parser.add_argument(
        '--allow-custom',
        action='store_true',
        help='convert a consistent backbone whose sizes match no released variant')
    return parser.parse_args(argv)


def _check_consistent(result, whole_model: bool) -> None:
    """Refuse a file whose tensors do not all fit one backbone of the inferred arch."""
    name = result.family.upper()
    prefix = BACKBONE_PREFIX if whole_model else ''
    if result.mismatched:
        key = result.mismatched[0]
        raise CheckpointError(
            f'{len(result.mismatched)} tensor(s) do not fit the architecture the rest of the file '
            f'describes (e.g. {key} has shape {tuple(result.state_dict[prefix + key].shape)}); '
            f'the file is not a consistent {name} backbone, nothing was written')
    if result.unexpected:
        raise CheckpointError(
            f'{len(result.unexpected)} tensor(s) belong to no {name} backbone of the inferred '
            f'architecture (e.g. {result.unexpected[0]}); nothing was written')
    optional = family_converter(result.family).optional_keys
    missing = [k for k in result.missing if not optional.match(k)]
    if missing:
        raise CheckpointError(
            f'the file is incomplete: {len(missing)} tensor(s) of a {name} backbone with this '
            f'architecture are missing (e.g. {missing[0]}); nothing was written')


def convert(args) -> None:
    if osp.isdir(args.src):
        raise CheckpointError(f'{args.src} is a directory; give the checkpoint file inside it')
    if osp.exists(args.dst) and osp.exists(args.src) and osp.samefile(args.src, args.dst):
        raise CheckpointError('DST is the source file; the source is never modified')
    checkpoint = load_checkpoint_file(args.src)
    result = convert_state_dict(
        unwrap_state_dict(checkpoint),
        family=args.family,
        whole_model=args.whole_model,
        source_arch=checkpoint_arch(checkpoint))
    build = backbone_config(result)
    if result.variant == 'custom' and not args.allow_custom:
        raise CheckpointError(
            f'unknown variant: the shapes match no released {result.family.upper()} variant; '
            f'pass --allow-custom to convert it anyway and build the backbone as '
            f'{backbone_advice(result)}')
    _check_consistent(result, args.whole_model)
    meta = dict(
        source=osp.abspath(args.src),
        family=result.family,
        variant=result.variant,
        arch=result.arch,
        settings=result.settings,
        backbone=build,
        source_format=result.source_format,
        whole_model=args.whole_model,
        converter_version=CONVERTER_VERSION)
    save_checkpoint(args.dst, result.state_dict, meta, force=args.force)
    kind = family_converter(result.family).describe(result.settings)
    print(f'family: {result.family}  format: {result.source_format}  variant: {result.variant}' +
          (f'  ({kind})' if kind else ''))
    print(f'keys: {result.summary()}; {len(result.dropped)} source keys dropped' +
          (f'; {len(result.classifier)} classifier-head keys kept (the timm classifier loads '
           'them, a backbone only those it has)' if result.classifier else ''))
    for label, keys in (('missing', result.missing), ('unexpected', result.unexpected)):
        if keys:
            print(f'  {label}: {", ".join(keys[:8])}' + (' ...' if len(keys) > 8 else ''))
    print(f'backbone: {build}')
    for note in advice_notes(result):
        print(f'check: {note}')
    print(f'wrote {args.dst}')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        convert(args)
    except CheckpointError as err:
        print(f'convert_checkpoint: error: {err}', file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == '__main__':
    sys.exit(main())
