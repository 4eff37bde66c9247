"""A session channel with a pty requested first (`ssh -tt HOST cmd`, what a confused operator types): the client
must still print why it got no session ("use ssh -N"), as it does without a pty."""
from hostile_harness import scraping, stack  # noqa: F401 (fixtures)


def test_pty_request_still_gets_the_use_ssh_n_message(stack, scraping):
    """With a pty requested first, the client must still print why it got no session."""
    mark = stack.log_mark()
    r = stack.tunneld.ssh_run(stack.keys["owner"], "-tt", command=["id"])
    assert "ssh -N" in r.stderr, r
    assert r.returncode == 1, r
    stack.wait_log_since(mark, "type=exec")
