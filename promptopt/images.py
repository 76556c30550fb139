"""Image inputs: what a task's image column becomes, how it reaches a model, how it is kept.

An input field named `image` or `images`, or ending in `_image` or `_images`, holds images: a
file name relative to the task's image folder (`source.images`, by default the folder of its data
files), a path, an embedded `data:image/...;base64,` URL, or a list of these (several images per
item). Each becomes an `ImageRef`: a string `"<name> sha256:<digest>"` (so an example's inputs stay
JSON and a changed image changes its item's key) that also carries the bytes' location. A
program hands it to DSPy as `dspy.Image` (`as_dspy`); what is stored of a call replaces the bytes
with the same `[image <name> sha256:<digest>]` text (`placeholder`), so the store holds each image
once, in the task's folder, never as base64 in every record.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from promptopt.errors import UserError

# the formats providers take, by their first bytes
MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png", b"GIF87a": "image/gif",
         b"GIF89a": "image/gif", b"RIFF": "image/webp"}  # fmt: skip
MAX_BYTES = 20 * 1024 * 1024  # OpenAI's and Anthropic's per-image limit is about this size
DIGEST_CHARS = 16
_DATA_URL = re.compile(r"^data:(image/[a-z+.-]+);base64,(.*)$", re.S)


def is_image_field(name: str) -> bool:
    return name in ("image", "images") or name.endswith(("_image", "_images"))


class ImageRef(str):
    """One image of an item: its text form names it and its content digest; `data()` gives its bytes."""

    path: Path | None
    embedded: bytes | None
    mime: str
    digest: str

    def __new__(cls, name: str, digest: str, mime: str, path: Path | None = None, embedded: bytes | None = None):
        ref = super().__new__(cls, f"{name} sha256:{digest}")
        ref.path, ref.embedded, ref.mime, ref.digest = path, embedded, mime, digest
        return ref

    @property
    def name(self) -> str:
        return str(self).rsplit(" sha256:", 1)[0]

    def data(self) -> bytes:
        return self.embedded if self.embedded is not None else Path(self.path).read_bytes()

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data()).decode()}"

    def __reduce__(self):  # pickled across processes (DSPy's parallel evaluators) as itself
        return (ImageRef, (self.name, self.digest, self.mime, self.path, self.embedded))


def _mime(data: bytes) -> str | None:
    mime = next((m for magic, m in MAGIC.items() if data.startswith(magic)), None)
    if mime == "image/webp" and data[8:12] != b"WEBP":
        return None
    return mime


def _checked(data: bytes, where: str) -> str:
    """The image's MIME type, or one sentence on why these bytes are not an image a model can take."""
    if len(data) > MAX_BYTES:
        raise UserError(f"{where} is {len(data) / 1e6:.1f} MB; an image may be at most {MAX_BYTES // 2**20} MB.")
    mime = _mime(data)
    if mime is None:
        raise UserError(f"{where} is not a JPEG, PNG, GIF or WebP image (its first bytes say otherwise).")
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception as exc:  # a truncated or corrupt file: PIL says which way
        raise UserError(f"{where} cannot be read as an image ({type(exc).__name__}: {str(exc)[:80]}).") from None
    return mime


@lru_cache(maxsize=8192)
def _from_file(path: Path, mtime_ns: int, size: int) -> tuple[str, str]:
    """(digest, mime) of an image file, read once per version of the file."""
    data = path.read_bytes()
    mime = _checked(data, f"Image file {path}")
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS], mime


def image_ref(value: Any, folder: Path, where: str, inside: Path | None = None) -> ImageRef:
    """One image from a task cell: a data URL, an absolute path, or a name relative to `folder`;
    with `inside`, a path outside that folder is refused (promptopt.limits.confined)."""
    if isinstance(value, ImageRef):
        return value
    if isinstance(value, bytes):  # an app's image bytes
        return ImageRef("embedded", hashlib.sha256(value).hexdigest()[:DIGEST_CHARS], _checked(value, where), embedded=value)
    if hasattr(value, "url") or hasattr(value, "save"):  # a dspy.Image, or a PIL image
        value = value.url if hasattr(value, "url") else _pil_bytes(value)
        return image_ref(value, folder, where, inside)
    text = str(value).strip()
    found = _DATA_URL.match(text)
    if found:
        try:
            data = base64.b64decode(found.group(2), validate=False)
        except (binascii.Error, ValueError):
            raise UserError(f"{where}: an embedded image is not valid base64.") from None
        mime = _checked(data, f"{where}: an embedded image")
        return ImageRef("embedded", hashlib.sha256(data).hexdigest()[:DIGEST_CHARS], mime, embedded=data)
    if not text or "\x00" in text:
        raise UserError(f"{where}: an image cell is empty or not a file name; give a file name, a path or a data: URL.")
    path = Path(text) if Path(text).is_absolute() else folder / text
    if inside is not None:
        from promptopt.limits import confined

        confined(path, inside, f"{where}: an image")
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"{where}: image file {path} does not exist.") from None
    if not path.is_file():
        raise UserError(f"{where}: image {path} is not a file.")
    digest, mime = _from_file(path.resolve(), stat.st_mtime_ns, stat.st_size)
    return ImageRef(Path(text).name, digest, mime, path=path.resolve())


def _pil_bytes(img) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def image_refs(
    value: Any, folder: Path, where: str, many: bool = False, inside: Path | None = None
) -> ImageRef | list[ImageRef]:
    """A cell's image, or with `many` (an input named images or *_images) its list of images (a
    list, the JSON text of one, or one image)."""
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if not isinstance(value, list | tuple):
        return [image_ref(value, folder, where, inside)] if many else image_ref(value, folder, where, inside)
    if not many:
        raise UserError(
            f"{where} holds a list of {len(value)} images for an input that takes one; name the input images "
            "(or *_images) to send several."
        )
    if not value:
        raise UserError(f"{where}: an image list is empty; give at least one image.")
    return [image_ref(v, folder, where, inside) for v in value]


def refs_in(inputs: dict[str, Any]) -> list[ImageRef]:
    """Every image of an example's inputs, in field order."""
    out: list[ImageRef] = []
    for value in inputs.values():
        if isinstance(value, ImageRef):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, ImageRef))
    return out


def digests(inputs: dict[str, Any]) -> list[str]:
    return [ref.digest for ref in refs_in(inputs)]


def as_dspy(value: Any) -> Any:
    """An image input as a DSPy program takes it (`dspy.Image`): an item's ImageRef, a saved demo's
    data URL or `{"url": ...}`, or what an app passes (a path, bytes, a PIL image); lists image by image."""
    import dspy

    if isinstance(value, list):
        return [as_dspy(v) for v in value]
    if isinstance(value, dspy.Image):
        return value
    if isinstance(value, dict) and set(value) == {"url"}:
        value = value["url"]
    if isinstance(value, str) and value.startswith("data:"):
        return dspy.Image(url=value)
    return dspy.Image(url=image_ref(value, Path.cwd(), "Image argument").data_url())


def portable(value: Any) -> Any:
    """An image input as saved state keeps it: its data URL (a saved program carries its demos' images)."""
    if isinstance(value, list):
        return [portable(v) for v in value]
    return value.data_url() if isinstance(value, ImageRef) else value


def message_content(text: str, refs: list[ImageRef]) -> str | list[dict]:
    """A chat message's content: the text, then each image as the provider's image part."""
    if not refs:
        return text
    return [{"type": "text", "text": text}, *({"type": "image_url", "image_url": {"url": r.data_url()}} for r in refs)]


def _url_digest(url: str) -> str | None:
    """The content digest of a data URL's image, None for any other URL."""
    found = _DATA_URL.match(url or "")
    if not found:
        return None
    try:
        return hashlib.sha256(base64.b64decode(found.group(2))).hexdigest()[:DIGEST_CHARS]
    except (binascii.Error, ValueError):
        return None


def placeholder(url: str) -> str:
    """What the store keeps of an image part: its digest (and the bytes stay out of every record)."""
    digest = _url_digest(url)
    return f"[image sha256:{digest}]" if digest else f"[image {(url or '')[:200]}]"


def sent_digests(body: dict) -> list[str]:
    """The digests of the images in a chat request body, in order (for scripted servers and tests)."""
    out = []
    for m in body.get("messages") or []:
        content = m.get("content")
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                digest = _url_digest((part.get("image_url") or {}).get("url", ""))
                if digest:
                    out.append(digest)
    return out
