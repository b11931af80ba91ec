"""What the TensorFlow conformance modules share: the spindle binary, free ports, a server
started on a repository and stopped at the end, and the HDFS of the test run (when there is one).

Nothing here knows about a particular test; each test_*.py module imports it.
"""
import os
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def spindle_bin():
    """The binary under test: $SPINDLE_BIN (scripts/test.sh passes its own) or the ci build."""
    return os.environ.get("SPINDLE_BIN") or os.path.join(ROOT, "target", "ci", "spindle")


def spindle(*args, check=True, timeout=600, env=None):
    """Runs `spindle ARGS...` and returns the CompletedProcess (text stdout and stderr).

    With check=True a non-zero exit raises AssertionError carrying stderr, so a failing test says
    what spindle printed.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([spindle_bin(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"spindle {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stderr}\n{proc.stdout}")
    return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hdfs_url():
    """The HDFS of this test run, or None (the caller skips, and says so)."""
    return os.environ.get("SPINDLE_HADOOP3_HDFS_URL") or os.environ.get("SPINDLE_HDFS_URL")


def require_hdfs(test):
    url = hdfs_url()
    if not url:
        raise unittest.SkipTest("no HDFS: set SPINDLE_HADOOP3_HDFS_URL (scripts/hadoop.sh start)")
    return url


class Server:
    """`spindle serve --repo REPO` on free loopback ports, as a context manager.

    Attributes once started: http ("127.0.0.1:PORT"), grpc ("127.0.0.1:PORT"), log (path).
    The server's log tail is printed when it fails to become ready.
    """

    def __init__(self, repo, *extra_args, ready_timeout=120):
        self.repo = repo
        self.extra_args = [str(a) for a in extra_args]
        self.ready_timeout = ready_timeout
        self.proc = None

    def __enter__(self):
        self.http = f"127.0.0.1:{free_port()}"
        self.grpc = f"127.0.0.1:{free_port()}"
        fd, self.log = tempfile.mkstemp(prefix="spindle-server-", suffix=".log")
        os.close(fd)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [spindle_bin(), "serve", "--repo", str(self.repo), "--http-addr", self.http,
                 "--grpc-addr", self.grpc, *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"spindle serve exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise AssertionError(f"spindle serve not ready after {self.ready_timeout} s:\n{self.tail()}")

    def tail(self, lines=40):
        with open(self.log) as f:
            return "".join(f.readlines()[-lines:])

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if exc and exc[0] is not None:
            print(f"--- server log ({self.log}) ---\n{self.tail()}")
        return False
