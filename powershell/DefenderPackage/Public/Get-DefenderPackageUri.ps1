function Get-DefenderPackageUri {
    <#
    .SYNOPSIS
    Gets the short-lived download link of an investigation package.

    .DESCRIPTION
    Asks the service (getPackageUri) for a fresh link to the investigation package of each
    collection. The link expires within minutes and carries its own credential in its query (a
    SAS token): download it at once, and do not log it. The table view shows the link without its
    query, so that a screen or a transcript does not hold the credential; the Uri property has
    the whole link. Save-DefenderInvestigationPackage gets a link and downloads it in one
    step, which is what you usually want.

    The service allows 2 of these calls a minute and 120 an hour per app; the library keeps
    within that by waiting. A collection that is not finished yet writes a Defender.NotReady
    error, an unknown action Defender.NotFound, a collection that failed Defender.ActionFailed;
    the next id goes on.

    .PARAMETER ActionId
    The ids of CollectInvestigationPackage machine actions, from the parameter or the pipeline
    (strings, or objects with an Id or ActionId property).

    .EXAMPLE
    PS> $link = Get-DefenderPackageUri -ActionId $id
    PS> Invoke-WebRequest -Uri $link.Uri -OutFile "$id.zip"

    Downloads a package with another tool.

    .OUTPUTS
    DefenderPackage.PackageUri

    .LINK
    Save-DefenderInvestigationPackage
    #>
    [CmdletBinding()]
    [OutputType('DefenderPackage.PackageUri')]
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
                $uri = $scope.GetPackageUri($id)
                if ($uri) {
                    [pscustomobject]@{
                        PSTypeName = 'DefenderPackage.PackageUri'
                        ActionId   = $id
                        Uri        = $uri
                    }
                }
            }
        }
    }
}
