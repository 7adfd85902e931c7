"""Reparameterise a trained detector or segmentor checkpoint into the deploy form.

Families such as RepNeXt train multi-branch convs that collapse into single convs
for inference. This tool reads a checkpoint written by ``tools/train.py`` (mmdet or
mmseg), collapses its ``backbone.*`` weights and writes a checkpoint that a config
with ``model.backbone.deploy=True`` loads as it is; the neck and heads are copied
unchanged. The result is checked before it is written: the deploy backbone, built
directly, must give the training form's features within 1e-4 (relative).

Usage::

    python tools/reparameterize.py work_dirs/mask-rcnn_repnext_m3/epoch_12.pth \\
        checkpoints/mask-rcnn_repnext_m3_deploy.pth
    python tools/test.py configs/repnext_m3_coco.py checkpoints/mask-rcnn_repnext_m3_deploy.pth \\
        --cfg-options model.backbone.deploy=True

``--single-kernel`` also collapses each RepNeXt ChunkConv into one 11x11 conv (level
2; then test with ``model.backbone.single_kernel=True`` too). The family and arch
are read from the weights. Optimizer, scheduler and message-hub states are dropped:
they belong to the training form and cannot resume the deploy one.

Exit status: 0 on success, 1 for a checkpoint that cannot be reparameterised (one
line on stderr, no output left behind), 2 for a bad command line.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch

from mm_efficient_backbones.backbones import MM_BACKBONES, BackboneConfigError
from mm_efficient_backbones.backbones.checkpoint import CheckpointError, load_checkpoint_file
from mm_efficient_backbones.backbones.multiscale import guess_family
from mm_efficient_backbones.mm_common.runtime import allow_mmengine_checkpoints
from mm_efficient_backbones.tools.convert_to_backbone_weights import (ConversionError, save, sha256_of,
                                               staged_output)

PROG = 'reparameterize'
PREFIX = 'backbone.'
CHECK_INPUT_SIZE = (67, 93)  # odd sizes: every stride-2 conv rounds up somewhere
TOLERANCE = 1e-4
# Training-loop state that only resumes the training form.
TRAINING_STATE = ('optimizer', 'param_schedulers', 'message_hub')
StateDict = Dict[str, torch.Tensor]


class ReparameterizeError(ConversionError):
    """A checkpoint that cannot be reparameterised; its message is one line.

    A ConversionError, so that convert_to_backbone_weights --deploy reports it as its own.
    """


def _shapes(module: torch.nn.Module) -> Dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def find_arch(backbone_cls, state_dict: StateDict, source: str) -> str:
    """The arch whose training-form keys and shapes are exactly those of ``state_dict``."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    with torch.device('meta'):  # shapes only: nothing is allocated
        for arch in backbone_cls.archs:
            if _shapes(backbone_cls(arch)) == shapes:
                return arch
        # Only now the slower deploy builds, to say why nothing fits.
        for arch in backbone_cls.archs:
            if _shapes(backbone_cls(arch, deploy=True)) == shapes:
                raise ReparameterizeError(f'{source}: the backbone is already in the deploy form '
                                          f'({backbone_cls.family}-{arch})')
    raise ReparameterizeError(f'{source}: the backbone weights fit no {backbone_cls.family} arch '
                              f'({", ".join(backbone_cls.archs)}) in the training form exactly; '
                              'is it already reparameterised?')


def _relative_error(want: Sequence[torch.Tensor], got: Sequence[torch.Tensor]) -> float:
    return max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item() for a, b in zip(want, got))


def reparameterize_backbone(backbone_cls, arch: str, state_dict: StateDict,
                            single_kernel: bool = False) -> Tuple[StateDict, float]:
    """Training-form backbone weights -> deploy-form weights, and the relative error of
    the deploy backbone built directly (``deploy=True``) against the training form."""
    options = dict(single_kernel=True) if single_kernel else {}
    trained = backbone_cls(arch, **options)
    trained.load_state_dict(state_dict, strict=True)
    trained.eval()
    x = torch.randn(1, 3, *CHECK_INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = trained(x)
        deploy_state = trained.switch_to_deploy().state_dict()
        built = backbone_cls(arch, deploy=True, **options)
        if not built.fused:
            raise ReparameterizeError(f'{backbone_cls.family} has no separate deploy form to write: its '
                                      'deploy=True backbone loads the training weights and folds BN itself')
        built.load_state_dict(deploy_state, strict=True)
        got = built.eval()(x)
    return deploy_state, _relative_error(want, got)


def reparameterize_checkpoint(checkpoint: dict, source: str, single_kernel: bool = False) -> Tuple[dict, str]:
    """The deploy-form checkpoint and a one-line summary."""
    state_dict = checkpoint.get('state_dict')
    if not isinstance(state_dict, dict):
        raise ReparameterizeError(f"{source} has no 'state_dict': pass a checkpoint written by tools/train.py")
    backbone_state = {k[len(PREFIX):]: v for k, v in state_dict.items() if k.startswith(PREFIX)}
    if not backbone_state:
        raise ReparameterizeError(f'{source} has no {PREFIX}* weights: pass a detector or segmentor checkpoint')
    family = guess_family(backbone_state)
    if family not in MM_BACKBONES:
        raise ReparameterizeError(f'{source}: the backbone is none of {", ".join(MM_BACKBONES)}')
    backbone_cls = MM_BACKBONES[family]
    if single_kernel and family != 'RepNeXt':
        raise ReparameterizeError(f'--single-kernel is a RepNeXt form; {source} holds a {family} backbone')
    arch = find_arch(backbone_cls, backbone_state, source)
    deploy_state, error = reparameterize_backbone(backbone_cls, arch, backbone_state, single_kernel)
    if not error <= TOLERANCE:
        raise ReparameterizeError(f'the deploy form of {family}-{arch} differs from the training form by '
                                  f'{error:.2e} (relative), over {TOLERANCE:g}')
    others = {k: v for k, v in state_dict.items() if not k.startswith(PREFIX)}
    out = {key: value for key, value in checkpoint.items() if key not in TRAINING_STATE}
    out['state_dict'] = {**{PREFIX + k: v for k, v in deploy_state.items()}, **others}
    meta = dict(out.get('meta') or {})
    meta['reparameterized'] = dict(family=family, arch=arch, single_kernel=single_kernel,
                                   source=str(source), max_relative_error=error,
                                   dropped=[k for k in TRAINING_STATE if k in checkpoint])
    out['meta'] = meta
    level = 'level 2 (single 11x11 ChunkConv)' if single_kernel else 'level 1'
    summary = (f'{family}-{arch} backbone: {len(backbone_state)} -> {len(deploy_state)} tensors, {level}; '
               f'{len(others)} other tensors kept; deploy vs training max relative error {error:.1e}')
    return out, summary


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='detector or segmentor checkpoint from tools/train.py')
    parser.add_argument('output', help='where to write the deploy-form checkpoint')
    parser.add_argument('--single-kernel', action='store_true',
                        help='RepNeXt: also collapse each ChunkConv into one 11x11 conv (deploy level 2)')
    parser.add_argument('--force', action='store_true', help='overwrite an existing output file')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow arbitrary unpickling (runs code from the file: trusted sources only)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    try:
        if output.exists() and not args.force:
            raise ReparameterizeError(f'{output} already exists; pass --force to overwrite it')
        allow_mmengine_checkpoints()  # tools/train.py's files load with weights_only=True
        checkpoint = load_checkpoint_file(
            args.checkpoint, trust=args.trust_checkpoint,
            trust_hint='if you trust its source, pass --trust-checkpoint')
        out, summary = reparameterize_checkpoint(checkpoint, args.checkpoint, args.single_kernel)
        out['meta']['reparameterized']['source_sha256'] = sha256_of(args.checkpoint)
        output.parent.mkdir(parents=True, exist_ok=True)
        with staged_output(output) as temp:
            save(out, temp)
    except (CheckpointError, ReparameterizeError, BackboneConfigError, OSError) as err:
        print(f'{PROG}: error: {err}', file=sys.stderr)
        return 1
    print(summary)
    print(f'wrote {output}; test it with --cfg-options model.backbone.deploy=True'
          + (' model.backbone.single_kernel=True' if args.single_kernel else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
