"""A host that logs in to tunneld with a real key, asks for a reverse forward, and then misbehaves on the channels
tunneld opens for each scrape (paramiko, so nothing in it is tunneld's own code):

  misbehaving_host.py PORT KEY TARGET silent     accepts every forwarded-tcpip channel, never sends or closes
  misbehaving_host.py PORT KEY TARGET mute-open  never answers a forwarded-tcpip channel open at all

Prints "forwarding TARGET" once the forward is granted, then serves until SIGTERM."""
import signal
import sys
import threading

import paramiko
from paramiko.common import MSG_CHANNEL_OPEN


class MuteOpenTransport(paramiko.Transport):
    """Drops CHANNEL_OPEN messages unanswered (the server waits for a confirmation that never comes)."""
    _handler_table = dict(paramiko.Transport._handler_table)
    _handler_table[MSG_CHANNEL_OPEN] = lambda self, m: None


def main():
    port, key_path, target, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    transport_class = MuteOpenTransport if mode == "mute-open" else paramiko.Transport
    transport = transport_class(("127.0.0.1", int(port)))
    transport.connect(username="tunnel", pkey=paramiko.Ed25519Key.from_private_key_file(key_path))
    held = []  # accepted channels stay referenced and open, with nothing ever sent on them
    transport.request_port_forward(target, 80, handler=lambda channel, origin, server: held.append(channel))
    print(f"forwarding {target}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set() and transport.is_active():
        stop.wait(0.5)
    transport.close()


if __name__ == "__main__":
    main()
