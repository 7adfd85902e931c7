"""tools/infer.py's run: a trained detector or segmentor on arbitrary images, drawn by
mmdet's DetInferencer or mmseg's MMSegInferencer as the config's ``default_scope`` says."""
from pathlib import Path
from typing import List, Optional, Sequence

from mm_efficient_backbones.backbones.errors import UserError

from .analysis import check_readable, list_images
from .checkpoint_fit import check_checkpoint_fits
from .safe_load import allow_mmengine_checkpoints

# Annotation loading has no place in inference on arbitrary images.
ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadDepthAnnotation')


def without_annotation_loading(cfg) -> None:
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline[:] = [step for step in pipeline if step.get('type') not in ANNOTATION_LOADERS]


def infer_images(cfg, checkpoint: str, inputs: Sequence[str], out_dir: str, score_thr: float = 0.3,
                 device: Optional[str] = None, allow_partial: bool = False) -> List[Path]:
    """Draw the predictions of ``cfg``'s model with ``checkpoint`` on ``inputs`` (images or
    folders of them) into OUT_DIR/vis/; raw predictions go to OUT_DIR/preds/ (json, detection)
    or OUT_DIR/pred/ (label PNGs, segmentation). Every input and the checkpoint are checked
    first. Returns the drawn images' paths."""
    if not 0 <= score_thr <= 1:
        raise UserError(f'--score-thr {score_thr} must be between 0 and 1')
    images = [image for path in inputs for image in list_images(path)]
    check_readable(images)
    check_checkpoint_fits(cfg, checkpoint, allow_partial)
    without_annotation_loading(cfg)
    allow_mmengine_checkpoints()
    paths = [str(path) for path in images]
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=cfg, weights=checkpoint, device=device)
        inferencer(paths, out_dir=out_dir, pred_score_thr=score_thr, no_save_pred=False)
    else:  # mmseg: check_checkpoint_fits accepts no other scope
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=checkpoint, device=device)
        inferencer(paths, out_dir=out_dir)
    return [Path(out_dir) / 'vis' / path.name for path in images]
