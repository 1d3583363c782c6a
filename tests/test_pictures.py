"""Picture uploads cost bounded CPU: an animation's frames count together
(habitto_accounts/pictures.py: MAX_ANIMATION_PIXELS, MAX_FRAMES)."""

import io
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from habitto_accounts import pictures
from habitto_accounts.models import Profile

pytestmark = pytest.mark.django_db


def gif_bytes(frames, size):
    images = [Image.new("L", size, (n * 37) % 256) for n in range(frames)]  # distinct: not merged
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=50)
    return out.getvalue()


def upload(client, data):
    return client.post("/api/profiles/me/picture/",
                       {"profile_picture": SimpleUploadedFile("a.gif", data, content_type="image/gif")})


def test_an_animation_bomb_is_refused_without_decoding_its_frames(make_user, client_for):
    """20 blank 1000x1000 frames: a few KB of GIF, 20 million decoded pixels (2 s to re-encode)."""
    user = make_user()
    bomb = gif_bytes(20, (1000, 1000))
    assert len(bomb) < 300_000
    started = time.process_time()
    response = upload(client_for(user), bomb)
    assert time.process_time() - started < 0.5
    assert response.status_code == 400
    assert "frames together" in response.json()["data"]["profile_picture"][0]
    assert not Profile.objects.filter(user=user).exclude(profile_picture="").exists()


def test_too_many_frames_are_refused_however_small(make_user, client_for):
    response = upload(client_for(make_user()), gif_bytes(pictures.MAX_FRAMES + 1, (2, 2)))
    assert response.status_code == 400
    assert "frames" in response.json()["data"]["profile_picture"][0]


def test_a_small_animation_is_stored_still_animated(make_user, client_for):
    user = make_user()
    response = upload(client_for(user), gif_bytes(8, (64, 64)))
    assert response.status_code == 200, response.content
    stored = Profile.objects.get(user=user).profile_picture
    with Image.open(stored.path) as image:
        assert image.format == "GIF" and image.n_frames == 8
