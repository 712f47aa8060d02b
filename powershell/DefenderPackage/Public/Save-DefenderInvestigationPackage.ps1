function Save-DefenderInvestigationPackage {
    <#
    .SYNOPSIS
    Downloads investigation packages to disk.

    .DESCRIPTION
    Downloads the investigation package of each collection: a fresh download link, then the
    package at once, with a progress bar. The file is written beside its destination under a
    temporary name, synced and renamed into place only when it is complete, has the announced
    length and is a ZIP: a failed or cancelled download (Ctrl+C) leaves no file. An existing file
    is kept unless -Force is given.

    The ids from the pipeline are collected first (each confirmed on its own with -Confirm, or
    only shown with -WhatIf), then downloaded together into the folder of -Path, several at once:
    4 by default, or the option max_concurrent_downloads of Connect-DefenderApi -Option. Each
    package running has a progress bar under one for the whole batch ("2 of 5 packages").

    The service allows 2 link requests a minute and 120 an hour per app; the library keeps within
    that by waiting, so a long pipeline of ids is slow but does not fail on throttling.

    Each package is reported as soon as it is finished, in the order they finish: with -PassThru
    a saved package is returned with its path, size and SHA-256 (also written to the verbose
    stream), and one that fails writes an error about its action id (Defender.NotReady while the
    collection runs, Defender.NotFound, Defender.ActionFailed, Defender.Exists, ...) while the
    others go on. An id given twice is saved once; its repeat writes Defender.InvalidArgument.
    With -ErrorAction Stop the first failure stops the command and cancels the packages still
    downloading, which leave no file; the packages saved before it stay. Ctrl+C cancels the
    whole batch the same way.

    .PARAMETER ActionId
    The ids of CollectInvestigationPackage machine actions, from the parameter or the pipeline
    (strings, or objects with an Id or ActionId property, such as the output of
    Start-DefenderInvestigationPackageCollection).

    .PARAMETER Path
    A folder, where each package is saved as <action id>.zip (created when missing), or, for a
    single package, an existing file or a path ending in .zip. Default: the current location.

    .PARAMETER Wait
    Wait for each collection to finish before downloading it, instead of failing with
    Defender.NotReady.

    .PARAMETER Timeout
    With -Wait: how many seconds to wait for each collection at most. Default: one hour.

    .PARAMETER Force
    Replace an existing file.

    .PARAMETER PassThru
    Return an object for each saved package as soon as it is saved: ActionId, Path, Size, Sha256,
    Elapsed.

    .EXAMPLE
    PS> Save-DefenderInvestigationPackage -ActionId $id -Path D:\Cases\4711 -PassThru

    Saves one package as D:\Cases\4711\<id>.zip and shows its size and SHA-256.

    .EXAMPLE
    PS> Get-Content ./actions.txt | Save-DefenderInvestigationPackage -Path ./cases -PassThru -ErrorVariable failed
    PS> $failed | Select-Object TargetObject, FullyQualifiedErrorId

    Saves the packages of every id in the file, four at a time, each shown as it arrives; then
    lists the ids that failed and why.

    .EXAMPLE
    PS> $machineIds | Start-DefenderInvestigationPackageCollection -Comment 'Incident 4711' |
    >>     Save-DefenderInvestigationPackage -Path D:\Cases\4711 -Wait -Timeout 1800 -PassThru

    Starts a collection on each device, then waits up to 30 minutes for each and saves them all as
    they become ready.

    .EXAMPLE
    PS> Connect-DefenderApi -Identity -Option @{ max_concurrent_downloads = 8 }
    PS> Import-Csv ./incident.csv | Save-DefenderInvestigationPackage -Path ./cases -Force

    Downloads up to eight packages at once (the ids from the CSV's ActionId column), replacing
    older copies.

    .EXAMPLE
    PS> Get-Content ./actions.txt | Save-DefenderInvestigationPackage -Path ./cases -WhatIf

    Shows which packages would be saved where, without downloading anything.

    .EXAMPLE
    PS> Save-DefenderInvestigationPackage -ActionId $id -Path ./package.zip -Force -ErrorAction Stop

    Saves one package under a chosen name, replacing an older copy, and stops the script if it fails.

    .OUTPUTS
    DefenderPackage.InvestigationPackage (with -PassThru)

    .LINK
    Start-DefenderInvestigationPackageCollection

    .LINK
    Get-DefenderPackageUri
    #>
    [CmdletBinding(SupportsShouldProcess, ConfirmImpact = 'Low', DefaultParameterSetName = 'Now')]
    [OutputType('DefenderPackage.InvestigationPackage')]
    param(
        [Parameter(Mandatory, Position = 0, ValueFromPipeline, ValueFromPipelineByPropertyName)]
        [Alias('Id')]
        [ValidateNotNullOrEmpty()]
        [string[]] $ActionId,

        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty()]
        [string] $Path = '.',

        [Parameter(Mandatory, ParameterSetName = 'Wait')]
        [switch] $Wait,

        [Parameter(ParameterSetName = 'Wait')]
        [ValidateRange(1, 2147483)]
        [int] $Timeout = 3600,

        [switch] $Force,

        [switch] $PassThru
    )

    begin {
        # The library resolves relative paths against the process's directory, not this session's location.
        $destination = $PSCmdlet.GetUnresolvedProviderPathFromPSPath($Path)
        $toFile = (Test-Path -LiteralPath $destination -PathType Leaf) -or
            ($destination.EndsWith('.zip', [StringComparison]::OrdinalIgnoreCase) -and -not (Test-Path -LiteralPath $destination))
        if (-not $toFile -and -not (Test-Path -LiteralPath $destination) -and $PSCmdlet.ShouldProcess($destination, 'Create folder')) {
            $null = New-Item -ItemType Directory -Path $destination -Force -ErrorAction Stop
        }
        $options = @{}
        if ($Force) {
            $options.overwrite = 'true'
        }
        if ($Wait) {
            $options.wait_timeout_ms = [string]($Timeout * 1000)
        }
        # Saved together in end {}: one batch downloads them several at once.
        $approved = [Collections.Generic.List[string]]::new()
    }

    process {
        foreach ($id in $ActionId) {
            $target = if ($toFile) { $destination } else { Join-Path $destination "$id.zip" }
            if (-not $PSCmdlet.ShouldProcess("machine action $id", "Save the investigation package to '$target'")) {
                continue
            }
            if ($toFile -and $approved.Count -gt 0) {
                $PSCmdlet.WriteError((New-DefenderErrorRecord -Reason InvalidArgument -Category InvalidArgument -Target $id `
                            -Message "-Path '$destination' is a file and takes one package; give a folder to save several."))
                continue
            }
            $approved.Add($id)
        }
    }

    end {
        if ($approved.Count -eq 0) {
            return
        }
        Invoke-DefenderCall -Command $PSCmdlet -Option $options -Call {
            param($scope)
            if ($toFile) {
                $scope.SavePackage($approved[0], $destination, $PassThru.IsPresent)
            } else {
                $scope.SavePackages($approved, $destination, $PassThru.IsPresent)
            }
        }
    }
}
