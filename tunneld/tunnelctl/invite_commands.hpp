// tunnelctl invite / invites / invite rm: join tokens that enrol a host's key on its first connection.
#pragma once

#include "cli.hpp"

#include "monitoring_proxy/registry.hpp"

namespace monitoring_proxy::tunnelctl {

// invite NAME [options] (declares NAME, prints the host's setup) and invite rm NAME (revokes).
int cmd_invite(registry::Registry& reg, Args& args);
// invites [--json]: every invitation and its state; never a secret. Reads only.
int cmd_invites(registry::Registry& reg, Args& args);

}  // namespace monitoring_proxy::tunnelctl
