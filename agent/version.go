package agent

// Version is the agent's version, reported in every status report. Release
// builds set it with -ldflags "-X github.com/prewarm/prewarm/agent.Version=...".
var Version = "0.1.0"
