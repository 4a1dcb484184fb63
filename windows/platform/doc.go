// Package platform assembles the Windows implementations of the agent's
// platform interfaces into one agent.Platform. It builds only on Windows.
package platform
