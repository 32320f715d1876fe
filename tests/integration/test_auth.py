"""Authentication with password files in mosquitto_passwd's format
(docs/security.md): files written by Debian's mosquitto_passwd and by
petrel-passwd, the CONNACK codes of MQTT 3.1.1 (section 3.2.2.3) and 5.0
(section 3.2.2.2), reading the file again on SIGHUP, and petrel-passwd's
files read by Mosquitto."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import PETREL_BIN
from helpers import T, V311, V5, free_port, raw, wait_port

PASSWD_TOOL = os.path.join(os.path.dirname(PETREL_BIN), "petrel-passwd")
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

BAD_CREDENTIALS_V5 = 0x86
BAD_CREDENTIALS_V3 = 4
NOT_AUTHORIZED_V5 = 0x87
NOT_AUTHORIZED_V3 = 5


def tool(*args, check=True):
    return subprocess.run([PASSWD_TOOL] + list(args), capture_output=True, text=True,
                          timeout=T(30), check=check)


def connack(broker, version, user=None, password=None):
    c = raw(broker, "auth-%s" % (user or "anon"), version=version, expect_rc=None,
            username=user, password=None if password is None else password.encode())
    return c.connack.rc


def authed(make_broker, path, anonymous=False):
    return make_broker("allow_anonymous %s\npassword_file %s\n"
                       % ("true" if anonymous else "false", path))


@pytest.mark.skipif(not MOSQUITTO_PASSWD, reason="needs mosquitto_passwd")
@pytest.mark.parametrize("hash_arg", [[], ["-H", "sha512"], ["-H", "sha512-pbkdf2"]],
                         ids=["default", "sha512", "pbkdf2"])
def test_mosquitto_passwd_file_is_read_unchanged(make_broker, tmp_path, hash_arg):
    path = str(tmp_path / "passwd")
    subprocess.run([MOSQUITTO_PASSWD] + hash_arg + ["-c", "-b", path, "alice", "wonder land"],
                   check=True, timeout=T(30))
    subprocess.run([MOSQUITTO_PASSWD] + hash_arg + ["-b", path, "bob", "builder"], check=True,
                   timeout=T(30))
    b = authed(make_broker, path)
    for version, ok, bad in [(V5, 0, BAD_CREDENTIALS_V5), (V311, 0, BAD_CREDENTIALS_V3)]:
        assert connack(b, version, "alice", "wonder land") == ok
        assert connack(b, version, "bob", "builder") == ok
        assert connack(b, version, "alice", "builder") == bad
        assert connack(b, version, "carol", "builder") == bad  # unknown user
        assert connack(b, version, "alice") == bad             # no password
    assert "2 users" in b.log()


def test_anonymous_refused_unless_allowed(make_broker, tmp_path):
    path = str(tmp_path / "passwd")
    tool("-c", "-b", path, "alice", "pw")
    b = authed(make_broker, path)
    assert connack(b, V5) == NOT_AUTHORIZED_V5
    assert connack(b, V311) == NOT_AUTHORIZED_V3
    b2 = authed(make_broker, path, anonymous=True)
    assert connack(b2, V5) == 0
    # A username still needs its password when anonymous clients are let in.
    assert connack(b2, V5, "alice", "nope") == BAD_CREDENTIALS_V5


def test_petrel_passwd_commands(make_broker, tmp_path):
    # -c creates, -b sets in batch, a second -b replaces, -D deletes, -U
    # hashes a file of plain passwords; other lines are kept.
    path = str(tmp_path / "passwd")
    tool("-c", "-b", path, "alice", "one")
    tool("-b", path, "bob", "two")
    tool("-H", "sha512", "-b", path, "carol", "three")
    tool("-I", "5000", "-b", path, "alice", "uno")
    text = open(path).read()
    assert text.count("alice:$7$5000$") == 1 and text.count("carol:$6$") == 1
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    tool("-D", path, "bob")
    assert "bob:" not in open(path).read()
    assert tool("-D", path, "bob", check=False).returncode != 0
    assert tool("-b", path, "bad:name", "x", check=False).returncode != 0
    with open(path, "a") as f:
        f.write("# a comment\ndave:plain pw\n")
    tool("-U", path)
    text = open(path).read()
    assert "# a comment" in text and "dave:$7$" in text
    b = authed(make_broker, path)
    assert connack(b, V5, "alice", "uno") == 0
    assert connack(b, V5, "alice", "one") == BAD_CREDENTIALS_V5
    assert connack(b, V5, "bob", "two") == BAD_CREDENTIALS_V5
    assert connack(b, V5, "carol", "three") == 0
    assert connack(b, V5, "dave", "plain pw") == 0
    out = tool("-c", "-b", "-", "erin", "x").stdout
    assert out.startswith("erin:$7$101$")


def hangup_until(b, line):
    os.kill(b.pid, signal.SIGHUP)
    deadline = time.time() + T(10)
    while line not in b.log():
        assert time.time() < deadline, "no %r in the log" % line
        time.sleep(0.05)


def test_sighup_reads_the_file_again(make_broker, tmp_path):
    path = str(tmp_path / "passwd")
    tool("-c", "-b", path, "alice", "old")
    b = authed(make_broker, path)
    c = raw(b, "stays", username="alice", password=b"old")
    tool("-b", path, "alice", "new")
    tool("-b", path, "bob", "pw")
    hangup_until(b, "read again")
    assert connack(b, V5, "alice", "new") == 0
    assert connack(b, V5, "alice", "old") == BAD_CREDENTIALS_V5
    assert connack(b, V5, "bob", "pw") == 0
    # A file that cannot be read keeps what was read before.
    os.unlink(path)
    hangup_until(b, "keeping what was read before")
    assert connack(b, V5, "bob", "pw") == 0
    c.send(b"\xc0\x00")  # connections made before are not touched
    assert c.expect(13).type == 13


def test_unreadable_or_bad_lines(make_broker, tmp_path):
    # A missing file stops startup; bad lines are left out with a warning.
    path = str(tmp_path / "passwd")
    with open(path, "w") as f:
        f.write("plain:text\n:nouser\nbroken\nx:$7$abc$AAAA$AAAA\n\n# c\n")
    tool("-b", path, "alice", "pw")
    b = authed(make_broker, path)
    assert "1 user" in b.log()
    assert b.log().count("the line is left out") == 4
    assert connack(b, V5, "plain", "text") == BAD_CREDENTIALS_V5
    assert connack(b, V5, "alice", "pw") == 0
    port = free_port()
    conf = tmp_path / "missing.conf"
    conf.write_text("listener %d 127.0.0.1\npassword_file %s\n" % (port, tmp_path / "nope"))
    p = subprocess.run([PETREL_BIN, "-c", str(conf)], capture_output=True, text=True,
                       timeout=T(20))
    assert p.returncode != 0
    assert "cannot open the password file" in p.stdout + p.stderr


@pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="needs mosquitto")
def test_mosquitto_reads_petrel_passwd_files():
    # Mosquitto started as root runs as its own user: a directory it can read.
    tmp = tempfile.mkdtemp(prefix="petrel-auth-")
    os.chmod(tmp, 0o755)
    path = os.path.join(tmp, "passwd")
    tool("-c", "-b", path, "alice", "pbkdf2 pw")
    tool("-H", "sha512", "-b", path, "bob", "sha pw")
    os.chmod(path, 0o644)
    port = free_port()
    conf = os.path.join(tmp, "m.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\n"
                % (port, path))
    m = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert wait_port("127.0.0.1", port, T(10), m)

        class B:
            host = "127.0.0.1"
        B.port = port
        assert connack(B, V311, "alice", "pbkdf2 pw") == 0
        assert connack(B, V311, "bob", "sha pw") == 0
        assert connack(B, V311, "alice", "sha pw") != 0
    finally:
        m.terminate()
        m.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
