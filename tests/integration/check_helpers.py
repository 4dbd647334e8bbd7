"""What the Python integration tests of named buffers, channels and the Redis plane share: check()
and raises() print PASS or FAIL lines (ctest fails a test on "FAIL:") and collect the failures."""

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
