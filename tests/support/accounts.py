"""Helpers of the accounts tests: the envelope, logging in, small images."""

import io
import os

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

PASSWORD = "s3cret-Passw0rd!"  # what the make_user fixture sets


def data_of(response, status):
    """Assert the status and the envelope; return its payload."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"success", "message", "data"}
    assert body["success"] is (status < 400)
    assert isinstance(body["message"], str) and body["message"]
    return body["data"]


def login(username, password=PASSWORD):
    return data_of(
        APIClient().post("/api/login/", {"username": username, "password": password}, format="json"), 200
    )


def bearer(access):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def png_bytes(size=(8, 8), noise=False):
    image = (
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
        if noise
        else Image.new("RGB", size, "red")
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def upload(content, name="me.png", content_type="image/png"):
    return SimpleUploadedFile(name, content, content_type=content_type)
