// Package verify holds no Go code: its PowerShell scripts check the agent on
// a real Windows Server (integration.ps1, which the Windows CI job runs, and
// the scripts it calls or that run by hand). Its test reads the scripts for
// mistakes that only a Windows run would otherwise show.
package verify
