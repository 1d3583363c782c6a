"""Profile picture uploads: a size limit checked before parsing, a real image in an
allowed format (Pillow), re-encoded without metadata, and a random file name so
uploads cannot choose paths."""

import io
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image, ImageOps
from rest_framework import serializers

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp"}
MAX_PIXELS = 40_000_000  # far beyond any avatar; refuses decompression bombs early


class PictureField(serializers.ImageField):
    default_error_messages = {
        "too_large": "The picture is larger than {limit} bytes.",
        "format": "The picture must be PNG, JPEG, GIF or WebP.",
        "pixels": "The picture has too many pixels.",
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
        return ContentFile(
            _pixels_only(file, image.format), name=f"{uuid.uuid4().hex}.{ALLOWED_FORMATS[image.format]}"
        )


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
