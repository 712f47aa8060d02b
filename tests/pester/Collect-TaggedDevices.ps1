# A runbook (Azure Automation, PowerShell 7 runtime) that collects the investigation package of
# every device with a tag, signed in with the Automation account's managed identity.
param(
    [Parameter(Mandatory)] [string] $Tag,
    [Parameter(Mandatory)] [string] $Incident,
    [string] $Path = (Join-Path ([IO.Path]::GetTempPath()) $Incident)
)
$ErrorActionPreference = 'Stop'
Import-Module DefenderPackage
Connect-DefenderApi -Identity                      # -Identity -ClientId <id> for a user-assigned one
try {
    # No device with the tag stops the runbook (Defender.NoMatch) instead of "succeeding".
    $devices = Get-DefenderMachine -Tag $Tag
    $packages = $devices | Start-DefenderInvestigationPackageCollection -Comment "Incident $Incident" |
        Save-DefenderInvestigationPackage -Path $Path -Wait -Timeout 3600 -FileNamePattern '{ComputerName}_{ActionId}.zip' -PassThru `
            -ErrorAction Continue -ErrorVariable failed
    # Hand the files on (a storage account, a case system), each with its device and SHA-256.
    ConvertTo-Json -InputObject @($packages | Select-Object ComputerDnsName, MachineId, ActionId, Path, Sha256)
    # Each failure's message names its device (its TargetObject too: .Device, .ActionId).
    foreach ($failure in $failed) { Write-Warning $failure.Exception.Message }
    if ($failed) { throw "$($failed.Count) of the $(@($devices).Count) devices tagged $Tag have no package." }
} finally {
    Disconnect-DefenderApi
}
