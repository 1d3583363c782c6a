"""`make up`'s first steps without starting anything: .env created from .env.example with
fresh secrets, and the images the resolved Compose configuration names mapped to the
stand-in recipes of ops/standins/ (ops/compose_images.py, what ops/bootstrap-docker.sh runs)."""

import shutil
import stat
import subprocess
import sys

import pytest

from ops import compose_images
from tests.support import services
from tests.support.live import REPO_DIR

CREATE_ENV = REPO_DIR / "ops" / "create-env.sh"
EXAMPLE = REPO_DIR / ".env.example"


def create_env(folder):
    return subprocess.run([str(CREATE_ENV), ".env", str(EXAMPLE)], cwd=folder, capture_output=True,
                          text=True, timeout=30)


def read_env(path):
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line[:1].isupper())


def test_create_env_fills_fresh_secrets_private_and_says_where(tmp_path):
    first = create_env(tmp_path)
    assert first.returncode == 0, first.stderr
    env_file = tmp_path / ".env"
    assert f"Created {env_file} from {EXAMPLE}" in first.stdout
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = read_env(env_file)
    assert len(values["SECRET_KEY"]) >= 50 and len(values["POSTGRES_PASSWORD"]) >= 32
    assert values["POSTGRES_PASSWORD"].isalnum()  # goes into DATABASE_URL unquoted
    assert values["SECRET_KEY"] not in first.stdout
    assert {k: v for k, v in values.items() if k not in ("SECRET_KEY", "POSTGRES_PASSWORD")} == \
        {k: v for k, v in read_env(EXAMPLE).items() if k not in ("SECRET_KEY", "POSTGRES_PASSWORD")}
    assert not list(tmp_path.glob(".env.tmp*"))

    other = tmp_path / "other"
    other.mkdir()
    create_env(other)
    assert read_env(other / ".env")["SECRET_KEY"] != values["SECRET_KEY"]  # fresh every time


def test_create_env_keeps_an_existing_env_and_appends_only_new_settings(tmp_path):
    """A .env made before .env.example gained a setting (an image of a new profile) gets
    that setting appended; its own lines, secrets included, stay as they are."""
    env_file = tmp_path / ".env"
    example = read_env(EXAMPLE)
    mine = "SECRET_KEY=mine\nPOSTGRES_IMAGE=my/postgres:15\n"
    env_file.write_text(mine)
    again = create_env(tmp_path)
    assert again.returncode == 0, again.stderr
    text = env_file.read_text()
    assert text.startswith(mine)
    values = read_env(env_file)
    assert values["SECRET_KEY"] == "mine" and values["POSTGRES_IMAGE"] == "my/postgres:15"
    assert "POSTGRES_PASSWORD" not in values  # a secret is never made up for an existing volume
    assert values["NGINX_IMAGE"] == example["NGINX_IMAGE"]
    assert set(values) == set(example) - {"POSTGRES_PASSWORD"}
    assert "NGINX_IMAGE" in again.stdout and "POSTGRES_IMAGE" not in again.stdout

    unchanged = create_env(tmp_path)
    assert unchanged.returncode == 0 and unchanged.stdout == ""
    assert env_file.read_text() == text


def test_images_are_named_once_in_env_example():
    """No Dockerfile or compose file carries its own default image name."""
    example = read_env(EXAMPLE)
    assert example["PYTHON_BASE_IMAGE"].startswith("python:")
    for path in ("Dockerfile", "loadtests/Dockerfile", "compose.yaml", "loadtests/compose.yaml"):
        text = (REPO_DIR / path).read_text()
        for name in ("PYTHON_BASE_IMAGE", "POSTGRES_IMAGE", "REDIS_IMAGE", "NGINX_IMAGE", "PROMETHEUS_IMAGE"):
            assert example[name] not in text, (path, example[name])


def test_standin_mapping_by_repository_and_version():
    known = {"python": "3.11", "postgres": "15", "redis": "7.0"}
    assert compose_images.standin_for("python:3.11-slim", known) == "python"
    assert compose_images.standin_for("docker.io/library/python:3.11", known) == "python"
    assert compose_images.standin_for("redis:7", known) == "redis"
    assert compose_images.standin_for("redis:7.0-bookworm", known) == "redis"
    assert compose_images.standin_for("postgres", known) == "postgres"  # latest: whatever we have
    with pytest.raises(compose_images.ImageError, match=r"python:3\.12-slim: the python stand-in is .* 3\.11, not 3\.12"):
        compose_images.standin_for("python:3.12-slim", known)
    with pytest.raises(compose_images.ImageError, match=r"redis:7\.2: .*redis 7\.0, not 7\.2"):
        compose_images.standin_for("redis:7.2", known)
    with pytest.raises(compose_images.ImageError, match=r"mysql:8: no stand-in recipe for repository 'mysql'"):
        compose_images.standin_for("mysql:8", known)
    # prom/prometheus tags carry a "v"; the version is still checked.
    known["prometheus"] = "2.42.0"
    assert compose_images.standin_for("prom/prometheus:v2.42.0", known) == "prometheus"
    with pytest.raises(compose_images.ImageError, match=r"prometheus 2\.42\.0, not 2\.53"):
        compose_images.standin_for("prom/prometheus:v2.53.0", known)
    with pytest.raises(compose_images.ImageError, match="digest"):
        compose_images.standin_for("python@sha256:" + "0" * 64, known)
    assert set(compose_images.recipes()) >= {"python", "postgres", "redis", "nginx", "prometheus"}


def test_needed_images_skip_built_images_and_resolve_build_bases(tmp_path):
    (tmp_path / "Dockerfile").write_text("ARG BASE=python:3.11-slim\nFROM ${BASE} AS builder\nFROM builder\n"
                                         "FROM $BASE\nCOPY --from=builder / /\n")
    config = {"services": {
        "app": {"image": "mine:1", "build": {"context": str(tmp_path), "args": {"BASE": "python:3.11"}}},
        "app2": {"image": "mine:1"},
        "db": {"image": "postgres:15"},
    }}
    assert compose_images.needed_images(config) == ["postgres:15", "python:3.11"]
    config["services"]["app"]["build"]["args"] = {}
    assert compose_images.needed_images(config) == ["postgres:15", "python:3.11-slim"]


def test_resolved_configuration_follows_the_env_file(tmp_path):
    """What the bootstrap builds is what the configuration names, from .env or the shell."""
    if not shutil.which("docker") or subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                    timeout=30).returncode != 0:
        services.require("docker", False, "no docker CLI with Compose v2 (run ops/bootstrap-docker.sh)")
    script = [sys.executable, str(REPO_DIR / "ops" / "compose_images.py")]
    shipped = subprocess.run([*script, "--standins", "--env-file", str(EXAMPLE)], capture_output=True,
                             text=True, timeout=60)
    assert shipped.returncode == 0, shipped.stderr
    example = read_env(EXAMPLE)
    assert set(shipped.stdout.splitlines()) == {
        f"python {example['PYTHON_BASE_IMAGE']}", f"postgres {example['POSTGRES_IMAGE']}",
        f"redis {example['REDIS_IMAGE']}", f"nginx {example['NGINX_IMAGE']}",
        f"prometheus {example['PROMETHEUS_IMAGE']}"}  # the scaled and monitoring profiles' too

    custom = tmp_path / "custom.env"
    custom.write_text(EXAMPLE.read_text() + "PYTHON_BASE_IMAGE=python:3.11\nREDIS_IMAGE=mysql:8\n")
    result = subprocess.run([*script, "--standins", "--env-file", str(custom)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "mysql:8: no stand-in recipe for repository 'mysql'" in result.stderr
    listed = subprocess.run([*script, "--env-file", str(custom)], capture_output=True, text=True, timeout=60)
    assert "python:3.11\n" in listed.stdout and "python:3.11-slim" not in listed.stdout
