function Wait-DefenderMachineAction {
    <#
    .SYNOPSIS
    Waits for machine actions to finish.

    .DESCRIPTION
    Polls each machine action, with back-off (5 s growing to a minute), until it has Succeeded,
    and returns it. An action that ends Failed, TimeOut or Cancelled writes a Defender.ActionFailed
    error at once; one still running after -Timeout writes Defender.Timeout. Either way the next
    action goes on. The library's waiting messages go to the verbose stream. Ctrl+C stops the wait
    promptly.

    .PARAMETER ActionId
    The machine action ids, from the parameter or the pipeline (strings, or objects with an Id or
    ActionId property).

    .PARAMETER Timeout
    How many seconds to wait for each action at most. Default: one hour.

    .EXAMPLE
    PS> Start-DefenderInvestigationPackageCollection -MachineId $machineId -Comment 'Incident 4711' | Wait-DefenderMachineAction -Verbose

    Starts a collection and waits for it, showing each poll.

    .EXAMPLE
    PS> Wait-DefenderMachineAction -ActionId $id -Timeout 900 -ErrorAction Stop

    Waits up to 15 minutes and stops the script when the collection fails or takes longer.

    .OUTPUTS
    DefenderPackage.MachineAction

    .LINK
    Get-DefenderMachineAction

    .LINK
    Save-DefenderInvestigationPackage
    #>
    [CmdletBinding()]
    [OutputType('DefenderPackage.MachineAction')]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline, ValueFromPipelineByPropertyName)]
        [Alias('Id')]
        [ValidateNotNullOrEmpty()]
        [string[]] $ActionId,

        [ValidateRange(1, 2147483)]
        [int] $Timeout = 3600
    )

    process {
        foreach ($id in $ActionId) {
            Invoke-DefenderCall -Command $PSCmdlet -Option @{ wait_timeout_ms = [string]($Timeout * 1000) } -Call {
                param($scope)
                $scope.WaitForAction($id) | ConvertTo-DefenderMachineAction
            }
        }
    }
}
