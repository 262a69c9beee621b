"""Image reading rules, atomic writes and Parquet helpers.

Writing rules: every output goes through :func:`atomic_path`, so a failure (a full disk, a kill, a
read-only folder) leaves the previous file or nothing, never a partial one; a write that fails is
an :class:`OutputError` naming the output (not a temporary file); a target that exists and is
neither a regular file nor a folder (``/dev/full``, a FIFO) is refused rather than replaced.

Image reading rules (what :func:`read_image` does with what it finds):

* decoded fully with Pillow first, so a truncated or corrupt file raises :class:`BadImageError`
  naming it (OpenCV would silently return a partly grey image for a truncated JPEG);
* pixels are then taken with OpenCV (keeps 16-bit data exact), EXIF orientation is ignored;
* grayscale -> RGB by copying the channel; gray + alpha and RGBA -> alpha dropped (not composited);
* 16-bit -> 8-bit by ``round(v / 257)`` (65535 -> 255); any other sample type is rejected;
* images smaller than ``min_side`` on either side are rejected.
"""

from __future__ import annotations

import errno
import hashlib
import html
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class BadImageError(ValueError):
    """An input image that cannot be used; the message names the file."""


class OutputError(OSError):
    """An output that cannot be written; the message names the output."""


# Errors that mean "this output cannot be written here", whatever call raised them.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}


def broken_link(path: Path) -> str | None:
    """Why ``path`` is a dangling symbolic link (with its target), or None."""
    if path.is_symlink() and not path.exists():
        return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
    return None


def read_image(path: str | Path, min_side: int = 1) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` as uint8 RGB ``(H, W, 3)``; also return the conversions applied (documented above)."""
    path = Path(path)
    broken = broken_link(path)
    if broken:
        raise BadImageError(f"{path}: {broken}")
    try:
        with Image.open(path) as im:
            im.load()  # full decode: raises on truncated data
    except Exception as err:  # Pillow raises several types (OSError, SyntaxError, ...)
        raise BadImageError(f"{path}: not a readable image ({err})") from None
    data = np.fromfile(path, np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None:
        raise BadImageError(f"{path}: OpenCV cannot decode this image")
    conversions: list[str] = []
    if array.dtype == np.uint16:
        array = np.rint(array.astype(np.float64) / 257.0).astype(np.uint8)
        conversions.append("16bit->8bit")
    elif array.dtype != np.uint8:
        raise BadImageError(f"{path}: unsupported sample type {array.dtype} (use 8- or 16-bit images)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
        conversions.append("gray->rgb")
    elif array.shape[2] == 2:
        array = np.repeat(array[..., :1], 3, axis=2)
        conversions.extend(["drop_alpha", "gray->rgb"])
    elif array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
        conversions.append("drop_alpha")
    else:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    h, w = array.shape[:2]
    if min(h, w) < min_side:
        raise BadImageError(f"{path}: {w}x{h} px is smaller than the minimum side {min_side} px")
    return np.ascontiguousarray(array), conversions


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8 image (fixed settings, so same pixels -> same bytes)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG")
    return buf.tobytes()


def write_png(path: str | Path, image: np.ndarray) -> str:
    """Write ``image`` as PNG, atomically; return the sha256 of the file's bytes."""
    data = encode_png(image)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def copy_as_png(source: str | Path, path: str | Path) -> str:
    """``source``'s pixels written as a PNG at ``path``, atomically, as they are stored: bit depth
    (8 or 16), alpha and values (gray + alpha comes back as RGBA of the same values, as OpenCV
    reads it), EXIF orientation ignored as :func:`read_image` does. What ``grids restore
    --fallback identity`` writes: the input unchanged, not its 8-bit RGB reading. Returns the
    sha256 of the file's bytes."""
    array = cv2.imdecode(np.fromfile(source, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if array is None or array.dtype not in (np.uint8, np.uint16):
        raise BadImageError(f"{source}: cannot be written unchanged as a PNG (8- or 16-bit samples only)")
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise BadImageError(f"{source}: cannot be written unchanged as a PNG ({array.shape} {array.dtype})")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return hashlib.sha256(buf.tobytes()).hexdigest()


def load_png(path: str | Path) -> np.ndarray:
    """Read a clean-set image: a PNG this package wrote, or a user file the clean set references in
    place because it needed no conversion (8-bit, 3 channels); uint8 RGB either way."""
    return decode_clean(np.fromfile(path, np.uint8), path)


def decode_clean(data: bytes | np.ndarray, name: str | Path = "image") -> np.ndarray:
    """:func:`load_png` on bytes already read. EXIF orientation is ignored, as :func:`read_image`
    does, so a JPEG referenced in place gives the pixels its check saw."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise BadImageError(f"{name}: cannot decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@contextmanager
def atomic_path(path: str | Path, clean_stale: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories: readers never see a half-written output, and a failure leaves
    nothing behind; the temporaries of a writer killed with ``kill -9`` are removed by the next
    write of ``path`` (:func:`remove_stale_temporaries`; ``clean_stale=False`` for a caller that
    clears its folder itself). An OSError of the writing (disk full, read-only, no permission)
    becomes an :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    if path.exists() and not (path.is_file() or path.is_dir()):
        raise OutputError(f"{path}: exists and is not a regular file or folder; refusing to replace it")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if clean_stale:
            remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as err:
        # Ours: raised before the block, about the temporary file, or naming no file while being a
        # write refusal (full disk, read-only: a failed write() names none) or a bare OSError (how
        # libraries report a failed write). An error about another file (the block reading an
        # input) passes through unchanged.
        if err.filename is not None:
            ours = tmp is None or str(err.filename).startswith(str(tmp.parent))
        else:
            ours = tmp is None or err.errno in _WRITE_ERRNOS or type(err) is OSError
        if ours:
            raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp.parent, ignore_errors=True)


# The temporary sibling of atomic_path: ``.{name}.`` and mkdtemp's 8 random characters.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is that of an :func:`atomic_path` temporary (a folder, or a file of an
    older version), which only a killed writer leaves behind."""
    return _TEMPORARY.fullmatch(name) is not None


def remove_path(path: Path) -> None:
    """Remove a file, a link or a folder tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` that a writer killed with ``kill -9`` left (its
    ``finally`` never ran); return them. An output has one writer at a time (Snakemake runs one
    job per output), so a temporary of ``path`` seen before writing it is stale."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix, stale = f".{path.name}.", []
    with os.scandir(path.parent) as entries:  # a string test first: folders of thousands of images
        names = [e.name for e in entries if e.name.startswith(prefix) and is_temporary(e.name)]
    for name in names:
        if len(name) == len(prefix) + 8:
            remove_path(path.parent / name)
            stale.append(path.parent / name)
    return stale


def check_output_path(
    path: str | Path, inputs=(), force: bool = False, kind: str = "input image", force_option: str | None = "--force"
) -> Path:
    """Check, before any work, that ``path`` can be written and is none of ``inputs``.

    A folder, a special file (``/dev/full``), an input (unless ``force``) or a folder that cannot
    be written (read-only file system, no permission: probed with a real temporary file) is an
    :class:`OutputError` naming ``path``. ``force_option``: the caller's option that allows
    replacing an input, suggested in the message (None: the caller has none).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name, e.g. {path / 'restored.png'}")
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: exists and is not a regular file; refusing to replace it")
    for source in inputs:
        if path.exists() and os.path.samefile(path, source) or path.resolve() == Path(source).resolve():
            if not force:
                hint = f" (or {force_option} to replace it)" if force_option else ""
                raise OutputError(f"{path}: is the {kind} {source}; choose another output{hint}")
    folder = path.parent
    while not folder.exists():  # atomic_path creates the missing folders: probe where it would start
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: {folder} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".grids-probe-"):
            pass
    except OSError as err:
        raise OutputError(f"{path}: cannot write in folder {folder} ({err.strerror or err})") from None
    return path


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


# The image columns of the clean and degraded manifests. They are stored relative to the
# manifest's own folder (``images/0001.png``, ``../../clean/images/0001.png``), absolute paths
# as they are, so a manifest still finds its images after results/ moves, and from any working
# directory through read_manifest.
MANIFEST_IMAGE_COLUMNS = ("path", "clean_path")


def manifest_relative(frame: pd.DataFrame, manifest_path: str | Path) -> pd.DataFrame:
    """A copy of ``frame`` with its image columns as stored: relative to the manifest's folder
    (``frame`` holds them relative to the working directory, or absolute)."""
    folder = os.path.dirname(os.path.abspath(manifest_path))
    out = frame.copy()
    for column in MANIFEST_IMAGE_COLUMNS:
        if column in out:
            out[column] = [p if os.path.isabs(p) else os.path.relpath(os.path.abspath(p), folder) for p in out[column]]
    return out


def read_manifest(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A clean or degraded manifest with its image paths ready to open: joined to the manifest's
    folder as ``path`` names it, so relative to the working directory when ``path`` is relative and
    absolute when it is absolute (``read_manifest(Path(p).resolve())`` from a notebook anywhere).

        >>> m = read_manifest("results/degraded/jpeg/manifest.parquet")
        >>> load_png(m.path[0])

    A manifest written before the paths were stored this way (relative to the working directory)
    still reads: a path that does not exist joined to the folder but does as written is kept.
    """
    frame = pd.read_parquet(path, columns=columns)
    folder = os.path.dirname(os.fspath(path))
    for column in MANIFEST_IMAGE_COLUMNS:
        if column in frame:
            frame[column] = [_manifest_path(folder, p) for p in frame[column]]
    return frame


def _manifest_path(folder: str, stored: str) -> str:
    if os.path.isabs(stored):
        return stored
    joined = os.path.normpath(os.path.join(folder, stored))
    return stored if not os.path.exists(joined) and os.path.exists(stored) else joined


_PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:72rem;margin:1rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}"
    "th,td{border:1px solid #ccc;padding:.2rem .5rem}th{background:#f3f3f3}code{background:#f6f6f6}"
)


def write_markdown(path: str | Path, text: str, html_path: str | Path | None = None) -> None:
    """A Markdown summary at ``path`` and, when ``html_path`` is given, the same as a standalone
    HTML page (Snakemake's report shows HTML inline, Markdown only as a download), both atomic."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    if html_path is None:
        return
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#")), "GRIDS")
    page = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_PAGE_STYLE}</style></head>\n<body>\n{body}</body>\n</html>\n"
    )
    with atomic_path(html_path) as tmp:
        tmp.write_text(page)


def read_parquets(paths) -> pd.DataFrame:
    """Several tables with the same columns, concatenated in order."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ink_on(rgba) -> str:
    """The text colour readable on a cell of colour ``rgba``: white on dark cells, black on light
    ones, by the cell's relative luminance (sRGB, WCAG weights)."""
    channels = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    # 0.179: where white and black have the same contrast ratio against the cell
    return "white" if luminance < 0.179 else "black"


def save_figure(fig, *paths: str | Path, dpi: int = 120) -> None:
    """Write ``fig`` atomically to each path (format from its suffix), then free it."""
    import matplotlib.pyplot as plt

    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix[1:], dpi=dpi)
    plt.close(fig)


def list_image_files(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """Files of ``folder`` (not recursive, sorted): ``(images, skipped)``.

    Images are the entries with an image extension, broken symbolic links among them included (so
    that reading one reports it by name); everything else (hidden files such as ``.DS_Store``,
    sub-folders, other files) is skipped and reported, never silently dropped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    images, skipped = [], []
    for path in sorted(folder.iterdir()):
        ok = (path.is_file() or broken_link(path) is not None) and path.suffix.lower() in IMAGE_EXTENSIONS
        (images if ok and not path.name.startswith(".") else skipped).append(path)
    if skipped:
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in skipped)
        warnings.warn(f"{folder}: skipping {len(skipped)} non-image file(s): {names}", stacklevel=2)
    return images, skipped


def unusable_files(paths) -> list[str]:
    """``path: reason`` for each of ``paths`` that is a broken link or cannot be opened for reading."""
    problems = []
    for path in paths:
        reason = broken_link(Path(path))
        if reason is None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as err:
                reason = f"cannot be read ({err.strerror or err})"
        if reason:
            problems.append(f"{path}: {reason}")
    return problems


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file's bytes (streamed: a large checkpoint is never read whole)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
