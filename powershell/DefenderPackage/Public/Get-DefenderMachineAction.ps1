function Get-DefenderMachineAction {
    <#
    .SYNOPSIS
    Gets machine actions from Defender for Endpoint.

    .DESCRIPTION
    Looks up each machine action by id and returns it as the service describes it: id, type,
    status (Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled), machineId,
    computerDnsName, requestor, requestorComment, creationDateTimeUtc and the other fields of the
    API's MachineAction.

    Ids come from -ActionId or the pipeline: strings, or objects with an Id or ActionId property
    (MachineAction objects, the output of Save-DefenderInvestigationPackage). An id that cannot be
    looked up writes an error (Defender.NotFound for an unknown one) and the others go on.

    .PARAMETER ActionId
    The machine action ids.

    .EXAMPLE
    PS> Get-DefenderMachineAction -ActionId 7f2b5a3e-1c1d-4d6a-9b0e-2f3c4d5e6f70

    Shows one machine action and its status.

    .EXAMPLE
    PS> Get-Content ./actions.txt | Get-DefenderMachineAction | Where-Object status -eq 'Succeeded'

    Looks up a list of action ids and keeps the finished collections.

    .OUTPUTS
    DefenderPackage.MachineAction

    .LINK
    Wait-DefenderMachineAction

    .LINK
    Start-DefenderInvestigationPackageCollection
    #>
    [CmdletBinding()]
    [OutputType('DefenderPackage.MachineAction')]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline, ValueFromPipelineByPropertyName)]
        [Alias('Id')]
        [ValidateNotNullOrEmpty()]
        [string[]] $ActionId
    )

    process {
        foreach ($id in $ActionId) {
            Invoke-DefenderCall -Command $PSCmdlet -Call {
                param($scope)
                $scope.GetMachineAction($id) | ConvertTo-DefenderMachineAction
            }
        }
    }
}
