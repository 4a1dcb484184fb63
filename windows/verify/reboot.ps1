<#
.SYNOPSIS
  Verifies the reboot policy "allowed" on Windows (issue 19 defect 8). BY
  HAND: the machine restarts, which a CI runner does not survive.

.DESCRIPTION
  On a Windows Server VM whose agent talks to an IMDS on the host (the
  normal deployment: libvirt/QEMU with prewarm-imds on 169.254.169.254),
  publish from the host a document with a new hostname and the policy:

    echo '{"hostname": "win-rb-01", "reboot": "allowed"}' | prewarm-imds publish VM -
    prewarm-imds status VM --wait --until provisioned --timeout 10m

  The VM restarts once by itself. Then, in the VM, as Administrator:

    .\windows\verify\reboot.ps1 -Hostname win-rb-01 -Generation N

  Checks, each printed as PASS or FAIL; exits 1 on any FAIL:
  - the computer name is the new one (active, not only pending);
  - the status log holds, for generation N, applying reports and exactly
    one outcome, provisioned, after the restart: without rebootRequired,
    its steps ending with a "reboot" step whose ms spans the restart;
  - the System log has exactly one restart requested by the agent
    (event 1074 naming "Prewarm: generation N") since the applying report;
  - a restart of the service now reboots nothing and reports nothing new
    for generation N (once per generation).
#>
param(
    [Parameter(Mandatory)] [string] $Hostname,
    [Parameter(Mandatory)] [int] $Generation,
    [string] $Service = 'prewarm-agent',
    [int] $SettleSeconds = 20
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'lib.ps1')
$log = Join-Path $env:ProgramData 'Prewarm\status.jsonl'
function Get-Reports { @(Get-Content $log | ForEach-Object { $_ | ConvertFrom-Json } | Where-Object { $_.generation -eq $Generation -and -not $_.event -and $_.state -ne 'starting' }) }

Check "computer name is $Hostname" ($env:COMPUTERNAME -eq $Hostname.Split('.')[0].ToUpper()) "is $env:COMPUTERNAME"
$reports = Get-Reports
$applying = @($reports | Where-Object state -eq 'applying')
$outcomes = @($reports | Where-Object { $_.state -in 'provisioned', 'partial-ready', 'failed' })
Check 'an applying report before the restart' ($applying.Count -ge 1)
Check 'exactly one outcome, provisioned' ($outcomes.Count -eq 1 -and $outcomes[0].state -eq 'provisioned') "$($outcomes | ForEach-Object state)"
if ($outcomes.Count -eq 1) {
    $o = $outcomes[0]
    Check 'no rebootRequired after the restart' (-not $o.rebootRequired)
    $last = @($o.steps)[-1]
    Check 'the last step is reboot, ok, with its time' ($last.name -eq 'reboot' -and $last.ok -and $last.ms -gt 0) "$($last | ConvertTo-Json -Compress)"
    $hostStep = @($o.steps | Where-Object name -eq 'hostname')
    Check 'the hostname step changed the name' ($hostStep.Count -eq 1 -and $hostStep[0].changed)
    $since = [datetime]$applying[0].time
    $restarts = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; Id = 1074; StartTime = $since } -ErrorAction SilentlyContinue |
            Where-Object { $_.Message -match "Prewarm: generation $Generation\b" })
    Check 'exactly one restart requested by the agent' ($restarts.Count -eq 1) "found $($restarts.Count)"
}
$before = (Get-Reports).Count
Restart-Service $Service
Start-Sleep -Seconds $SettleSeconds
Check 'a service restart applies nothing again' ((Get-Reports).Count -eq $before) "reports of generation ${Generation}: $before then $((Get-Reports).Count)"
exit (Get-ChecksExitCode)
