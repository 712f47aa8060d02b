function Save-DefenderInvestigationPackage {
    <#
    .SYNOPSIS
    Downloads investigation packages to disk.

    .DESCRIPTION
    For each collection, gets a fresh download link and downloads the package at once, with a
    progress bar. The file is written beside its destination under a temporary name, synced and
    renamed into place only when it is complete, has the announced length and is a ZIP: a failed
    or cancelled download (Ctrl+C) leaves no file. An existing file is kept unless -Force is given.

    The service allows 2 link requests a minute and 120 an hour per app; the library keeps within
    that by waiting, so a long pipeline of ids is slow but does not fail on throttling.

    Each id that fails writes an error (Defender.NotReady while the collection runs,
    Defender.NotFound, Defender.ActionFailed, Defender.Exists, ...) and the next id goes on. With
    -PassThru, each saved package is returned with its path, size and SHA-256; the SHA-256 is also
    written to the verbose stream.

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
    Return an object for each saved package: ActionId, Path, Size, Sha256, Elapsed.

    .EXAMPLE
    PS> Save-DefenderInvestigationPackage -ActionId $id -Path D:\Cases\4711 -PassThru

    Saves one package as D:\Cases\4711\<id>.zip and shows its size and SHA-256.

    .EXAMPLE
    PS> Start-DefenderInvestigationPackageCollection -MachineId $machineId -Comment 'Incident 4711' |
    >>     Save-DefenderInvestigationPackage -Path D:\Cases\4711 -Wait -Timeout 1800 -PassThru

    Collects a package, waits up to 30 minutes for it, and saves it.

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
        # A file takes one package; a second would replace the first, or fail.
        $savedToFile = $false
    }

    process {
        foreach ($id in $ActionId) {
            $target = if ($toFile) { $destination } else { Join-Path $destination "$id.zip" }
            if (-not $PSCmdlet.ShouldProcess("machine action $id", "Save the investigation package to '$target'")) {
                continue
            }
            if ($savedToFile) {
                $PSCmdlet.WriteError((New-DefenderErrorRecord -Reason InvalidArgument -Category InvalidArgument -Target $id `
                            -Message "-Path '$destination' is a file and already holds another package; give a folder to save several."))
                continue
            }
            $package = Save-DefenderPackage -Command $PSCmdlet -ActionId $id -Destination $target -Option $options
            if ($package) {
                $savedToFile = $toFile
                if ($PassThru) {
                    $package
                }
            }
        }
    }
}
