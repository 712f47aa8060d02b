# Installs the packages of packaging/pack.sh as users do, and uses them against the simulator.
# tests/run-all.sh install runs this file in a throwaway HOME (so the user module path, the
# PSResourceGet repositories and the NuGet package folder start empty) after packing into
# $env:DEFENDER_DIST, with:
#   DEFENDER_DIST        the folder holding DefenderPackage.<version>.nupkg and Defender.Interop.<version>.nupkg
#   DEFENDER_VERSION     the crate's version, which everything must carry
#   DEFENDER_EXTRA_NATIVES  the folder (<rid>/<library>) of libraries for other runtimes given to pack.sh
#   DEFENDER_USER_HOME   the HOME of the user running the tests, for the machine's NuGet sources
#   DEFENDER_PWSH        the pwsh running this file (a .NET tool's is not [Environment]::ProcessPath)
#   DEFENDER_MODULE_FOLDER  the module folder pack.sh packed (powershell/build.sh's, other runtimes added)

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../pester/TestHelpers.psm1') -Force
    $script:Dist = $env:DEFENDER_DIST
    $script:Version = $env:DEFENDER_VERSION
    $script:ExtraNatives = $env:DEFENDER_EXTRA_NATIVES
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "defender-install-$PID"
    $null = New-Item -ItemType Directory -Path $script:Work -Force
    $script:Rid = if ($IsWindows) { 'win' } elseif ($IsMacOS) { 'osx' } else { 'linux' }
    $script:Rid += '-' + [Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture.ToString().ToLowerInvariant()
    $script:Library = if ($IsWindows) { 'defender.dll' } elseif ($IsMacOS) { 'libdefender.dylib' } else { 'libdefender.so' }

    function Get-PackageEntry {
        # The entries of a .nupkg (a ZIP): full name => SHA-256 of the bytes.
        param([string] $Package)
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($Package)
        try {
            $entries = @{}
            foreach ($entry in $zip.Entries) {
                $stream = $entry.Open()
                try {
                    $entries[$entry.FullName] = ([BitConverter]::ToString([Security.Cryptography.SHA256]::HashData($stream)) -replace '-').ToLowerInvariant()
                } finally {
                    $stream.Dispose()
                }
            }
            $entries
        } finally {
            $zip.Dispose()
        }
    }

    function Get-FolderEntry {
        # The files under a folder: path relative to it, with '/' => SHA-256 of the bytes.
        param([string] $Folder)
        $root = (Resolve-Path -LiteralPath $Folder).Path.TrimEnd('/', '\')
        $entries = @{}
        foreach ($file in Get-ChildItem -LiteralPath $root -Recurse -File) {
            $entries[$file.FullName.Substring($root.Length + 1).Replace('\', '/')] =
                (Get-FileHash -LiteralPath $file.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        }
        $entries
    }

    function Get-NuspecVersion {
        param([string] $Package)
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($Package)
        try {
            $nuspec = $zip.Entries | Where-Object FullName -like '*.nuspec'
            $reader = [IO.StreamReader]::new($nuspec.Open())
            try { ([xml]$reader.ReadToEnd()).package.metadata.version } finally { $reader.Dispose() }
        } finally {
            $zip.Dispose()
        }
    }

    function Invoke-Native {
        # Runs a program, failing with its output when it exits non-zero; returns its output lines.
        param([string] $FilePath, [string[]] $ArgumentList)
        $output = @(& $FilePath @ArgumentList 2>&1 | ForEach-Object { "$_" })
        if ($LASTEXITCODE -ne 0) {
            throw "$FilePath $($ArgumentList -join ' ') exited $LASTEXITCODE`n$($output -join "`n")"
        }
        , $output
    }

    function Read-SavedPackage {
        # The JSON object a program printed on its last line, after checking that the file it
        # saved, and the SHA-256 it reported, are those of the simulator's package.
        param([string[]] $Output, [string] $ActionId)
        $result = $Output[-1] | ConvertFrom-Json
        $expected = Get-SimulatedPackageHash -Simulator $script:Simulator -ActionId $ActionId
        $result.sha256 | Should -Be $expected
        (Get-FileHash -LiteralPath $result.path -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $expected
        $result
    }

    $script:Simulator = Start-TestSimulator
    $script:ModulePackage = Join-Path $script:Dist "DefenderPackage.$script:Version.nupkg"
    $script:DotnetPackage = Join-Path $script:Dist "Defender.Interop.$script:Version.nupkg"
}

AfterAll {
    if ($script:Simulator) { Stop-TestSimulator -Simulator $script:Simulator }
    Remove-Item -LiteralPath $script:Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'the packages pack.sh wrote' {
    It 'carry the crate version, as the module manifest does' {
        Get-NuspecVersion $script:ModulePackage | Should -Be $script:Version
        Get-NuspecVersion $script:DotnetPackage | Should -Be $script:Version
    }

    It 'the module package holds the manifest, the assembly, formats, and the library of every runtime given' {
        $entries = Get-PackageEntry $script:ModulePackage
        # Every file of the module folder, byte for byte (help and all that the module build lays out).
        $folder = Get-FolderEntry $env:DEFENDER_MODULE_FOLDER
        foreach ($name in $folder.Keys) {
            $entries[$name] | Should -Be $folder[$name] -Because "$name is part of the module"
        }
        foreach ($name in 'DefenderPackage.psd1', 'DefenderPackage.dll', 'DefenderPackage.Format.ps1xml', "runtimes/$script:Rid/native/$script:Library") {
            $entries.Keys | Should -Contain $name
        }
        foreach ($native in Get-ChildItem -LiteralPath $script:ExtraNatives -Recurse -File) {
            $rid = $native.Directory.Name
            $entries["runtimes/$rid/native/$($native.Name)"] | Should -Be (Get-FileHash -LiteralPath $native.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        }
    }

    It 'the .NET package holds the netstandard2.0 assembly and the library of every runtime given' {
        $entries = Get-PackageEntry $script:DotnetPackage
        $entries.Keys | Should -Contain 'lib/netstandard2.0/Defender.Interop.dll'
        $entries.Keys | Should -Contain "runtimes/$script:Rid/native/$script:Library"
        foreach ($native in Get-ChildItem -LiteralPath $script:ExtraNatives -Recurse -File) {
            $rid = $native.Directory.Name
            $entries["runtimes/$rid/native/$($native.Name)"] | Should -Be (Get-FileHash -LiteralPath $native.FullName -Algorithm SHA256).Hash.ToLowerInvariant()
        }
        # The same library for this runtime in both packages.
        $entries["runtimes/$script:Rid/native/$script:Library"] |
            Should -Be (Get-PackageEntry $script:ModulePackage)["runtimes/$script:Rid/native/$script:Library"]
    }
}

Describe 'Install-PSResource DefenderPackage from dist/ registered as a repository' {
    BeforeAll {
        # What docs/powershell.md tells users until the module is on the gallery. The gallery itself is
        # out of reach here: unregistered, so that nothing is asked of it.
        Unregister-PSResourceRepository -Name PSGallery -ErrorAction SilentlyContinue
        Register-PSResourceRepository -Name DefenderDist -Uri $script:Dist -Trusted
        Install-PSResource DefenderPackage -Scope CurrentUser -TrustRepository
        $script:Installed = Get-InstalledPSResource -Name DefenderPackage -Scope CurrentUser
    }

    It 'installs the crate version into the user module path of this (throwaway) HOME' {
        $script:Installed.Version.ToString() | Should -Be $script:Version
        $script:Installed.InstalledLocation | Should -BeLike "$HOME*"
        # The installed folder is the module that was packed, file for file.
        $installed = Get-FolderEntry ([IO.Path]::Combine($script:Installed.InstalledLocation, 'DefenderPackage', $script:Version))
        $installed.Remove('PSGetModuleInfo.xml') # PSResourceGet's record of the installation
        $packed = Get-FolderEntry $env:DEFENDER_MODULE_FOLDER
        ($installed.Keys | Sort-Object) | Should -Be ($packed.Keys | Sort-Object)
        foreach ($name in $packed.Keys) {
            $installed[$name] | Should -Be $packed[$name] -Because "$name as packed"
        }
    }

    It 'a new pwsh imports it by name and downloads a package whose SHA-256 is the simulator''s' {
        $actionId = New-SimulatedAction -Simulator $script:Simulator
        $folder = Join-Path $script:Work 'cases'
        $null = New-Item -ItemType Directory -Path $folder -Force
        $pwsh = $env:DEFENDER_PWSH
        # The new process gets the default module path: this HOME's user path and pwsh's own.
        $modulePath = $env:PSModulePath
        $env:PSModulePath = $null
        $env:DEFENDER_TEST_CLIENT_SECRET = 'simulator-secret'
        try {
            $output = Invoke-Native $pwsh @('-NoProfile', '-NonInteractive', '-File', (Join-Path $PSScriptRoot 'Save-WithInstalledModule.ps1'),
                $script:Simulator.base_url, $script:Simulator.tenant_id, $script:Simulator.client_id, $actionId, $folder)
        } finally {
            $env:PSModulePath = $modulePath
            $env:DEFENDER_TEST_CLIENT_SECRET = $null
        }
        $result = Read-SavedPackage -Output $output -ActionId $actionId
        $result.ModuleBase | Should -Be ([IO.Path]::Combine($script:Installed.InstalledLocation, 'DefenderPackage', $script:Version)) `
            -Because 'the installed module, found by name'
        $result.ModuleVersion | Should -Be $script:Version
        $result.LibraryVersion | Should -Be $script:Version -Because 'defender_version() of the packaged library'
        $result.LibraryPath | Should -Be ([IO.Path]::Combine($result.ModuleBase, 'runtimes', $script:Rid, 'native', $script:Library))
    }
}

Describe 'dotnet add package Defender.Interop in a new console program' {
    BeforeAll {
        $script:Project = Join-Path $script:Work 'DefenderConsole'
        $script:Packages = Join-Path $script:Work 'nuget-packages'
        $script:PackagedLibrary = (Get-PackageEntry $script:DotnetPackage)["runtimes/$script:Rid/native/$script:Library"]

        function Invoke-Dotnet {
            # dotnet with the machine's NuGet sources (the user's HOME) and an empty package folder.
            param([string[]] $ArgumentList)
            $home_ = $HOME
            $env:HOME = $env:DEFENDER_USER_HOME
            $env:NUGET_PACKAGES = $script:Packages
            $env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
            $env:DOTNET_NOLOGO = '1'
            try {
                Invoke-Native dotnet $ArgumentList
            } finally {
                $env:HOME = $home_
                $env:NUGET_PACKAGES = $null
            }
        }

        function Invoke-Download {
            # Runs the program (a command and its first arguments) on a new simulated action; its result.
            param([string[]] $Program)
            $actionId = New-SimulatedAction -Simulator $script:Simulator
            $folder = Join-Path $script:Work "dotnet-cases-$actionId"
            $null = New-Item -ItemType Directory -Path $folder -Force
            $env:DEFENDER_TEST_CLIENT_SECRET = 'simulator-secret'
            try {
                $arguments = @($Program | Select-Object -Skip 1) +
                    @($script:Simulator.base_url, $script:Simulator.tenant_id, $script:Simulator.client_id, $actionId, $folder)
                $output = if ($Program[0] -eq 'dotnet') { Invoke-Dotnet $arguments } else { Invoke-Native $Program[0] $arguments }
            } finally {
                $env:DEFENDER_TEST_CLIENT_SECRET = $null
            }
            $result = Read-SavedPackage -Output $output -ActionId $actionId
            $result.library_version | Should -Be $script:Version
            $result.loaded_by_load_call | Should -BeNullOrEmpty -Because 'the program never calls DefenderLibrary.Load'
            (Get-FileHash -LiteralPath $result.native_library -Algorithm SHA256).Hash.ToLowerInvariant() |
                Should -Be $script:PackagedLibrary -Because 'the library .NET found is the package''s'
            $result
        }

        # As a user does: a new program, dist/ added as a package source, the package added.
        $null = Invoke-Dotnet @('new', 'console', '--output', $script:Project, '--name', 'DefenderConsole')
        $null = Invoke-Dotnet @('new', 'nugetconfig', '--output', $script:Project)
        $null = Invoke-Dotnet @('nuget', 'add', 'source', $script:Dist, '--name', 'defender-dist', '--configfile', (Join-Path $script:Project 'nuget.config'))
        $null = Invoke-Dotnet @('add', $script:Project, 'package', 'Defender.Interop', '--version', $script:Version)
        Copy-Item -LiteralPath (Join-Path $PSScriptRoot 'Program.cs') -Destination (Join-Path $script:Project 'Program.cs') -Force
    }

    It 'dotnet run: downloads a package from the simulator with no path set and no Load call' {
        $result = Invoke-Download @('dotnet', 'run', '--project', $script:Project, '--')
        # The build copied the package's runtimes/<rid>/native folder into the output.
        $result.native_library | Should -BeLike ([IO.Path]::Combine($script:Project, 'bin', '*', 'runtimes', $script:Rid, 'native', $script:Library))
    }

    It 'dotnet publish --runtime of this machine: the library beside the program, found there' {
        $published = Join-Path $script:Work 'published'
        $null = Invoke-Dotnet @('publish', $script:Project, '--runtime', $script:Rid, '--no-self-contained', '--output', $published)
        $program = Join-Path $published $(if ($IsWindows) { 'DefenderConsole.exe' } else { 'DefenderConsole' })
        $result = Invoke-Download @($program)
        $result.native_library | Should -Be (Join-Path $published $script:Library)
    }
}
