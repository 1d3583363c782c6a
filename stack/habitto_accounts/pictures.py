"""Profile picture uploads: a size limit checked before parsing, a real image in an
allowed format (Pillow), re-encoded without metadata, and a random file name so
uploads cannot choose paths.

Re-encoding costs CPU in proportion to the pixels decoded, and Pillow decodes every frame
of an animation at the full canvas size: a 230 KB GIF of 60 blank 2000x2000 frames is
240 million pixels (25 s of CPU). So the pixels of all frames together are bounded, and
the number of frames (each costs a fixed overhead however small it is)."""

import io
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from drf_spectacular.utils import extend_schema_field
from PIL import Image, ImageOps
from rest_framework import serializers

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # one still image: a 40 MP photo re-encodes in about 0.5 s
MAX_ANIMATION_PIXELS = 4_000_000  # all frames together, e.g. 16 frames of 500x500: ~0.3 s
MAX_FRAMES = 100


@extend_schema_field({"type": "string", "format": "binary"})  # a multipart file part
class PictureField(serializers.ImageField):
    default_error_messages = {
        "too_large": "The picture is larger than {limit} bytes.",
        "format": "The picture must be PNG, JPEG, GIF or WebP.",
        "pixels": "The picture has too many pixels.",
        "animation": (
            f"An animated picture may have at most {MAX_FRAMES} frames and "
            f"{MAX_ANIMATION_PIXELS:,} pixels in all its frames together."
        ),
    }

    def to_internal_value(self, data):
        size = getattr(data, "size", None)
        if size is not None and size > settings.MAX_UPLOAD_BYTES:
            self.fail("too_large", limit=settings.MAX_UPLOAD_BYTES)
        file = super().to_internal_value(data)  # Pillow opens and verifies it
        image = getattr(file, "image", None)
        if image is None or image.format not in ALLOWED_FORMATS:
            self.fail("format")
        width, height = image.size
        if width * height > MAX_PIXELS:
            self.fail("pixels")
        frames = _frame_count(file)
        if frames > 1 and (frames > MAX_FRAMES or frames * width * height > MAX_ANIMATION_PIXELS):
            self.fail("animation")
        return ContentFile(
            _pixels_only(file, image.format), name=f"{uuid.uuid4().hex}.{ALLOWED_FORMATS[image.format]}"
        )


def _frame_count(file):
    """Frames in the file, read from frame headers without decoding any (a 2 MB GIF of
    tiny frames, the worst case, takes about 0.05 s per 10,000 frames)."""
    file.seek(0)
    with Image.open(file) as image:
        return getattr(image, "n_frames", 1)


def _pixels_only(file, image_format):
    """Re-encode the image: phone photos carry EXIF (GPS position, device, time) that every
    other user could download with the picture."""
    file.seek(0)
    with Image.open(file) as image:
        animated = getattr(image, "is_animated", False)
        if not animated:
            image = ImageOps.exif_transpose(image)  # keep the orientation the EXIF gave it
        if image_format == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, format=image_format, save_all=animated)
    return out.getvalue()


def replace_picture(profile, file):
    """Store the new picture and remove the old file; callers run this in a transaction
    and the old file is only deleted once it commits."""
    old_name = profile.profile_picture.name if profile.profile_picture else None
    storage = profile.profile_picture.storage
    profile.profile_picture.save(file.name, file, save=False)
    profile.save(update_fields=["profile_picture", "updated_at"])
    if old_name and old_name != profile.profile_picture.name:
        transaction.on_commit(lambda: storage.delete(old_name))
