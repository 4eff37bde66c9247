"""The module with the real tunneld and OpenSSH client: a host that opens `ssh -N -R` is served through nginx on
the next request, stops being served when its client goes away, and comes back when it reconnects — no reload."""
import mp
import nginx_harness as h
from ssh_harness import Tunneld, keygen


def test_ssh_reverse_tunnel_is_routed_by_nginx_while_it_lives(env, procs, workdir, monkeypatch):
    # tunneld applies the registry permission policy at start: with the workers' group, or they lose access
    monkeypatch.setenv("MONITORING_PROXY_REGISTRY_GROUP", h.REGISTRY_GROUP)
    key = keygen(workdir, "web1")
    env.registry.add("web1", "--key-file", key + ".pub")  # creates the registry with the workers' group
    exporter = env.backend("exporter")
    tunneld = Tunneld(procs, workdir)
    assert tunneld.registry == env.registry.path
    tunneld.start()
    nginx = env.nginx(workers=2).start()
    workers = nginx.worker_pids()
    assert nginx.get("/web1/metrics")[:2] == (503, 'target "web1" is not connected\n'), nginx.error_log()

    client = tunneld.ssh(key, f"web1:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: tunneld.connected("web1"), 10, what="web1 connected")
    assert nginx.get("/web1/metrics")[:2] == (200, "exporter /metrics\n")

    procs.stop(client)
    mp.wait_until(lambda: not tunneld.connected("web1"), 10, what="web1 disconnected")
    assert nginx.get("/web1/metrics")[:2] == (503, 'target "web1" is not connected\n')

    tunneld.ssh(key, f"web1:80:127.0.0.1:{exporter.port}")
    mp.wait_until(lambda: tunneld.connected("web1"), 10, what="web1 reconnected")
    assert nginx.get("/web1/metrics?again=1")[:2] == (200, "exporter /metrics?again=1\n")
    assert nginx.worker_pids() == workers
