"""A throwaway OpenSSH server on loopback for the remote on-call tests.

It runs Debian's /usr/sbin/sshd in the foreground on a free port with its own config,
host key, client key and authorized_keys in a temporary folder: the system's sshd and
its configuration are never touched. `ssh_config` is the client side for
`fab --ssh-config FILE -H ALIAS`.
"""

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.live import free_port

ALIAS = "oncall-remote"


def sshd_binary():
    return shutil.which("sshd") or next(
        (p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.access(p, os.X_OK)), None
    )


class SSHServer:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.port = free_port()
        self.user = getpass.getuser()
        self.process = None
        self.client_key = self.dir / "client_key"
        self.ssh_config = self.dir / "ssh_config"
        self.log_path = self.dir / "sshd.log"

    def start(self, timeout=15):
        binary = sshd_binary()
        if binary is None:
            raise RuntimeError("sshd is not installed (apt-get install -y openssh-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        host_key = self.dir / "host_key"
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "oncall-test", "-f", str(key)],
                           check=True, capture_output=True)
        authorized = self.dir / "authorized_keys"
        authorized.write_text((self.dir / "client_key.pub").read_text())
        authorized.chmod(0o600)
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            "",
        ]))
        self.ssh_config.write_text("\n".join([
            f"Host {ALIAS}",
            "  HostName 127.0.0.1",
            f"  Port {self.port}",
            f"  User {self.user}",
            f"  IdentityFile {self.client_key}",
            "  IdentitiesOnly yes",
            "  UserKnownHostsFile /dev/null",
            "  StrictHostKeyChecking no",
            "",
        ]))
        # sshd insists on its privilege-separation directory even with a private config.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}:\n{self.log()}")
            if _banner(self.port):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer on port {self.port}:\n{self.log()}")
            time.sleep(0.05)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _banner(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.settimeout(1)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False
