// Package systemd holds the systemd units the .deb and .rpm install
// (packaging/nfpm-*.yaml take them from this directory). The agent's unit
// is also the one `prewarm-agent install` writes, embedded from here, so
// the packaged agent and a hand-installed one run under the same unit and
// the same hardening.
package systemd

import _ "embed"

// AgentUnit is prewarm-agent.service, verbatim.
//
//go:embed prewarm-agent.service
var AgentUnit string

// AgentExecStart is AgentUnit's ExecStart line, the one line `prewarm-agent
// install` writes differently when its binary lives elsewhere or it is given
// flags.
const AgentExecStart = "ExecStart=/usr/bin/prewarm-agent run $PREWARM_AGENT_OPTS\n"
