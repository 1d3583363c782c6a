"""Drive the real compose.yaml from tests: a throwaway project on free ports, every wait
bounded, and a check that `down -v` leaves nothing behind."""

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid

from tests.support import services
from tests.support.live import REPO_DIR, free_port, http_json

COMPOSE_FILE = REPO_DIR / "compose.yaml"
ENV_EXAMPLE = REPO_DIR / ".env.example"

def _base_images():
    """The images the stack is built from and runs, as the Dockerfile and compose.yaml name them."""
    python = re.search(r"^ARG BASE_IMAGE=(\S+)", (REPO_DIR / "Dockerfile").read_text(), re.M).group(1)
    services = re.findall(r"^\s+image:\s*\$?\{?[A-Z_]*:?-?((?:postgres|redis):[\w.]+)", COMPOSE_FILE.read_text(), re.M)
    return (python, *sorted(set(services)))


BASE_IMAGES = _base_images()
PORT_VARS = ("BACKEND_WS_PORT", "BACKEND_HTTP_PORT", "REDIS_PORT", "POSTGRES_PORT")


def run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=REPO_DIR)


def docker_status():
    """(available, why not): an engine that answers, Compose v2, and the base images."""
    if not shutil.which("docker"):
        return False, "no docker CLI on PATH (run ops/bootstrap-docker.sh as root)"
    try:
        info = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20)
        if info.returncode != 0:
            return False, f"no Docker engine answers ({info.stderr.strip()[:200]}); run ops/bootstrap-docker.sh"
        compose = run(["docker", "compose", "version", "--short"], timeout=20)
        if compose.returncode != 0:
            return False, "Compose v2 is missing (docker compose version failed); run ops/bootstrap-docker.sh"
        for image in BASE_IMAGES:
            if run(["docker", "image", "inspect", image], timeout=20).returncode == 0:
                continue
            pulled = run(["docker", "pull", "--quiet", image], timeout=180)
            if pulled.returncode != 0:
                return False, f"base image {image} is missing and cannot be pulled; run ops/bootstrap-docker.sh"
    except subprocess.TimeoutExpired as exc:
        return False, f"{' '.join(exc.cmd)} timed out"
    return True, ""


def compose_variables():
    """Every variable .env.example documents: the tests set them, the caller's shell must not."""
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


class ComposeStack:
    """One project of the real compose.yaml: `docker compose -p <unique> --env-file <tmp>`."""

    def __init__(self, workdir):
        self.project = f"habitto-test-{uuid.uuid4().hex[:8]}"
        ports = set()
        while len(ports) < len(PORT_VARS):
            ports.add(free_port())
        self.ports = dict(zip(PORT_VARS, sorted(ports)))
        self.image = f"habitto-chat:{self.project}"
        self.settings = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "BACKEND_IMAGE": self.image,
            "ACCESS_LOG": "0",
            **{name: str(port) for name, port in self.ports.items()},
        }
        self.env_file = workdir / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))
        self.env_file.chmod(0o600)
        # The caller's shell would override the env file (Compose precedence): drop it.
        drop = compose_variables() | {"DEBUG", "DATABASE_URL", "REDIS_URL"}
        self.env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("COMPOSE_")}
        self.brought_up = False

    # --- commands -----------------------------------------------------------------
    def compose(self, *args, timeout=120, check=True):
        command = ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file),
                   "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd=REPO_DIR, env=self.env)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command[2:])} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}\n--- logs ---\n{self.logs()}"
            )
        return result

    def up(self, timeout=240):
        self.brought_up = True
        self.compose("up", "--detach", "--build", "--wait", "--wait-timeout", str(timeout),
                     timeout=timeout + 600)

    def logs(self, tail=60):
        try:
            result = subprocess.run(
                ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file),
                 "-f", str(COMPOSE_FILE), "logs", "--no-color", "--tail", str(tail)],
                capture_output=True, text=True, timeout=60, cwd=REPO_DIR, env=self.env,
            )
            return result.stdout[-12000:] + result.stderr[-2000:]
        except subprocess.TimeoutExpired:
            return "(docker compose logs timed out)"

    def down(self):
        return self.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", timeout=180)

    def remove_image(self):
        run(["docker", "image", "rm", "--force", self.image], timeout=60)

    def leftovers(self):
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, command in (
            ("containers", ["docker", "ps", "--all", "--quiet", "--filter", label]),
            ("volumes", ["docker", "volume", "ls", "--quiet", "--filter", label]),
            ("networks", ["docker", "network", "ls", "--quiet", "--filter", label]),
        ):
            out = run(command, timeout=30).stdout.split()
            if out:
                found[kind] = out
        return found

    def service_states(self):
        """{service: (state, health, exit code)} from `docker compose ps --all`."""
        import json

        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        rows = json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]
        return {r["Service"]: (r["State"], r.get("Health", ""), r.get("ExitCode")) for r in rows}

    def container_id(self, service):
        return self.compose("ps", "--all", "--quiet", service).stdout.strip()

    # --- the backend ----------------------------------------------------------------
    @property
    def ws_port(self):
        return self.ports["BACKEND_WS_PORT"]

    @property
    def http_port(self):
        return self.ports["BACKEND_HTTP_PORT"]

    def http_url(self, port):
        return f"http://127.0.0.1:{port}"

    def ws_url(self, port):
        return f"ws://127.0.0.1:{port}"

    def readyz(self, port):
        try:
            return http_json("GET", f"{self.http_url(port)}/readyz", timeout=5)
        except OSError as exc:
            return None, str(exc)

    def wait_ready(self, timeout=120):
        """Both ports answer /readyz 200; returns the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        pending = {self.ws_port, self.http_port}
        last = {}
        while pending:
            for port in list(pending):
                last[port] = self.readyz(port)
                if last[port][0] == 200:
                    pending.discard(port)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready within {timeout}s: {last}\n{self.logs()}")
            time.sleep(0.5)
        return time.monotonic() - started


@contextlib.contextmanager
def running_stack(folder):
    """The real compose.yaml up for a module's tests; afterwards `down -v` and the image
    removed. Skips loudly (fails under REQUIRE_SERVICES=1) without a Docker engine."""
    available, why = docker_status()
    services.require("docker", available, why)
    stack = ComposeStack(folder)
    try:
        stack.up()
        yield stack
    finally:
        if stack.brought_up:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", timeout=180, check=False)
        stack.remove_image()
