import os
import time

import pytest

from oncely import Inbox


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_working_runtime(tmp_path):
    """Queue users fork (gunicorn, Celery): a child must not inherit the parent's dead runtime."""
    path = str(tmp_path / "fork.db")
    inbox = Inbox(path, "s")
    assert inbox.process("parent", None, lambda: b"p").result == b"p"  # the runtime is running
    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            child = Inbox(path, "s")
            r = child.process("child", None, lambda: b"c")
            dup = child.begin("parent")
            code = 0 if (r.result, dup.outcome) == (b"c", "duplicate") else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert inbox.begin("child").outcome == "duplicate"
