"""Compose services' state and health through the Docker SDK, on this machine or over SSH.

Locally the SDK talks to the engine named by DOCKER_HOST (default: the engine's unix
socket). On an SSH host it runs `docker system dial-stdio` over the Fabric connection,
exactly what `docker -H ssh://host` does, so the engine socket is never exposed.

No Docker on the host (no CLI, no engine) or no container of the Compose project: the
check does not apply (N/A), since the stack may run without Docker.
"""

import contextlib

from .results import critical, not_applicable, ok, unknown, warning

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
# The engine's version when talking over SSH is asked first; this is the floor we speak.
MIN_API_VERSION = "1.41"


class DockerUnavailable(Exception):
    """No Docker engine on the host: the Compose check does not apply."""


def compose_services(ctx):
    """compose:<service> per service of the project (or one `compose` line when N/A)."""
    cfg = ctx.cfg
    try:
        by_service = project_services(ctx)
    except DockerUnavailable as exc:
        return [not_applicable("compose", str(exc))]
    except EngineError as exc:
        return [unknown("compose", str(exc))]
    missing = [s for s in cfg.compose_services if s not in by_service]
    if not by_service and not missing:
        return [not_applicable(
            "compose", f"no container of Compose project {cfg.compose_project!r} here "
            "(the stack does not run in Docker on this host)")]
    results = [_service_result(service, items) for service, items in sorted(by_service.items())]
    results += [
        critical(f"compose:{s}", f"service {s} of project {cfg.compose_project!r} has no container")
        for s in missing
    ]
    return results


def discover_backends(ctx, client=None):
    """The backends of the scaled Compose stack: one port each, backend_port_base .. +count-1
    for the containers of service `backend_service` (running or not: a stopped one is a
    backend that is down). () when there is no Docker, no such service or discovery is off."""
    cfg = ctx.cfg
    if not cfg.backend_service:
        return ()
    try:
        containers = project_services(ctx, client).get(cfg.backend_service, [])
    except (DockerUnavailable, EngineError):
        return ()  # the compose check reports why
    return tuple(("127.0.0.1", cfg.backend_port_base + i) for i in range(len(containers)))


class EngineError(Exception):
    """The engine answered something unexpected: the Compose check is UNKNOWN."""


def project_services(ctx, client=None):
    """{service: [container]} of the Compose project, listed once per host run (the backend
    discovery and the compose check share it); raises DockerUnavailable or EngineError."""
    if "compose" not in ctx.memo:
        try:
            ctx.memo["compose"] = _list_project(ctx, client)
        except (DockerUnavailable, EngineError) as exc:
            ctx.memo["compose"] = exc
    listed = ctx.memo["compose"]
    if isinstance(listed, Exception):
        raise listed
    return listed


def _list_project(ctx, client=None):
    own_client = client is None
    if own_client:
        try:
            client = _client(ctx.target, ctx.timeout("docker"))
        except DockerUnavailable:
            raise
        except Exception as exc:  # the engine answered something unexpected
            raise EngineError(f"Docker engine check failed: {type(exc).__name__}: {exc}") from None
    try:
        try:
            # sparse: one API call for the whole list (not one inspect per container, each a
            # round trip through SSH); only exited containers are inspected (restart policy).
            containers = client.containers.list(
                all=True, sparse=True, filters={"label": f"{PROJECT_LABEL}={ctx.cfg.compose_project}"}
            )
            for container in containers:
                container.attrs = _full_state(container)
        except Exception as exc:
            raise EngineError(f"cannot list containers: {type(exc).__name__}: {exc}") from None
        by_service = {}
        for container in containers:
            labels = container.attrs.get("Labels") or (container.attrs.get("Config") or {}).get("Labels") or {}
            if labels.get(ONEOFF_LABEL) == "True":
                continue  # `docker compose run` one-offs are not services
            service = labels.get(SERVICE_LABEL, container.short_id)
            by_service.setdefault(service, []).append(container)
        return by_service
    finally:
        if own_client:
            with contextlib.suppress(Exception):
                client.close()


def _full_state(container):
    """Inspect-shaped attrs from a sparse list entry; an exited container is inspected."""
    attrs = container.attrs
    if isinstance(attrs.get("State"), dict):
        return attrs
    if attrs.get("State") == "exited":
        container.reload()
        return container.attrs
    text = attrs.get("Status") or ""
    health = next((h for marker, h in (("(healthy)", "healthy"), ("(unhealthy)", "unhealthy"),
                                       ("(health: starting)", "starting")) if marker in text), None)
    state = {"Status": attrs.get("State")}
    if health:
        state["Health"] = {"Status": health}
    return {**attrs, "State": state}


def _service_result(service, containers):
    """One line per service: running (and healthy when it has a healthcheck) is OK.

    A one-shot service (restart policy "no", e.g. `migrate`) that exited 0 is OK too;
    any other exited container is CRITICAL, restarting or a health check still starting
    is WARNING.
    """
    states = []
    worst = "ok"
    for container in containers:
        attrs = container.attrs
        state = attrs.get("State", {})
        status = state.get("Status", container.status)
        health = (state.get("Health") or {}).get("Status")
        restart = ((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
        text = status if not health else f"{status}, {health}"
        if status == "exited":
            code = state.get("ExitCode")
            if code == 0 and restart == "no":
                text = "completed (exit code 0)"
            else:
                text += f" (exit code {code})"
                worst = "critical"
        elif status == "restarting" or (status == "running" and health == "starting"):
            worst = "warning" if worst == "ok" else worst
        elif status != "running" or health == "unhealthy":
            worst = "critical"
        states.append(text)
    check = f"compose:{service}"
    summary = "; ".join(states) if len(states) == 1 else f"{len(states)} containers: " + "; ".join(states)
    if worst == "critical":
        return critical(check, f"service {service}: {summary}")
    if worst == "warning":
        return warning(check, f"service {service}: {summary}")
    return ok(check, f"service {service}: {summary}")


def _client(target, timeout):
    import docker

    if not target.remote:
        try:
            client = docker.from_env(timeout=timeout)
            client.ping()
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(f"no Docker engine on this machine ({_short(exc)})") from None
        return client
    return _ssh_client(target, timeout)


def _ssh_client(target, timeout):
    """A DockerClient whose HTTP goes through `docker system dial-stdio` on the SSH host."""
    import docker
    from docker.transport.sshconn import SSHHTTPAdapter
    from invoke.exceptions import CommandTimedOut

    conn = target.connection
    try:
        result = conn.run(
            "docker version --format '{{.Server.APIVersion}}'",
            hide=True, warn=True, timeout=timeout, in_stream=False,
        )
    except CommandTimedOut:
        raise RuntimeError(f"`docker version` on {target.name} did not finish within {timeout:g} s") from None
    if result.failed:
        if result.return_code == 127:
            raise DockerUnavailable(f"no docker CLI on {target.name}")
        raise DockerUnavailable(
            f"no Docker engine answering on {target.name} ({_short(result.stderr or result.stdout)})")
    version = result.stdout.strip() or MIN_API_VERSION

    class ConnectionAdapter(SSHHTTPAdapter):
        """docker-py's SSH adapter, reusing the open Fabric connection instead of its own."""

        def _create_paramiko_client(self, base_url):
            self.ssh_client = conn.client
            self.ssh_params = {}

        def _connect(self):
            pass  # already connected by Fabric

        def close(self):
            # Its pools only: the SSH client is Fabric's, and the host's other checks
            # (the backends, run after the Compose listing) still use it.
            super(SSHHTTPAdapter, self).close()

    # A unix base URL makes no connection at construction when the version is given.
    client = docker.DockerClient(base_url="unix:///nonexistent/oncall-docker.sock",
                                 version=version, timeout=timeout)
    client.api.mount("http+docker://ssh", ConnectionAdapter("ssh://fabric", timeout=timeout))
    client.api.base_url = "http+docker://ssh"
    return client


def _short(exc):
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."
