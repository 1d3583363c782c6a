"""One replica of several: `serve --port-base B --port-count N` binds the first free port of
B .. B+N-1 itself (the scaled Compose stack, docs/docker.md), says which in its port file,
and a restarted replica takes back the port it freed."""

import subprocess
import sys
import time
import urllib.request

import pytest

from habitto_server.processes import free_port_range
from habitto_server.serve import bind_first_free, listen
from tests.support.live import REPO_DIR, server_env

HOST = "127.0.0.1"


def test_replicas_take_the_first_free_port_and_a_freed_one_back():
    first = free_port_range(3)
    replicas = [bind_first_free(HOST, first, 3) for _ in range(3)]
    try:
        assert [sock.getsockname()[1] for sock in replicas] == [first, first + 1, first + 2]
        with pytest.raises(SystemExit, match=f"every port of {first}-{first + 2} is in use"):
            bind_first_free(HOST, first, 3)
        replicas[1].close()  # the middle replica restarts
        replicas[1] = bind_first_free(HOST, first, 3)
        assert replicas[1].getsockname()[1] == first + 1
    finally:
        for sock in replicas:
            sock.close()


def start_replica(tmp_path, name, first, count):
    port_file = tmp_path / f"{name}.port"
    process = subprocess.Popen(
        [sys.executable, "-m", "habitto_server.serve", "--host", HOST, "--port-base", str(first),
         "--port-count", str(count), "--port-file", str(port_file)],
        env=server_env(tmp_path / name), cwd=REPO_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return process, port_file


def wait_for_port_file(process, port_file, timeout=60):
    deadline = time.monotonic() + timeout
    while not (port_file.exists() and port_file.read_text().strip().isdigit()):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{port_file} not written within {timeout} s"
        time.sleep(0.1)
    port = int(port_file.read_text())
    with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=5) as response:
        assert response.status == 200
    return port


def stop(process):
    if process.poll() is None:
        process.terminate()
        process.wait(20)


@pytest.mark.slow
def test_server_processes_share_a_range_and_name_their_port(tmp_path):
    """Two processes started together on a range of two: one port each, written to the port
    file; one stopped and started again takes its port back and names it afresh."""
    first = free_port_range(2)
    (a, a_file), (b, b_file) = start_replica(tmp_path, "a", first, 2), start_replica(tmp_path, "b", first, 2)
    try:
        ports = {wait_for_port_file(a, a_file), wait_for_port_file(b, b_file)}
        assert ports == {first, first + 1}
        freed = int(a_file.read_text())
        stop(a)
        a_file.write_text("stale\n")  # the previous run's file is replaced, not trusted
        a, a_file = start_replica(tmp_path, "a", first, 2)
        assert wait_for_port_file(a, a_file) == freed
    finally:
        stop(a)
        stop(b)
        for process in (a, b):
            process.stderr.close()


def test_a_full_range_refuses_to_start(tmp_path):
    first = free_port_range(1)
    held = listen(HOST, first)
    try:
        process, port_file = start_replica(tmp_path, "late", first, 1)
        _, err = process.communicate(timeout=60)
        assert process.returncode != 0
        assert f"every port of {first}-{first} is in use" in err
        assert not port_file.exists()
    finally:
        held.close()
