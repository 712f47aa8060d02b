# How long importing DefenderPackage adds to starting PowerShell: the median wall time of
#   pwsh -NoProfile -c 1
#   pwsh -NoProfile -c 'Import-Module DefenderPackage'
# each run as a fresh process, alternating so that machine noise hits both alike. The module is
# found by name, as an installed one is: its parent folder goes first on PSModulePath.
#
# Usage: pwsh -NoProfile -File bench/import-time.ps1 [-Runs 15] [-ModulePath <folder>] [-Pwsh <pwsh>]
#   -ModulePath  the laid-out module (default: target/powershell/DefenderPackage, from
#                powershell/build.sh; build it first)
# Prints both medians and the difference; the goal is at most +0.5 s. A benchmark, not a test.
param(
    [ValidateRange(3, 1000)] [int] $Runs = 15,
    [string] $ModulePath = (Join-Path $PSScriptRoot '../target/powershell/DefenderPackage'),
    [string] $Pwsh = (Join-Path $PSHOME $(if ($IsWindows) { 'pwsh.exe' } else { 'pwsh' }))
)

$ErrorActionPreference = 'Stop'
$ModulePath = (Resolve-Path -LiteralPath $ModulePath).Path
if (-not (Test-Path -LiteralPath (Join-Path $ModulePath 'DefenderPackage.psd1'))) {
    throw "No module at '$ModulePath': run powershell/build.sh first."
}

function Measure-Start {
    # Wall seconds of one fresh pwsh running $Command; fails when it fails.
    param([string] $Command)
    $start = [Diagnostics.ProcessStartInfo]::new($Pwsh)
    foreach ($argument in '-NoProfile', '-NonInteractive', '-Command', $Command) { $start.ArgumentList.Add($argument) }
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $start.Environment['PSModulePath'] = (Split-Path $ModulePath -Parent) + [IO.Path]::PathSeparator + $env:PSModulePath
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $process = [Diagnostics.Process]::Start($start)
    $errors = $process.StandardError.ReadToEndAsync()
    $null = $process.StandardOutput.ReadToEnd()
    $process.WaitForExit()
    $clock.Stop()
    if ($process.ExitCode -ne 0) { throw "'$Command' failed ($($process.ExitCode)): $($errors.Result)" }
    $clock.Elapsed.TotalSeconds
}

function Get-Median([double[]] $Values) {
    $sorted = $Values | Sort-Object
    $middle = [int][Math]::Floor($sorted.Count / 2)
    if ($sorted.Count % 2) { $sorted[$middle] } else { ($sorted[$middle - 1] + $sorted[$middle]) / 2 }
}

$bare = [Collections.Generic.List[double]]::new()
$import = [Collections.Generic.List[double]]::new()
# One of each first, not counted: the first start warms the disk cache.
$null = Measure-Start '1'
$null = Measure-Start 'Import-Module DefenderPackage'
for ($run = 0; $run -lt $Runs; $run++) {
    $bare.Add((Measure-Start '1'))
    $import.Add((Measure-Start 'Import-Module DefenderPackage'))
}
$bareMedian = Get-Median $bare
$importMedian = Get-Median $import
'pwsh {0}, {1} runs each, module {2}' -f $PSVersionTable.PSVersion, $Runs, $ModulePath
"pwsh -NoProfile -c 1                                  median {0:0.000} s" -f $bareMedian
"pwsh -NoProfile -c 'Import-Module DefenderPackage'    median {0:0.000} s" -f $importMedian
"import adds                                           {0:+0.000;-0.000} s (goal: at most +0.5 s)" -f ($importMedian - $bareMedian)
