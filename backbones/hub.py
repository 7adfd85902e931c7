"""The authors' published weights as URLs and timm cfgs, and a checked, cached download.

* :func:`classifier_url` and :func:`downstream_url` read the release table
  (:data:`.zoo.RELEASES`, with the published results in :mod:`.zoo`);
  :func:`release_urls` lists every file it names.
* :func:`timm_release_cfgs` turns it into timm pretrained cfgs with timm's tag convention
  (``recnext_m3.dist_in1k``, the default, and ``recnext_m3.in1k``), and
  :func:`fetch_pretrained` makes ``timm.create_model(name, pretrained=True)`` load the
  release through :func:`download` instead of timm's own downloader.
* :func:`download` fetches a URL into torch's hub cache (``$TORCH_HOME/hub/checkpoints``,
  where torch, timm and mmengine look too): once per URL (:func:`cached_path`), checked (length, sha256 prefix when the
  file name carries one, a complete torch zip), atomically (a failed download leaves no
  file), and a failure is one line naming the URL and how to work offline.

ReXNet uses timm's own weights; ReXNet-lite and ConvNeXt-1D are only on Google Drive (no
direct link), so they are not here: download by hand, then convert_to_backbone_weights.
No mm imports.
"""
import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Callable, Dict, Optional

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .checkpoint import CheckpointError
from .zoo import DOWNSTREAM_TASKS, RELEASES

logger = logging.getLogger('backbones')

# timm tag -> release file suffix. The first tag of a model is timm's default.
CLASSIFIER_TAGS = {'dist_in1k': 'distill_300e', 'in1k': 'without_distill_300e'}

# The authors' ImageNet evaluation: resize the short side to 256 (bicubic), centre-crop 224.
EVAL_PREPROCESSING = dict(input_size=(3, 224, 224), crop_pct=224 / 256, interpolation='bicubic',
                          mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)

# What to do about a missing local pretrained file (said by the backbones and the tools alike).
MISSING_PRETRAINED_HINT = 'convert a released classifier with convert_to_backbone_weights, see the README'
OFFLINE_HINT = ('download it elsewhere and pass its path with '
                '--cfg-options model.backbone.init_cfg.checkpoint=PATH (or a file made by '
                'convert_to_backbone_weights)')


class DownloadError(CheckpointError):
    """A failed download; its message is one line naming the URL and the offline route."""


def _release(model: str):
    family, arch = model[:-1], model[-2:]
    release = RELEASES.get(family)
    return release, arch


def classifier_url(model: str, tag: str = 'dist_in1k') -> Optional[str]:
    """URL of ``model``'s ImageNet release for a timm tag, or None if none is published."""
    release, arch = _release(model)
    if not release or arch not in release['classifiers'] or tag not in CLASSIFIER_TAGS:
        return None
    if tag == 'in1k' and not release['without_distill']:
        return None
    return f"{release['base']}{model}_{CLASSIFIER_TAGS[tag]}.pth"


def downstream_url(model: str, task: str) -> Optional[str]:
    """URL of the authors' trained detector (``task='coco'``) or segmentor (``'ade20k'``)."""
    release, arch = _release(model)
    if task not in DOWNSTREAM_TASKS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(DOWNSTREAM_TASKS)}")
    if not release or arch not in release['downstream']:
        return None
    return f"{release['base']}{model}_{task}.pth"


def release_urls() -> set:
    """Every file the release table names: the classifiers of each tag and the downstream checkpoints."""
    urls = set()
    for family, release in RELEASES.items():
        for arch in release['classifiers']:
            model = family[:-1] + arch
            urls.update(url for tag in CLASSIFIER_TAGS if (url := classifier_url(model, tag)))
            urls.update(url for task in DOWNSTREAM_TASKS if (url := downstream_url(model, task)))
    return urls


def timm_release_cfgs(models, make_cfg: Callable[..., dict]) -> Dict[str, dict]:
    """``{'model.tag': cfg}`` for timm's ``generate_default_cfgs``.

    ``make_cfg(**fields)`` is the family's ``_cfg`` (it adds first_conv, classifier ...);
    a model without a release gets one untagged cfg so that it still registers.
    """
    cfgs = {}
    for model in models:
        tagged = {tag: url for tag in CLASSIFIER_TAGS if (url := classifier_url(model, tag))}
        for tag, url in tagged.items():
            cfgs[f'{model}.{tag}'] = make_cfg(**{**EVAL_PREPROCESSING, 'url': url})
        if not tagged:
            cfgs[model] = make_cfg(**EVAL_PREPROCESSING)
    return cfgs


def fetch_pretrained(variant: str, pretrained: bool, kwargs: dict) -> dict:
    """Download the release a timm build will load, through :func:`download`.

    timm would fetch ``url`` with its own downloader; this resolves the same pretrained
    cfg (tag included), downloads into the same cache, and points timm at the file via
    ``pretrained_cfg_overlay=dict(file=...)``. A ``file`` or ``state_dict`` the caller
    already gave wins, which is also the offline route. Returns the updated kwargs.
    """
    if not pretrained:
        return kwargs
    from timm.models import resolve_pretrained_cfg
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get('pretrained_cfg'),
                                 pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'))
    if cfg.file or cfg.state_dict or not cfg.url:
        return kwargs
    hint = (f"download it elsewhere and pass timm.create_model('{variant}', pretrained=True, "
            "pretrained_cfg_overlay=dict(file=PATH))")
    path = download(cfg.url, offline_hint=hint)
    return dict(kwargs, pretrained_cfg_overlay=dict(kwargs.get('pretrained_cfg_overlay') or {}, file=path))


# ---- download ----------------------------------------------------------------------
# torch hub's naming: ``name-<sha256 prefix>.ext`` pins the content.
_HASH_IN_NAME = re.compile(r'-([a-f0-9]{8,64})\.')
_CHUNK = 1 << 20
_URL_KEY_CHARS = 12  # hex digits of sha256(URL) in a non-release file's cache name


def cache_dir() -> str:
    from torch.hub import get_dir
    return os.path.join(get_dir(), 'checkpoints')


def _file_name(url: str) -> str:
    return os.path.basename(urllib.parse.urlsplit(url).path) or 'download'


def cached_path(url: str) -> str:
    """Where :func:`download` keeps ``url``.

    A release file keeps its own name (timm and torch look for it there). Any other URL gets
    a short hash of the whole URL in its name as well, because training runs publish the same
    names (``.../a/epoch_12.pth``, ``.../b/epoch_12.pth``) for different files.
    """
    name = _file_name(url)
    if url in release_urls():
        return os.path.join(cache_dir(), name)
    stem, ext = os.path.splitext(name)
    key = hashlib.sha256(url.encode()).hexdigest()[:_URL_KEY_CHARS]
    return os.path.join(cache_dir(), f'{stem}.url{key}{ext}')


def download(url: str, timeout: float = 60.0, offline_hint: str = OFFLINE_HINT) -> str:
    """Return the local path of ``url``, downloading it into the hub cache first if needed."""
    target = cached_path(url)
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # A private temp name per process: parallel ranks never write into each other's file.
    fd, partial = tempfile.mkstemp(prefix=f'.{os.path.basename(target)}.', suffix='.partial',
                                   dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, 'wb') as out:
            _fetch_into(url, out, timeout)
        _check_download(partial, _file_name(url))
        os.replace(partial, target)  # atomic: the cache only ever holds complete files
    except DownloadError:
        _remove(partial)
        raise
    except (urllib.error.URLError, OSError, ValueError) as err:
        _remove(partial)
        reason = (f'HTTP error {err.code} {err.reason}' if isinstance(err, urllib.error.HTTPError)
                  else getattr(err, 'reason', None) or err)
        raise DownloadError(f'cannot download {url}: {_one_line(reason)}; offline: {offline_hint}') from None
    except BaseException:
        _remove(partial)
        raise
    logger.info(f'downloaded {url} to {target}')
    return target


def _fetch_into(url: str, out, timeout: float) -> None:
    request = urllib.request.Request(url, headers={'User-Agent': 'backbones-hub'})
    logger.info(f'downloading {url}')
    with urllib.request.urlopen(request, timeout=timeout) as response:
        expected = response.headers.get('Content-Length')
        received = 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
    if expected is not None and received != int(expected):
        raise ValueError(f'truncated: got {received} of {expected} bytes')


def _check_download(partial: str, name: str) -> None:
    """``name`` is the URL's file name: a sha256 prefix in it pins the content."""
    pinned = _HASH_IN_NAME.search(name)
    if pinned:
        sha = hashlib.sha256()
        with open(partial, 'rb') as f:
            while chunk := f.read(_CHUNK):
                sha.update(chunk)
        if not sha.hexdigest().startswith(pinned.group(1)):
            raise ValueError(f'sha256 {sha.hexdigest()[:len(pinned.group(1))]} does not match '
                             f'the {pinned.group(1)} in its name')
    # torch.save writes a zip; a cut-off zip has no central directory, a damaged one fails its CRCs.
    if not zipfile.is_zipfile(partial):
        raise ValueError('incomplete or not a torch checkpoint (no complete zip archive)')
    with zipfile.ZipFile(partial) as archive:
        if archive.testzip() is not None:
            raise ValueError('corrupt torch checkpoint (zip CRC mismatch)')


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _one_line(reason) -> str:
    text = str(reason).strip()
    return text.splitlines()[0][:200] if text else type(reason).__name__
