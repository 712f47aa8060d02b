# DefenderPackage: PowerShell commands over the defender native library.
#
# The C# binding is compiled ahead of time into DefenderPackage.dll, which the manifest loads
# (nothing is compiled at import). Importing loads the native library for this OS and
# architecture: from runtimes/<rid>/native/ inside the module, or, for a module built into a
# cargo target dir (powershell/build.sh), from that target dir's release or debug output (the
# newer one; $env:CARGO_TARGET_DIR overrides). -Verbose says which file it loaded.

Set-StrictMode -Version 3.0

function Find-DefenderNativeLibrary {
    # The native library this module should load, or a terminating error naming where it looked.
    $fileName = [Defender.DefenderLibrary]::FileName
    $rid = [Defender.DefenderLibrary]::RuntimeIdentifier
    $packaged = Join-Path $PSScriptRoot "runtimes/$rid/native/$fileName"
    if (Test-Path -LiteralPath $packaged -PathType Leaf) {
        return $packaged
    }
    $targetDirectory = if ($env:CARGO_TARGET_DIR) {
        [IO.Path]::GetFullPath($env:CARGO_TARGET_DIR)
    } else {
        # powershell/build.sh lays the module out in <target>/powershell/DefenderPackage.
        Split-Path (Split-Path $PSScriptRoot -Parent) -Parent
    }
    $built = @('release', 'debug') | ForEach-Object { Join-Path (Join-Path $targetDirectory $_) $fileName }
    $newest = $built | Where-Object { Test-Path -LiteralPath $_ -PathType Leaf } |
        Sort-Object { (Get-Item -LiteralPath $_).LastWriteTimeUtc } -Descending |
        Select-Object -First 1
    if ($newest) {
        return $newest
    }
    $lookedIn = (@($packaged) + $built) -join "', '"
    throw [IO.FileNotFoundException]::new(
        "The defender native library ($fileName for $rid) was not found. Looked in '$lookedIn'. " +
        "Put it in the module's runtimes/$rid/native folder, or build it in the source tree with 'cargo build -p defender'.",
        $packaged)
}

function Test-VerboseImport {
    # Whether the Import-Module command that imported this module asked for -Verbose, which
    # does not reach a script module's own Write-Verbose (it sees the global preference).
    # $Invocation is the module script's $MyInvocation: the importing line and the column the
    # Import-Module command is at.
    param([System.Management.Automation.InvocationInfo] $Invocation)
    $ast = [System.Management.Automation.Language.Parser]::ParseInput($Invocation.Line, [ref]$null, [ref]$null)
    $import = $ast.Find({
            param($node)
            $node -is [System.Management.Automation.Language.CommandAst] -and
            $node.GetCommandName() -in 'Import-Module', 'ipmo' -and
            $node.Extent.StartColumnNumber -le $Invocation.OffsetInLine -and
            $Invocation.OffsetInLine -le $node.Extent.EndColumnNumber
        }, $true)
    $verbose = if ($import) {
        $import.CommandElements | Where-Object {
            $_ -is [System.Management.Automation.Language.CommandParameterAst] -and $_.ParameterName -in 'Verbose', 'vb'
        }
    }
    $null -ne $verbose -and ($null -eq $verbose.Argument -or $verbose.Argument.Extent.Text -eq '$true')
}

$loaded = [Defender.DefenderLibrary]::LoadedPath
if (-not $loaded) {
    [Defender.DefenderLibrary]::Load((Find-DefenderNativeLibrary))
    $loaded = [Defender.DefenderLibrary]::LoadedPath
}
Write-Verbose -Verbose:((Test-VerboseImport $MyInvocation) -or $VerbosePreference -ne 'SilentlyContinue') `
    "DefenderPackage: using the defender native library $([Defender.DefenderLibrary]::Version) from '$loaded'."
Remove-Variable loaded

foreach ($folder in 'Private', 'Public') {
    foreach ($script in Get-ChildItem -Path (Join-Path $PSScriptRoot $folder) -Filter '*.ps1') {
        . $script.FullName
    }
}
# One command per file in Public/ (the manifest lists the same); the rest stays private, also
# when this file is imported without the manifest.
Export-ModuleMember -Function (Get-ChildItem -Path (Join-Path $PSScriptRoot 'Public') -Filter '*.ps1').BaseName

# The session's connection (Connect-DefenderApi); freed with the module.
$script:Connection = $null
$ExecutionContext.SessionState.Module.OnRemove = { Disconnect-DefenderApi }
