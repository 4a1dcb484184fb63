<#
.SYNOPSIS
  Verifies the agent's Windows service behaviour (issue 19 defect 9).

.DESCRIPTION
  Run as Administrator with the prewarm-agent service installed and running
  (windows/verify/integration.ps1, the Windows CI job, calls it after its
  checks; by hand on a Windows Server VM: .\windows\verify\service.ps1).

  Checks, each printed as PASS or FAIL; the script exits 1 on any FAIL:
  - the status log can be rotated (renamed) while `prewarm-agent status
    --follow` holds it open, and the agent writes a new one afterwards
    (FILE_SHARE_DELETE on every open of the log);
  - Stop-Service returns within -StopSeconds, the service's exit code is 0
    (not 2, which made the SCM's recovery actions restart it) and it is
    still stopped after the recovery delay (5 s) has passed;
  - the service starts again.
  The arm64 build is checked where it is built (make lint:
  GOOS=windows GOARCH=arm64 go build ./...), not here.
#>
param(
    [string] $Service = 'prewarm-agent',
    [string] $Agent = "$env:ProgramFiles\Prewarm\prewarm-agent.exe",
    [int] $StopSeconds = 15
)
$ErrorActionPreference = 'Stop'
. (Join-Path $PSScriptRoot 'lib.ps1')

$dir = Join-Path $env:ProgramData 'Prewarm'
$log = Join-Path $dir 'status.jsonl'
if ((Get-Service -Name $Service).Status -ne 'Running') { Start-Service -Name $Service }

# Rotation while a reader follows the log.
$deadline = (Get-Date).AddSeconds(60)
while (-not (Test-Path $log) -and (Get-Date) -lt $deadline) { Start-Sleep -Seconds 1 }
Check "status log $log exists" (Test-Path $log)
$follower = Start-Process -FilePath $Agent -ArgumentList 'status', '--follow' -PassThru -WindowStyle Hidden `
    -RedirectStandardOutput (Join-Path $env:TEMP 'prewarm-follow.out')
try {
    Start-Sleep -Seconds 2 # the follower opens the log
    $rotated = "$log.rotated-$PID"
    $renamed = $true
    try { Rename-Item -Path $log -NewName (Split-Path $rotated -Leaf) } catch { $renamed = $false; Write-Host $_ }
    Check 'status log renamed while status --follow holds it open' $renamed
    # A restart makes the agent write a report: into a new status.jsonl.
    Restart-Service -Name $Service
    $deadline = (Get-Date).AddSeconds(60)
    while (-not (Test-Path $log) -and (Get-Date) -lt $deadline) { Start-Sleep -Seconds 1 }
    Check 'the agent writes a new status log after the rotation' (Test-Path $log)
    if ($renamed) { Remove-Item -Path $rotated -ErrorAction SilentlyContinue }
} finally {
    Stop-Process -Id $follower.Id -ErrorAction SilentlyContinue
}

# A bounded stop, exit code 0, no recovery restart.
$sw = [System.Diagnostics.Stopwatch]::StartNew()
Stop-Service -Name $Service
$sw.Stop()
Check "Stop-Service returned within $StopSeconds s" ($sw.Elapsed.TotalSeconds -lt $StopSeconds) "(took $($sw.Elapsed.TotalSeconds) s)"
$svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='$Service'"
Check 'exit code 0' ($svc.ExitCode -eq 0 -and $svc.ServiceSpecificExitCode -eq 0) "(ExitCode $($svc.ExitCode), ServiceSpecificExitCode $($svc.ServiceSpecificExitCode))"
Start-Sleep -Seconds 8 # past the 5 s recovery delay
Check 'still stopped after the recovery delay (no restart)' ((Get-Service -Name $Service).Status -eq 'Stopped')
Start-Service -Name $Service
Check 'starts again' ((Get-Service -Name $Service).Status -eq 'Running')

# An explicit exit: integration.ps1 reads $LASTEXITCODE (lib.ps1 says why).
exit (Get-ChecksExitCode 'service: ')
