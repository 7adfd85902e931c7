"""The authors' published weights: a checked, cached download, and timm's pretrained=True through it.

* :func:`download` fetches a URL into torch's hub cache (``$TORCH_HOME/hub/checkpoints``,
  where torch, timm and mmengine look too): once per URL (:func:`cached_path`), checked
  (length, sha256 prefix when the file name carries one, a complete torch zip), atomically
  (a failed download leaves no file), and a failure is one line naming the URL and how to
  work offline.
* :func:`fetch_pretrained` makes ``timm.create_model(name, pretrained=True)`` load a release
  through :func:`download` instead of timm's own downloader (registered with the models by
  this part).

The release URLs are declared by each family (``models.registry.Release``; read them with
``registry.classifier_url``, ``downstream_url``, ``release_urls``). ReXNet uses timm's own
weights; ReXNet-lite and ConvNeXt-1D are only on Google Drive (no direct link): download by
hand, then convert_to_backbone_weights. No mm imports.
"""
import hashlib
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from ..errors import CheckpointError
from ..models.registry import release_urls
from .files import atomic_write

logger = logging.getLogger('backbones')

# What to do about a missing local pretrained file (said by the backbones and the tools alike).
MISSING_PRETRAINED_HINT = 'convert a released classifier with convert_to_backbone_weights, see the README'
OFFLINE_HINT = ('download it elsewhere and pass its path with '
                '--cfg-options model.backbone.init_cfg.checkpoint=PATH (or a file made by '
                'convert_to_backbone_weights)')


class DownloadError(CheckpointError):
    """A failed download; its message is one line naming the URL and the offline route."""


def fetch_pretrained(variant: str, kwargs: dict) -> dict:
    """Download the release a timm build with ``pretrained=True`` will load, through :func:`download`.

    timm would fetch ``url`` with its own downloader; this resolves the same pretrained
    cfg (tag included), downloads into the same cache, and points timm at the file via
    ``pretrained_cfg_overlay=dict(file=...)``. A ``file`` or ``state_dict`` the caller
    already gave wins, which is also the offline route. Returns the updated kwargs.
    """
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
    try:
        # A private temp name per process (parallel ranks never write into each other's
        # file), renamed into place: the cache only ever holds complete files.
        with atomic_write(target) as partial:
            with open(partial, 'wb') as out:
                _fetch_into(url, out, timeout)
            _check_download(partial, _file_name(url))
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = (f'HTTP error {err.code} {err.reason}' if isinstance(err, urllib.error.HTTPError)
                  else getattr(err, 'reason', None) or err)
        raise DownloadError(f'cannot download {url}: {_one_line(reason)}; offline: {offline_hint}') from None
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


def _one_line(reason) -> str:
    text = str(reason).strip()
    return text.splitlines()[0][:200] if text else type(reason).__name__
