"""A redis-server of a test's own (tests/e2e, tests/loadtests): on a free port, so the
test may stop it, start it again, or let a load test's fault commands do so."""

import shutil
import subprocess

import pytest

from tests.support.chat import wait_for
from tests.support.live import free_port
from tests.support.services import check_redis, require


class OwnRedis:
    """A redis-server of this test's own, on a free port, that the test may kill."""

    def __init__(self, binary, port, folder):
        self.binary, self.port, self.folder = binary, port, folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = None

    def start(self):
        log = open(self.folder / "redis.log", "ab")
        self.process = subprocess.Popen(
            [*self.command(), "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder,
        )
        log.close()
        wait_for(lambda: self.process.poll() is None and check_redis(self.url)[0], 10, 0.1,
                 what=f"redis-server on port {self.port}")

    def command(self):
        """The redis-server command line of this instance (a fault command can start it again)."""
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no"]

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def own_redis(tmp_path):
    binary = shutil.which("redis-server")
    require("redis-server binary", binary, "redis-server is not on PATH")
    redis = OwnRedis(binary, free_port(), tmp_path)
    redis.start()
    yield redis
    redis.kill()
