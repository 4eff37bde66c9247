"""A TCP relay on a free loopback port that can go silent: `freeze()` stops moving bytes in both directions and
holds new connections open without answering, while every socket stays open — a network partition as a client
sees it (no reset, no FIN, just silence). `thaw()` resumes. One thread, bounded buffers, closed by close()."""
import selectors
import socket
import threading

import mp


class FreezableRelay:
    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.closing = threading.Event()
        self.pairs = {}  # socket -> its peer
        self.held = []   # connections accepted while frozen, connected to the target on thaw
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def freeze(self):
        self.frozen.set()

    def thaw(self):
        self.frozen.clear()

    def close(self):
        self.closing.set()
        self.thread.join(timeout=5)
        for s in list(self.pairs) + self.held + [self.listener]:
            s.close()

    def _connect(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
        self.pairs[client], self.pairs[upstream] = upstream, client

    def _drop(self, s):
        peer = self.pairs.pop(s, None)
        for x in (s, peer):
            if x is not None:
                self.pairs.pop(x, None)
                try:
                    self.sel.unregister(x)
                except (KeyError, ValueError):
                    pass
                x.close()

    def _run(self):
        while not self.closing.is_set():
            if self.frozen.is_set():  # silence: read nothing, answer nothing, keep every socket open
                self.closing.wait(0.02)
                try:
                    client, _ = self.listener.accept()
                    self.held.append(client)
                except BlockingIOError:
                    pass
                continue
            while self.held:
                self._connect(self.held.pop())
            for key, _ in self.sel.select(timeout=0.05):
                s = key.fileobj
                if s is self.listener:
                    try:
                        client, _ = self.listener.accept()
                    except BlockingIOError:
                        continue
                    self._connect(client)
                    continue
                if s not in self.pairs:
                    continue
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._drop(s)
                    continue
                try:
                    self.pairs[s].setblocking(True)
                    self.pairs[s].sendall(data)
                    self.pairs[s].setblocking(False)
                except OSError:
                    self._drop(s)


def relays_for(etcd_cluster):
    """One relay per etcd member, and the --etcd value that goes through them."""
    relays = []
    for m in etcd_cluster.members:
        host, port = m.client_url.rsplit("//", 1)[1].rsplit(":", 1)
        relays.append(FreezableRelay(host, int(port)))
    mp.wait_until(lambda: all(r.thread.is_alive() for r in relays), 2, what="relays running")
    return relays, ",".join(r.url for r in relays)
