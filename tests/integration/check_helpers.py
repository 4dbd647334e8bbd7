"""What the Python integration tests of named buffers, channels and the Redis plane share: check()
and raises() print PASS or FAIL lines (ctest fails a test on "FAIL:") and collect the failures;
package_test() takes a package test's arguments; PrivateDaemon is a poolshimd of the test's own."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

failures = []


def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what, flush=True)
    if not cond:
        failures.append(what)


def raises(exc, fn, what):
    """fn() must raise exc (a subclass counts)."""
    try:
        fn()
    except exc as e:
        print(f"PASS: {what}: {type(e).__name__}: {e}", flush=True)
        return
    except Exception as e:  # the wrong kind
        check(False, f"{what}: {type(e).__name__} ({e}), not {exc.__name__}")
        return
    check(False, f"{what}: no exception")


def package_test(name):
    """The arguments of a test of the Python package (--daemon, --lib, --package). Exits 77
    (skipped) without numpy; points the package at the library and puts it first on sys.path."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--package", required=True)
    args = ap.parse_args()
    try:
        import numpy  # noqa: F401
    except ImportError:
        print(f"{name}: no numpy for this python3 (apt-get install python3-numpy): skipped")
        sys.exit(77)
    os.environ["POOLSHIM_BUFFERS_LIB"] = args.lib
    sys.path.insert(0, args.package)
    return args


class PrivateDaemon:
    """A poolshimd of the test's own in a private folder (mode 0700), POOLSHIM_SOCKET set for this
    process and its children, its log there unless log=False; ready once --status answers (5 s at
    most). stop() ends it and removes the folder."""

    def __init__(self, daemon, prefix, *options, log=True):
        self.exe = daemon
        self.dir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.dir, 0o700)
        self.sock = os.path.join(self.dir, "poolshimd.sock")
        os.environ["POOLSHIM_SOCKET"] = self.sock
        self._log = open(os.path.join(self.dir, "daemon.log"), "w") if log else None
        out = self._log if log else subprocess.DEVNULL
        self.proc = subprocess.Popen([daemon, "--socket", self.sock, *options], stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(500):
                if os.path.exists(self.sock) and self.run("--status").returncode == 0:
                    break
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise

    def run(self, *flags):
        """poolshimd FLAGS (--status, --list) against it, its output as text."""
        return subprocess.run([self.exe, *flags], capture_output=True, text=True)

    def status(self):
        return self.run("--status").stdout

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
