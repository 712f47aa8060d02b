function Start-DefenderInvestigationPackageCollection {
    <#
    .SYNOPSIS
    Starts collecting an investigation package on devices.

    .DESCRIPTION
    Asks Defender for Endpoint to collect an investigation package (autoruns, processes, network
    connections, event logs, ...) on each device, and returns the machine action that tracks the
    collection; pipe it to Wait-DefenderMachineAction or Save-DefenderInvestigationPackage -Wait.

    When a collection is already running on a device, that one is returned instead: it yields the
    same package. The request is sent once and never repeated blindly. An unknown device writes a
    Defender.NotFound error and the next one goes on.

    .PARAMETER MachineId
    The Defender for Endpoint device ids (40 hex characters), from the parameter or the pipeline
    (strings, or objects with a MachineId property).

    .PARAMETER Comment
    Why the package is collected; recorded with the action in the Defender portal.

    .EXAMPLE
    PS> Start-DefenderInvestigationPackageCollection -MachineId 1e5bc9d7e413ddd7902c2932e418702b84d0cc07 -Comment 'Incident 4711: suspicious service'

    Starts a collection and shows its machine action.

    .EXAMPLE
    PS> $ids | Start-DefenderInvestigationPackageCollection -Comment 'Incident 4711' -WhatIf

    Shows which devices a collection would be started on, without starting any.

    .EXAMPLE
    PS> Start-DefenderInvestigationPackageCollection -MachineId $machineId -Comment 'Incident 4711' |
    >>     Save-DefenderInvestigationPackage -Path D:\Cases\4711 -Wait -PassThru

    Collects a package and saves it once it is ready.

    .OUTPUTS
    DefenderPackage.MachineAction

    .LINK
    Wait-DefenderMachineAction

    .LINK
    Save-DefenderInvestigationPackage
    #>
    [CmdletBinding(SupportsShouldProcess, ConfirmImpact = 'Medium')]
    [OutputType('DefenderPackage.MachineAction')]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline, ValueFromPipelineByPropertyName)]
        [ValidateNotNullOrEmpty()]
        [string[]] $MachineId,

        [Parameter(Mandatory)]
        [ValidateNotNullOrEmpty()]
        [string] $Comment
    )

    process {
        foreach ($id in $MachineId) {
            if (-not $PSCmdlet.ShouldProcess("device $id", 'Collect an investigation package')) {
                continue
            }
            Invoke-DefenderCall -Command $PSCmdlet -Call {
                param($scope)
                $scope.CollectInvestigationPackage($id, $Comment) | ConvertTo-DefenderMachineAction
            }
        }
    }
}
