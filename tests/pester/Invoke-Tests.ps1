# Runs the Pester suites of tests/pester (Pester 5 must be importable: tests/run-all.sh puts it
# on PSModulePath). Exits with the number of failed tests, so 0 means every test passed.
# -ExcludeTag leaves out the tests with those tags (the windows suite: what Wine cannot run).
param([string[]] $Path = $PSScriptRoot, [string[]] $ExcludeTag = @())

$ErrorActionPreference = 'Stop'
Import-Module Pester -MinimumVersion 5.0 -MaximumVersion 5.99
$configuration = New-PesterConfiguration
$configuration.Run.Path = $Path
$configuration.Run.PassThru = $true
$configuration.Filter.ExcludeTag = $ExcludeTag
$configuration.Output.Verbosity = 'Detailed'
$configuration.Output.RenderMode = 'Plaintext'
$result = Invoke-Pester -Configuration $configuration
"$($result.PassedCount) passed, $($result.FailedCount) failed, $($result.SkippedCount) skipped"
exit ($result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount)
