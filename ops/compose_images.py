"""The images the resolved Compose configuration needs, and the stand-in recipe for each.

    python3 ops/compose_images.py              # one image per line
    python3 ops/compose_images.py --standins   # "<recipe> <image>" per line; exit 1 naming
                                               # any image no recipe of ops/standins/ provides
    python3 ops/compose_images.py --missing    # the needed images this engine lacks

"Needed" means: every service image of `docker compose --profile '*' config` (all
profiles, so the load tester's and any optional service's images count) except the
images Compose builds itself, plus the base images (`FROM`) of those builds with their
build arguments applied. The names come from wherever the user set them (.env, the shell),
resolved by Compose itself, so whatever image a user names is what gets checked.

Standard library only: ops/bootstrap-docker.sh runs it as root before any venv exists.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[1]
STANDINS_DIR = REPO_DIR / "ops" / "standins"
# Interpolation needs the required secrets to be set; they never name an image.
PLACEHOLDERS = {"SECRET_KEY": "placeholder-for-image-resolution", "POSTGRES_PASSWORD": "placeholder"}


class ImageError(Exception):
    """An image cannot be resolved or has no stand-in; the message says what to do."""


def compose_config(project_dir=REPO_DIR, env_file=None, env=None, timeout=60):
    """`docker compose config --format json` with every profile enabled, as a dict."""
    project_dir = Path(project_dir)
    if env_file is None:
        dot_env = project_dir / ".env"
        env_file = dot_env if dot_env.exists() else project_dir / ".env.example"
    full_env = dict(os.environ if env is None else env)
    for name, value in PLACEHOLDERS.items():
        full_env.setdefault(name, value)
    command = ["docker", "compose", "--project-directory", str(project_dir), "--env-file", str(env_file),
               "-f", str(project_dir / "compose.yaml"), "--profile", "*", "config", "--format", "json"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=full_env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageError(f"`docker compose config` failed: {exc}") from None
    if result.returncode != 0:
        raise ImageError(f"`docker compose config` failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def needed_images(config):
    """Sorted image names: service images not built here, and the bases of the builds."""
    services = config.get("services", {})
    built = {svc.get("image") for svc in services.values() if svc.get("build")}
    images = set()
    for name, svc in services.items():
        build = svc.get("build")
        if build:
            images.update(build_base_images(build, name))
        elif svc.get("image") and svc["image"] not in built:
            images.add(svc["image"])
    return sorted(images)


def build_base_images(build, service="?"):
    """The FROM images of a build's Dockerfile, ARGs resolved (build args win over defaults)."""
    context = Path(build.get("context", "."))
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    args = {k: v for k, v in (build.get("args") or {}).items() if v is not None}
    defaults, stages, images = {}, set(), []
    for line in dockerfile.read_text().splitlines():
        arg = re.match(r"\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?", line, re.I)
        if arg and not images:  # only ARGs before the first FROM are visible to FROM lines
            defaults[arg.group(1)] = arg.group(2) or ""
            continue
        frm = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if not frm:
            continue
        values = {**defaults, **args}
        image = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: values.get(m.group(1), ""), frm.group(1))
        if not image:
            raise ImageError(f"service {service}: {dockerfile} has `{frm.group(1)}` with no value "
                             "(is PYTHON_BASE_IMAGE set? it is named in .env.example)")
        if image not in stages and image != "scratch":
            images.append(image)
        if frm.group(2):
            stages.add(frm.group(2))
    return images


def split_image(image):
    """'docker.io/library/python:3.11-slim' -> ('python', '3.11-slim')."""
    if "@" in image:
        raise ImageError(f"{image}: a digest names one exact upstream image; no local stand-in can be it")
    name, tag = image, "latest"
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    return name.rsplit("/", 1)[-1], tag


def recipes():
    """{recipe name: the upstream version it provides} from ops/standins/*/provides."""
    found = {}
    for folder in sorted(STANDINS_DIR.iterdir()):
        provides = folder / "provides"
        if provides.is_file():
            lines = [ln.strip() for ln in provides.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            found[folder.name] = lines[0]
    return found


def standin_for(image, known=None):
    """The recipe that stands in for `image`, or ImageError saying why none does."""
    known = recipes() if known is None else known
    repository, tag = split_image(image)
    if repository not in known:
        raise ImageError(
            f"{image}: no stand-in recipe for repository {repository!r} (ops/standins/ has "
            f"{', '.join(sorted(known))}); pull the image on a machine with registry access "
            f"(docker save | docker load) or add a recipe")
    provided = known[repository]
    version = re.match(r"v?(\d+(?:\.\d+)*)", tag)  # "7.0-bookworm", "v2.42.0" (prom/prometheus)
    if version and not (provided == version.group(1) or provided.startswith(version.group(1) + ".")):
        raise ImageError(
            f"{image}: the {repository} stand-in is Debian bookworm's {repository} {provided}, not "
            f"{version.group(1)}; name a {provided} tag in .env (e.g. {repository}:{provided}) or pull the real image")
    return repository


def present(image):
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30).returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standins", action="store_true", help="print '<recipe> <image>' per needed image")
    mode.add_argument("--missing", action="store_true", help="print the needed images this engine lacks")
    parser.add_argument("--env-file", help="default: .env, or .env.example when there is no .env")
    parser.add_argument("--project-directory", default=str(REPO_DIR))
    options = parser.parse_args(argv)
    try:
        images = needed_images(compose_config(options.project_directory, options.env_file))
        if options.standins:
            known = recipes()
            errors, lines = [], []
            for image in images:
                try:
                    lines.append(f"{standin_for(image, known)} {image}")
                except ImageError as exc:
                    errors.append(str(exc))
            if errors:
                raise ImageError("\n".join(errors))
            images = lines
        elif options.missing:
            images = [image for image in images if not present(image)]
    except ImageError as exc:
        print(f"compose_images: {exc}", file=sys.stderr)
        return 1
    for line in images:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
