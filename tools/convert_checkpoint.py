"""Convert an official (or already converted) checkpoint into an mmlinattn checkpoint.

Examples::

    # official ImageNet weights -> backbone checkpoint for init_cfg=dict(type='Pretrained', ...)
    python tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth
    # official mmdet-2.x Mask R-CNN -> whole detector for mmdet 3.x `load_from`
    python tools/convert_checkpoint.py maskrcnn_s_1x_12_epoch.pth ravlt_s_maskrcnn.pth --whole-model

The source file is only read (``weights_only=True``). The output is written atomically and is
never an existing file unless ``--force`` is given. Refusals print one line and exit with code 2.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

from mmlinattn.converters import (CONVERTER_VERSION, CheckpointError,  # noqa: E402
                                  checkpoint_arch,
                                  convert_state_dict, load_checkpoint_file, registered_families,
                                  save_checkpoint, unwrap_state_dict)
from mmlinattn.converters.common import FAMILY_KEY_HINTS  # noqa: E402

EXIT_REFUSED = 2


def parse_args(argv=None):
    families = sorted(set(registered_families()) | set(FAMILY_KEY_HINTS))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint to convert (official or mmlinattn)')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--family', choices=['auto'] + families, default='auto',
                        help='model family of SRC; refused if the weights say otherwise '
                        '(default: auto)')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    parser.add_argument('--whole-model', action='store_true',
                        help='for detector/segmentor checkpoints: keep neck and heads, re-key the '
                        'backbone under backbone. (default: backbone only)')
    parser.add_argument('--allow-custom', action='store_true',
                        help='convert weights whose shapes match no released variant')
    return parser.parse_args(argv)


def convert(args) -> None:
    if osp.exists(args.dst) and osp.exists(args.src) and osp.samefile(args.src, args.dst):
        raise CheckpointError('DST is the source file; the source is never modified')
    checkpoint = load_checkpoint_file(args.src)
    result = convert_state_dict(unwrap_state_dict(checkpoint), family=args.family,
                                whole_model=args.whole_model,
                                source_arch=checkpoint_arch(checkpoint))
    source_meta = checkpoint.get('meta') if isinstance(checkpoint.get('meta'), dict) else {}
    if result.source_format == 'mmlinattn' and isinstance(source_meta.get('arch'), dict):
        # Head counts are not visible in weight shapes; our own files record them.
        result.arch.setdefault('num_heads', source_meta['arch'].get('num_heads'))
    if result.variant == 'custom' and not args.allow_custom:
        raise CheckpointError(
            f'unknown variant: the shapes match no released {result.family.upper()} variant '
            f'(inferred arch {result.arch}); pass --allow-custom to convert it anyway and build '
            'the backbone with that arch')
    meta = dict(source=osp.abspath(args.src), family=result.family, variant=result.variant,
                arch=result.arch, source_format=result.source_format,
                whole_model=args.whole_model, converter_version=CONVERTER_VERSION)
    save_checkpoint(args.dst, result.state_dict, meta, force=args.force)
    print(f'family: {result.family}  format: {result.source_format}  variant: {result.variant}')
    print(f'arch: {result.arch}')
    print(f'keys: {result.summary()}; {len(result.dropped)} source keys dropped')
    for label, keys in (('missing', result.missing), ('unexpected', result.unexpected),
                        ('wrong shape', result.mismatched)):
        if keys:
            print(f'  {label}: {", ".join(keys[:8])}' + (' ...' if len(keys) > 8 else ''))
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
