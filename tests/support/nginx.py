"""A real nginx of a test's own, in front of real server processes, running
deploy/nginx/habitto-chat.conf with only its upstream servers and listen address rewritten
(what the scaled Compose stack's proxy does too)."""

import re
import shutil
import subprocess
import time

from tests.support import services
from tests.support.live import REPO_DIR, http_json

NGINX_MAIN = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/habitto-chat.conf;
}}
"""
UPSTREAM_SERVER = re.compile(r"^[ \t]*server 127\.0\.0\.1:\d+;\n", re.M)


def nginx_binary():
    """The nginx binary, or a loud skip (a failure under REQUIRE_SERVICES=1)."""
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    services.require("nginx", path is not None, "no nginx binary (apt-get install nginx)")
    return path


def render(backend_ports, listen_ports):
    """habitto-chat.conf proxying to 127.0.0.1:<backend_ports>, listening on 127.0.0.1:<listen_ports>."""
    conf = (REPO_DIR / "deploy/nginx/habitto-chat.conf").read_text()
    first = UPSTREAM_SERVER.search(conf)
    assert first and "listen 80;" in conf, "deploy/nginx/habitto-chat.conf changed shape"
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in backend_ports)
    conf = conf[:first.start()] + servers + UPSTREAM_SERVER.sub("", conf[first.start():])
    return conf.replace("listen 80;", " ".join(f"listen 127.0.0.1:{port};" for port in listen_ports))


class Nginx:
    """nginx -c <folder>/nginx.conf in the foreground; start() returns once /healthz answers."""

    def __init__(self, folder, backend_ports, listen_ports):
        self.dir = folder
        self.listen_ports = list(listen_ports)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "habitto-chat.conf").write_text(render(backend_ports, listen_ports))
        (folder / "nginx.conf").write_text(NGINX_MAIN.format(dir=folder))
        self.process = None

    def start(self, timeout=10):
        self.process = subprocess.Popen([nginx_binary(), "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if http_json("GET", f"http://127.0.0.1:{self.listen_ports[0]}/healthz", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not answer within {timeout} s: {self.error_log()}")
            time.sleep(0.1)

    def error_log(self):
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
