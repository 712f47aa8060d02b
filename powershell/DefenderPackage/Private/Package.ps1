function Save-DefenderPackage {
    # Downloads one package with a progress bar on $Command; returns it, or nothing after writing
    # an error. (The batch download of the library will take the ids collected in process {}.)
    param(
        [Parameter(Mandatory)] [System.Management.Automation.PSCmdlet] $Command,
        [Parameter(Mandatory)] [string] $ActionId,
        [Parameter(Mandatory)] [string] $Destination,
        [Parameter(Mandatory)] [hashtable] $Option
    )
    Invoke-DefenderCall -Command $Command -Option $Option -Call {
        param($scope)
        $saved = $scope.DownloadPackage($ActionId, $Destination)
        if (-not $saved) {
            return
        }
        [pscustomobject]@{
            PSTypeName = 'DefenderPackage.InvestigationPackage'
            ActionId   = $saved.ActionId
            Path       = $saved.Path
            Size       = $saved.Bytes
            Sha256     = $saved.Sha256
            Elapsed    = $saved.Elapsed
        }
    }
}
