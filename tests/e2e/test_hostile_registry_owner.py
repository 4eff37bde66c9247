"""A registry file owned by the nginx workers' user: with the documented 0640 mode that user could rewrite the
declared targets (point a name at another port, add names). tunneld and tunnelctl apply the permission policy at
start; they must either give the file back to the registry's owner or refuse with a clear error — never leave it
writable by the reader."""
import os
import pwd

import mp
from hostile_harness import scraping, stack  # noqa: F401 (fixtures)
import nginx_harness as h
from ssh_harness import Tunneld


def test_data_mdb_owned_by_the_reader_is_not_left_writable_by_it(stack, scraping, procs, workdir):
    registry = h.Registry(os.path.join(workdir, "registry"))
    registry.add("alpha")
    data = os.path.join(registry.path, "data.mdb")
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(data, nobody, -1)
    os.chmod(data, 0o666)
    t = Tunneld(procs, workdir)
    # started with the harness so it is stopped by pid
    t.registry = registry.path
    t.proc = procs.start([t.tunneld_path, "--listen", f"127.0.0.1:{mp.free_port()}", "--registry", registry.path,
                          "--host-key-dir", os.path.join(workdir, "hostkeys"), "--port-range",
                          f"{t.port_range[0]}-{t.port_range[1]}"], name="tunneld-owner")
    mp.wait_until(lambda: t.proc.poll() is not None or " started " in t.log(), 10, what="tunneld start or exit")
    st = os.stat(data)
    writable_by_reader = (st.st_uid == nobody and st.st_mode & 0o200) or st.st_mode & 0o002
    refused = t.proc.poll() == 2 and "owner" in t.log()
    assert refused or not writable_by_reader, (oct(st.st_mode), st.st_uid, t.log())
