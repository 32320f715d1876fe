"""Fixtures that run a real petrel process per test.

PETREL_BIN       path of the broker (default <repo>/build/petrel)
PETREL_SANITIZED 1 for a sanitizer build (ASan/UBSan or TSan): timeouts x3,
                 sanitizer reports fail the test
"""

import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from helpers import SCALE, free_port, wait_port  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PETREL_BIN = os.environ.get("PETREL_BIN", os.path.join(REPO, "build", "petrel"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "WARNING: ThreadSanitizer")

# Hard upper bound for one test (setup + call + teardown), enforced with SIGALRM
# so that a hung broker or client can never stall the suite.
TEST_DEADLINE = int(60 * SCALE)


class _TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise _TestTimeout("test exceeded %d s" % TEST_DEADLINE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TEST_DEADLINE)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def sanitizer_report(text):
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


class Broker:
    """A petrel process listening on 127.0.0.1:port."""

    host = "127.0.0.1"

    def __init__(self, tmp_path, extra_config="", sys_interval=None, port=None,
                 name="petrel", verbose=True, listener_line=True, args=None, wrap=None):
        self.dir = tmp_path
        self.port = port or free_port()
        self.extra_config = extra_config
        self.sys_interval = sys_interval
        self.name = name
        self.verbose = verbose
        self.args = list(args or [])
        # A command that execs the broker (its argv appended), so that the
        # process started keeps the broker's pid: e.g. a private mount.
        self.wrap = list(wrap or [])
        self.proc = None
        self.killed = False
        self.exit_codes = []
        self.starts = 0
        self.config_path = os.path.join(str(tmp_path), "%s.conf" % name)
        self.log_path = os.path.join(str(tmp_path), "%s.log" % name)
        lines = []
        if listener_line:
            lines.append("listener %d 127.0.0.1" % self.port)
        lines.append("allow_anonymous true")
        if sys_interval is not None:
            lines.append("sys_interval %d" % sys_interval)
        lines.append(extra_config)
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._logf = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True):
        if not os.path.exists(PETREL_BIN):
            pytest.fail("broker binary not found: %s (set PETREL_BIN)" % PETREL_BIN)
        self.starts += 1
        self._logf = open(self.log_path, "ab")
        cmd = self.wrap + [PETREL_BIN, "-c", self.config_path] + (["-v"] if self.verbose else []) + self.args
        self.proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(self.dir))
        self.killed = False
        if wait:
            if not wait_port(self.host, self.port, 10 * SCALE, self.proc):
                rc = self.proc.poll()
                if rc is None:
                    self.kill9()
                pytest.fail("broker did not accept connections on port %d (exit %r)\n%s"
                            % (self.port, rc, self.log()))
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the broker, wait for it; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.killed = True
                rc = "hung after signal %d" % sig
                self.exit_codes.append(rc)
                self._close_log()
                return rc
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self._close_log()
        proc, self.proc = self.proc, None
        self._last = proc
        return rc

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.killed = True
        self.proc = None
        self._close_log()

    def restart(self):
        if self.proc is not None:
            rc = self.stop()
            if not self.killed:
                assert rc == 0, "broker exit code %r on restart\n%s" % (rc, self.log())
        return self.start()

    def _close_log(self):
        if self._logf:
            self._logf.close()
            self._logf = None

    def finish(self):
        """Teardown checks: clean SIGTERM exit (exit 0) and no sanitizer report."""
        problems = []
        if self.proc is not None:
            crashed = self.proc.poll()
            if crashed is not None and not self.killed:
                problems.append("broker exited during the test with code %r" % crashed)
                self.proc = None
            else:
                rc = self.stop()
                if not self.killed and rc != 0:
                    problems.append("broker exit code %r after SIGTERM (want 0)" % rc)
        text = self.log()
        marker = sanitizer_report(text)
        if marker:
            problems.append("sanitizer reported %r" % marker)
        if problems:
            pytest.fail("; ".join(problems) + "\n--- broker log (tail) ---\n" + text[-6000:],
                        pytrace=False)


@pytest.fixture
def make_broker(tmp_path):
    """Factory: make_broker(extra_config="", sys_interval=None, ...) -> started Broker."""
    brokers = []

    def factory(extra_config="", **kw):
        kw.setdefault("name", "petrel%d" % len(brokers))
        b = Broker(tmp_path, extra_config, **kw)
        brokers.append(b)
        return b.start()

    yield factory
    errors = []
    for b in brokers:
        try:
            b.finish()
        except BaseException as e:  # collect, then report all
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def broker(make_broker):
    return make_broker("")


@pytest.fixture
def sys_broker(make_broker):
    return make_broker("", sys_interval=1)


@pytest.fixture
def petrel_bin():
    if not os.path.exists(PETREL_BIN):
        pytest.fail("broker binary not found: %s" % PETREL_BIN)
    return PETREL_BIN


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    from helpers import close_all_clients
    close_all_clients()
