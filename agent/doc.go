// Package agent is the OS-neutral heart of prewarm-agent: the provisioning
// state machine, the IMDS client, the status log and the interfaces an
// operating system implements (platform.go). It never imports linux/ or
// windows/; cmd/prewarm-agent wires those in.
package agent
