<#
.SYNOPSIS
  The checks' bookkeeping that every script of windows/verify shares.

.DESCRIPTION
  Not run on its own: a script dot-sources it first, from its own folder,

    . (Join-Path $PSScriptRoot 'lib.ps1')

  which sets the script's $failed to 0 and defines Check, which prints one
  check as PASS or FAIL and counts a FAIL in that $failed, and
  Get-ChecksExitCode, which prints the summary and returns the script's exit
  code (1 on any FAIL, else 0). A script ends with an explicit exit of it:

    exit (Get-ChecksExitCode 'network: ')

  (integration.ps1 reads $LASTEXITCODE of each script it calls, which a
  script that ends without exit leaves as it was: unset, or a native
  command's.)
#>
$failed = 0

function Check([string] $what, [bool] $ok, [string] $detail = '') {
    if ($ok) { Write-Host "PASS $what" } else { Write-Host "FAIL $what $detail"; $script:failed++ }
}

function Get-ChecksExitCode([string] $prefix = '') {
    if ($script:failed) { Write-Host "$prefix$($script:failed) check(s) failed"; return 1 }
    Write-Host "${prefix}all checks passed"
    return 0
}
