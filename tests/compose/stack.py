"""Drive the real compose.yaml from tests: a throwaway project on free ports, every wait
bounded, and a check that `down -v` leaves nothing behind. `NewcomerStack` takes the
README's path instead: a clean clone, no .env, `make up`."""

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid

import pytest

from ops import compose_images
from tests.support import services
from tests.support.live import REPO_DIR, free_port, free_port_range, http_json

ENV_EXAMPLE = REPO_DIR / ".env.example"

PORT_VARS = ("BACKEND_WS_PORT", "BACKEND_HTTP_PORT", "REDIS_PORT", "POSTGRES_PORT", "PROMETHEUS_PORT")
MAX_BACKENDS = 3  # replica ports kept free from BACKEND_PORT_BASE on (the scaled profile)


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
        # The images .env.example names (the one place they are written), as Compose resolves them.
        base_images = compose_images.needed_images(compose_images.compose_config(REPO_DIR, ENV_EXAMPLE, env=clean_env()))
        for image in base_images:
            if run(["docker", "image", "inspect", image], timeout=20).returncode == 0:
                continue
            pulled = run(["docker", "pull", "--quiet", image], timeout=180)
            if pulled.returncode != 0:
                return False, f"base image {image} is missing and cannot be pulled; run ops/bootstrap-docker.sh"
    except subprocess.TimeoutExpired as exc:
        return False, f"{' '.join(exc.cmd)} timed out"
    except compose_images.ImageError as exc:
        return False, str(exc)
    return True, ""


def example_settings():
    """{variable: value} of .env.example (the secrets are empty there)."""
    settings = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"\s*([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            settings[match.group(1)] = match.group(2).strip()
    return settings


def compose_variables():
    """Every variable .env.example documents: the tests set them, the caller's shell must not."""
    return set(example_settings())


class ComposeStack:
    """One project of the real compose.yaml: `docker compose -p <unique> --env-file <tmp>`."""

    def __init__(self, workdir):
        self.project = f"habitto-test-{uuid.uuid4().hex[:8]}"
        ports = set()
        while len(ports) < len(PORT_VARS):
            ports.add(free_port())
        self.ports = dict(zip(PORT_VARS, sorted(ports)))
        self.ports["BACKEND_PORT_BASE"] = free_port_range(MAX_BACKENDS)
        self.image = f"habitto-chat:{self.project}"
        self.settings = {
            **{k: v for k, v in example_settings().items() if v},  # the image names, among others
            "SECRET_KEY": secrets.token_urlsafe(50),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "BACKEND_IMAGE": self.image,
            "ACCESS_LOG": "0",
            **{name: str(port) for name, port in self.ports.items()},
        }
        self.env_file = workdir / "stack.env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))
        self.env_file.chmod(0o600)
        self.env = clean_env()
        self.repo_dir = REPO_DIR
        self.brought_up = False

    # --- commands -----------------------------------------------------------------
    def compose_command(self, *args):
        return ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file),
                "-f", str(self.repo_dir / "compose.yaml"), *args]

    def compose(self, *args, timeout=120, check=True):
        command = self.compose_command(*args)
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                cwd=self.repo_dir, env=self.env)
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
                self.compose_command("logs", "--no-color", "--tail", str(tail)),
                capture_output=True, text=True, timeout=60, cwd=self.repo_dir, env=self.env,
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


def clean_env():
    """This process's environment without the stack's variables: the caller's shell would
    override the env file (Compose precedence)."""
    drop = compose_variables() | {"DEBUG", "DATABASE_URL", "REDIS_URL", "BACKENDS", "MONITORING"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("COMPOSE_")}


class NewcomerStack(ComposeStack):
    """The README's path: `git clone`, then `make up` with no .env, nothing edited.

    The clone is of this checkout's HEAD commit (uncommitted changes are not in it).
    Only what must differ from a newcomer's machine is set, in the environment (which
    wins over .env): the project name, free ports and the image tag, so the test
    collides with nothing. .env itself is `make up`'s work; `make_output` is what it said.
    """

    def __init__(self, workdir, make_args=()):
        super().__init__(workdir)
        self.make_args = list(make_args)  # e.g. BACKENDS=3 MONITORING=1
        self.repo_dir = workdir / "clone"
        head = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        for command in (["git", "clone", "--quiet", "--no-checkout", str(REPO_DIR), str(self.repo_dir)],
                        ["git", "-C", str(self.repo_dir), "checkout", "--quiet", "--detach", head]):
            subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
        self.env_file = self.repo_dir / ".env"
        self.settings = {"BACKEND_IMAGE": self.image, "ACCESS_LOG": "0",
                         **{name: str(port) for name, port in self.ports.items()}}
        self.env.update(self.settings, COMPOSE_PROJECT_NAME=self.project)
        self.make_output = ""

    def up(self, timeout=240):
        assert not self.env_file.exists(), "a fresh clone has no .env"
        self.brought_up = True
        result = subprocess.run(["make", "up", f"UP_TIMEOUT={timeout}", *self.make_args], capture_output=True, text=True,
                                timeout=timeout + 600, cwd=self.repo_dir, env=self.env)
        self.make_output = result.stdout + result.stderr
        if result.returncode != 0:
            raise AssertionError(f"make up exited {result.returncode}:\n{self.make_output[-5000:]}\n"
                                 f"--- logs ---\n{self.logs()}")


class ScaledStack(NewcomerStack):
    """`make up BACKENDS=n MONITORING=1` on a clean clone: n backend replicas behind the
    nginx proxy (which owns ws_port and http_port) and Prometheus."""

    def __init__(self, workdir, backends=MAX_BACKENDS):
        assert 1 < backends <= MAX_BACKENDS
        super().__init__(workdir, [f"BACKENDS={backends}", "MONITORING=1"])
        self.backends = backends

    def compose_command(self, *args):  # every profile's services are visible to ps, exec, logs
        return ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file),
                "-f", str(self.repo_dir / "compose.yaml"), "--profile", "*", *args]

    @property
    def replica_ports(self):
        base = self.ports["BACKEND_PORT_BASE"]
        return list(range(base, base + self.backends))

    @property
    def prometheus_url(self):
        return f"http://127.0.0.1:{self.ports['PROMETHEUS_PORT']}"

    def replica_containers(self):
        """{port: container id} of the `backend` replicas, from the port each one names."""
        found = {}
        for container in self.compose("ps", "--quiet", "backend").stdout.split():
            port = run(["docker", "exec", container, "cat", "/app/var/port"], timeout=30).stdout.strip()
            found[int(port) if port.isdigit() else port] = container
        return found


@contextlib.contextmanager
def running_stack(folder, newcomer=False, backends=1):
    """The real compose.yaml up for a module's tests (with `newcomer`, a clean clone and
    `make up`; with backends > 1, the scaled and monitoring profiles that way); afterwards
    `down -v` and the image removed. Skips loudly (fails under REQUIRE_SERVICES=1)
    without a Docker engine."""
    available, why = docker_status()
    services.require("docker", available, why)
    if backends > 1:
        stack = ScaledStack(folder, backends)
    else:
        stack = NewcomerStack(folder) if newcomer else ComposeStack(folder)
    try:
        stack.up()
        yield stack
    finally:
        if stack.brought_up:
            stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", timeout=180, check=False)
        stack.remove_image()


def scaled_stack_fixture(backends):
    """A module-scoped `stack` fixture: the scaled stack with `backends` replicas."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory):
        with running_stack(tmp_path_factory.mktemp("scaled"), backends=backends) as running:
            yield running

    return stack
