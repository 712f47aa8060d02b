# Every command against the real native library and a defender-simulator over loopback HTTP.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $modulePath = Get-DefenderModulePath
    Import-Module $modulePath -Force
    $simulator = Start-TestSimulator
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect

    function New-ConnectedShell {
        # A PowerShell instance on its own runspace (as a second console would be), with the
        # module imported and connected to the simulator, with $Option added to (or replacing)
        # the client's options; its streams can be read while it runs.
        param([hashtable] $Option = @{})
        $parameters = $connect.Clone()
        $parameters.Option = $connect.Option.Clone()
        foreach ($key in $Option.Keys) { $parameters.Option[$key] = $Option[$key] }
        $shell = [powershell]::Create()
        $null = $shell.AddScript('param($module, $connect) Import-Module $module; Connect-DefenderApi @connect').
        AddArgument($modulePath).AddArgument($parameters)
        $shell.Invoke()
        $shell.Commands.Clear()
        $shell
    }

    function Wait-Until {
        param([scriptblock] $Condition, [double] $Seconds = 30)
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "timed out after $Seconds s waiting for: $Condition" }
            Start-Sleep -Milliseconds 50
        }
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Save-DefenderInvestigationPackage' {
    BeforeEach {
        $folder = New-TestFolder
    }

    It 'saves the package, as the download host serves it, and returns its path, size and SHA-256' {
        $id = New-SimulatedAction -Simulator $simulator

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -PassThru

        $expectedPath = Join-Path $folder "$id.zip"
        $package.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.InvestigationPackage'
        $package.ActionId | Should -Be $id
        $package.Path | Should -Be $expectedPath
        $package.Size | Should -Be 1MB
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)
        (Get-FileHash -LiteralPath $expectedPath -Algorithm SHA256).Hash | Should -Be $package.Sha256.ToUpperInvariant()
        (Get-ChildItem -LiteralPath $folder -Force).Name | Should -Be "$id.zip"
    }

    It 'resumes what a pwsh killed mid-download left, from its bytes, and says so in ResumedFrom' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 3000000 }
        # The first answer stalls after a block (the library writes 1 MiB at a time) and a bit,
        # so that the kill lands mid-body.
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'download'; action_id = $id; fault = @{ kind = 'stall'; after_bytes = 1MB + 100000; ms = 60000 } }
        $secret = [Net.NetworkCredential]::new('', $connect.ClientSecret).Password
        $child = New-ChildPowerShell -Command ("Import-Module '$modulePath'; " +
            "Connect-DefenderApi -TenantId '$($connect.TenantId)' -ClientId '$($connect.ClientId)' -BaseUri '$($connect.BaseUri)' " +
            "-ClientSecret (ConvertTo-SecureString '$secret' -AsPlainText -Force) -Option @{ authority_url = '$($simulator.base_url)'; rate_limit = 'off' }; " +
            "Save-DefenderInvestigationPackage -ActionId '$id' -Path '$folder'")
        $process = [Diagnostics.Process]::Start($child)
        # Its output is read as it comes, so that a full pipe never holds the child (Wine's pipes
        # are small).
        $childOutput = $process.StandardOutput.ReadToEndAsync(), $process.StandardError.ReadToEndAsync()
        $part = Join-Path $folder ".$id.zip.part"
        try {
            Wait-Until { (Test-Path -LiteralPath $part) -and (Get-Item -LiteralPath $part -Force).Length -ge 1MB } -Seconds 60
        } finally {
            Stop-Process -Id $process.Id -Force
            $process.WaitForExit()
        }
        $kept = (Get-Item -LiteralPath $part -Force).Length

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -PassThru

        $package.ResumedFrom | Should -Be $kept
        $package.ResumedFrom | Should -BeGreaterThan 0
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)
        (Get-ChildItem -LiteralPath $folder -Force).Name | Should -Be "$id.zip" -Because 'no part, record or lock is left'
        (Get-SimulatorRequest -Simulator $simulator -Endpoint download | Where-Object action_id -EQ $id)[-1].range | Should -Be "bytes=$kept-"
    }

    It 'waits with -Wait for another PowerShell saving the same file, then finds it there (Defender.Exists)' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 2000000 }
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'download'; action_id = $id; fault = @{ kind = 'slow_body'; bytes_per_sec = 400000 } }
        $secret = [Net.NetworkCredential]::new('', $connect.ClientSecret).Password
        $child = New-ChildPowerShell -Command ("Import-Module '$modulePath'; " +
            "Connect-DefenderApi -TenantId '$($connect.TenantId)' -ClientId '$($connect.ClientId)' -BaseUri '$($connect.BaseUri)' " +
            "-ClientSecret (ConvertTo-SecureString '$secret' -AsPlainText -Force) -Option @{ authority_url = '$($simulator.base_url)'; rate_limit = 'off' }; " +
            "Save-DefenderInvestigationPackage -ActionId '$id' -Path '$folder'")
        $process = [Diagnostics.Process]::Start($child)
        # Its output is read as it comes, so that a full pipe never holds the child (Wine's pipes
        # are small).
        $childOutput = $process.StandardOutput.ReadToEndAsync(), $process.StandardError.ReadToEndAsync()
        try {
            Wait-Until { Test-Path -LiteralPath (Join-Path $folder ".$id.zip.part") } -Seconds 60

            Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable busy -ErrorAction SilentlyContinue
            # -Timeout is in the service's time: the simulator's clock runs $simulator.ClockScale times faster.
            Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Wait -Timeout 36000 -ErrorVariable waited -ErrorAction SilentlyContinue
        } finally {
            $process.WaitForExit(60000) | Should -BeTrue -Because "the child saves the file in seconds (it wrote: $(($childOutput | Where-Object IsCompleted | ForEach-Object Result) -join ' '))"
        }

        $busy[0].FullyQualifiedErrorId | Should -Be 'Defender.Timeout,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $busy[0].Exception.Message | Should -BeLike '*is being downloaded by another call*; add -Wait to wait for it (up to -Timeout)'
        $waited[0].FullyQualifiedErrorId | Should -Be 'Defender.Exists,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        (Get-FileHash -LiteralPath (Join-Path $folder "$id.zip") -Algorithm SHA256).Hash | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id).ToUpperInvariant()
        (Get-ChildItem -LiteralPath $folder -Force).Name | Should -Be "$id.zip"
    }

    It 'writes nothing without -PassThru, and resolves a relative -Path against the current location' {
        $id = New-SimulatedAction -Simulator $simulator
        Push-Location $folder
        try {
            $output = Save-DefenderInvestigationPackage -ActionId $id -Path .
        } finally {
            Pop-Location
        }
        $output | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $folder "$id.zip") | Should -BeTrue
    }

    It 'feeds Write-Progress from the native progress callback until the download completes' {
        $id = New-SimulatedAction -Simulator $simulator
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$id' -Path '$folder'")
            $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }
        $records.Count | Should -BeGreaterThan 1
        $records[0].Activity | Should -BeLike "*$id*"
        $records[-1].RecordType | Should -Be 'Completed'
        $last = $records | Where-Object RecordType -eq 'Processing' | Select-Object -Last 1
        $last.PercentComplete | Should -Be 100
        $last.StatusDescription | Should -Be '1.0 MiB of 1.0 MiB'
    }

    It 'with -WhatIf writes no file and sends no request' {
        $id = New-SimulatedAction -Simulator $simulator
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests

        $output = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -WhatIf -PassThru

        $output | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
        Get-SimulatorRequest -Simulator $simulator | Should -BeNullOrEmpty
    }

    It 'keeps an existing file (Defender.Exists) unless -Force is given, and -Force lasts one command' {
        $id = New-SimulatedAction -Simulator $simulator
        $path = Join-Path $folder "$id.zip"
        Set-Content -LiteralPath $path -Value 'an older copy'

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.Exists,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $failures[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        $failures[0].Exception.Message | Should -BeLike "*$id.zip' exists; add -Force to replace it" -Because 'a PowerShell user is told the parameter, not the library''s option'
        $failures[0].Exception.Message | Should -Not -BeLike '*overwrite*'
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*-Force*'
        Get-Content -LiteralPath $path | Should -Be 'an older copy'

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Force -PassThru
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable again -ErrorAction SilentlyContinue
        $again[0].FullyQualifiedErrorId | Should -Be 'Defender.Exists,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
    }

    It 'applies -Force to its own command only: a Save run from its pipeline does not inherit it' {
        $first, $second = 1..2 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        Set-Content -LiteralPath (Join-Path $folder "$first.zip") -Value 'an older copy'
        Set-Content -LiteralPath (Join-Path $folder "$second.zip") -Value 'an older copy of the second'
        $inner = @()

        $nested = Save-DefenderInvestigationPackage -ActionId $first -Path $folder -Force -PassThru | ForEach-Object {
            Save-DefenderInvestigationPackage -ActionId $second -Path $folder -PassThru -ErrorVariable +inner -ErrorAction SilentlyContinue
        }

        $nested | Should -BeNullOrEmpty -Because 'the nested command has no -Force of its own'
        $inner.Count | Should -Be 1
        $inner[0].FullyQualifiedErrorId | Should -Be 'Defender.Exists,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        Get-Content -LiteralPath (Join-Path $folder "$second.zip") | Should -Be 'an older copy of the second'
        (Get-FileHash -LiteralPath (Join-Path $folder "$first.zip") -Algorithm SHA256).Hash.ToLowerInvariant() |
            Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $first) -Because 'the outer command had -Force'
    }

    It 'applies -Wait to its own command only: a Save run from its pipeline fails NotReady at once' {
        $ready = New-SimulatedAction -Simulator $simulator
        $running = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 36000; in_progress_secs = 0 } }
        $inner = @()
        $clock = [Diagnostics.Stopwatch]::StartNew()

        $null = Save-DefenderInvestigationPackage -ActionId $ready -Path $folder -Wait -Timeout 600 -PassThru | ForEach-Object {
            Save-DefenderInvestigationPackage -ActionId $running -Path $folder -ErrorVariable +inner -ErrorAction SilentlyContinue
        }

        $inner[0].FullyQualifiedErrorId | Should -Be 'Defender.NotReady,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 20 -Because 'the nested command did not wait (the collection takes 10 minutes here)'
    }

    It 'saves a pipeline of ids, strings and objects by Id or ActionId, and one bad id does not stop the rest' {
        $first, $second, $third = 1..3 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        $unknown = '00000000-0000-4000-8000-00000000dead'
        $input = @(
            $first
            [pscustomobject]@{ Id = $second }
            $unknown
            [pscustomobject]@{ ActionId = $third }
        )

        $saved = $input | Save-DefenderInvestigationPackage -Path $folder -PassThru -ErrorVariable failures -ErrorAction SilentlyContinue

        # In the order they finish, which concurrent downloads do not fix.
        $saved.ActionId | Sort-Object | Should -Be (@($first, $second, $third) | Sort-Object)
        (Get-ChildItem -LiteralPath $folder -Force).Name | Sort-Object | Should -Be (@($first, $second, $third) | ForEach-Object { "$_.zip" } | Sort-Object)
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failures[0].TargetObject.ActionId | Should -Be $unknown
        $failures[0].Exception | Should -BeOfType ([Defender.DefenderException])
        $failures[0].Exception.Message | Should -BeLike "*$unknown*"
    }

    It 'creates a missing folder, but not with -WhatIf' {
        $id = New-SimulatedAction -Simulator $simulator
        $missing = Join-Path $folder 'cases/4711'

        Save-DefenderInvestigationPackage -ActionId $id -Path $missing -WhatIf
        Test-Path -LiteralPath (Join-Path $folder 'cases') | Should -BeFalse

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $missing -PassThru
        $package.Path | Should -Be (Join-Path $missing "$id.zip")
        Test-Path -LiteralPath $package.Path -PathType Leaf | Should -BeTrue
    }

    It 'saves one package to a file path, and refuses two packages for one file before saving anything' {
        $first, $second = 1..2 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        $path = Join-Path $folder 'case-4711.zip'
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests

        { $first, $second | Save-DefenderInvestigationPackage -Path $path -PassThru } |
            Should -Throw -ErrorId 'Defender.InvalidArgument,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand' -ExpectedMessage '*takes one package; 2 were given*nothing was saved*'
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
        Get-SimulatorRequest -Simulator $simulator -Endpoint get_package_uri | Should -BeNullOrEmpty -Because 'the usage was checked before any work'

        $saved = $first | Save-DefenderInvestigationPackage -Path $path -PassThru
        $saved.ActionId | Should -Be $first
        $saved.Path | Should -Be $path
        (Get-ChildItem -LiteralPath $folder -Force).Name | Should -Be 'case-4711.zip'
        { Save-DefenderInvestigationPackage -ActionId $first -Path (Join-Path (Join-Path $folder 'missing') 'case.zip') } |
            Should -Throw -ErrorId 'Defender.Io,*' -ExpectedMessage '*folder of -Path*does not exist*'
        { Save-DefenderInvestigationPackage -ActionId $first -Path $path -FileNamePattern '{ComputerName}_{ActionId}.zip' } |
            Should -Throw -ErrorId 'Defender.InvalidArgument,*' -ExpectedMessage '*-FileNamePattern names the files in a folder*'
        { Save-DefenderInvestigationPackage -ActionId $first -Path $folder -Timeout 30 } |
            Should -Throw -ErrorId 'Defender.InvalidArgument,*' -ExpectedMessage '*-Timeout applies with -Wait*'
    }

    It 'fails with Defender.NotReady while the collection runs, and with -Wait waits for it' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 20; in_progress_secs = 40 } }

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotReady,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $failures[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        $failures[0].TargetObject.ActionId | Should -Be $id
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*-Wait*'
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty

        $package = Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Wait -PassThru
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id)
    }

    It 'shows in its bar what it waits for: the collection, its status and for how long' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 120; in_progress_secs = 120 } }
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$id' -Path '$folder' -Wait")
            $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }
        $waiting = @($records | Where-Object StatusDescription -like 'Waiting for the collection to finish: *')
        $waiting.Count | Should -BeGreaterThan 1
        $waiting.Activity | Sort-Object -Unique | Should -Be "Saving the investigation package of machine action $id"
        @($waiting | Where-Object StatusDescription -match ': Pending for \d+ s$').Count | Should -BeGreaterThan 0
        @($waiting | Where-Object StatusDescription -match ': InProgress for \d+ s$').Count | Should -BeGreaterThan 0
        $waiting[0].CurrentOperation | Should -BeLike 'Looking again in * s'
        # Then the download and the check, in the same bar, which goes when the package is saved.
        $after = $records[([array]::IndexOf($records, $waiting[-1]) + 1)..($records.Count - 1)]
        @($after | Where-Object CurrentOperation -like 'Downloading*').Count | Should -BeGreaterThan 0
        @($after | Where-Object CurrentOperation -eq 'Verifying the package').Count | Should -Be 1
        $records[-1].RecordType | Should -Be 'Completed'
    }

    It 'shows in each bar a place in the rate limit''s queue while it waits for its link' {
        # The client keeps to getPackageUri's 2 calls a minute (a second at the simulator's clock):
        # of four packages, two wait for their links.
        $ids = 1..4 | ForEach-Object { New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 10000 } }
        $shell = New-ConnectedShell -Option @{ rate_limit = 'on' }
        try {
            $null = $shell.AddScript('param($ids, $folder) $ids | Save-DefenderInvestigationPackage -Path $folder').AddArgument($ids).AddArgument($folder)
            $shell.Invoke()
            $shell.Streams.Error | Should -BeNullOrEmpty
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }
        $queued = @($records | Where-Object { $_.ParentActivityId -eq 1 -and $_.StatusDescription -like "*in line for the API's rate limit*" -or $_.StatusDescription -like "Queued for the API's rate limit: * call* ahead" })
        @($queued.ActivityId | Sort-Object -Unique).Count | Should -BeGreaterOrEqual 2
        @($records | Where-Object StatusDescription -like '*: 1 call ahead').Count | Should -BeGreaterThan 0
        @($records | Where-Object StatusDescription -like '*: 1 calls ahead').Count | Should -Be 0 -Because 'one call is a call'
        @($queued | Where-Object CurrentOperation -like 'About * to go').Count | Should -BeGreaterThan 0
        (Get-ChildItem -LiteralPath $folder).Count | Should -Be 4
    }

    It 'fails with Defender.ActionFailed for a collection that failed, with -Wait too' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Failed' }

        Save-DefenderInvestigationPackage -ActionId $id -Path $folder -Wait -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.ActionFailed,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $failures[0].TargetObject.ActionId | Should -Be $id
        $failures[0].Exception.Message | Should -BeLike '*Failed*'
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
    }

    It 'is cancelled promptly by stopping the pipeline (Ctrl+C), leaving no file, and the session goes on' {
        $slow = New-SimulatedAction -Simulator $simulator
        Add-SimulatorFault -Simulator $simulator -Rule @{
            endpoint = 'download'; action_id = $slow; fault = @{ kind = 'slow_body'; bytes_per_sec = 16384 }
        }
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$slow' -Path '$folder'")
            $running = $shell.BeginInvoke()
            Wait-Until { @($shell.Streams.Progress | Where-Object PercentComplete -gt 0).Count -gt 0 }

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $shell.Stop()
            $clock.Stop()

            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $shell.InvocationStateInfo.State | Should -Be 'Stopped'
            $running.IsCompleted | Should -BeTrue
            Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty

            # The client is not left cancelled: the next command in that session works.
            $next = New-SimulatedAction -Simulator $simulator
            $shell.Commands.Clear()
            $null = $shell.AddScript("Save-DefenderInvestigationPackage -ActionId '$next' -Path '$folder' -PassThru")
            $saved = $shell.Invoke()
            $saved.ActionId | Should -Be $next
        } finally {
            $shell.Dispose()
        }
    }

    It 'says in the verbose stream what it downloads, counting one package as one' {
        $id = New-SimulatedAction -Simulator $simulator
        $verbose = $id | Save-DefenderInvestigationPackage -Path $folder -Verbose 4>&1 | ForEach-Object { "$_" }
        $verbose | Should -Contain "downloading 1 package to '$folder', up to 4 at once"
        $verbose | Should -Contain 'downloaded 1 of 1 package'
    }

    It 'never shows a secret or the link in its verbose, warning or error output' {
        $good = New-SimulatedAction -Simulator $simulator
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Failed' }
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'download'; action_id = $good; fault = @{ kind = 'cut_after'; bytes = 1000 } }

        $streams = $good, $failed, $good | Save-DefenderInvestigationPackage -Path $folder -Verbose -ErrorAction Continue *>&1

        $text = ($streams | ForEach-Object { "$_" }) -join "`n"
        $text | Should -BeLike '*SHA-256*' -Because 'the verbose stream says what was saved'
        @($streams | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }).Count | Should -Be 2
        Assert-NoSecret $text
    }
}

Describe 'Save-DefenderInvestigationPackage with many ids' {
    BeforeAll {
        function Add-SlowDownload {
            # Each download of these actions' packages comes at $BytesPerSecond.
            param([string[]] $ActionId, [int] $BytesPerSecond)
            foreach ($id in $ActionId) {
                Add-SimulatorFault -Simulator $simulator -Rule @{
                    endpoint = 'download'; action_id = $id; times = 0; fault = @{ kind = 'slow_body'; bytes_per_sec = $BytesPerSecond }
                }
            }
        }

        function Get-PackageBar {
            # The progress records of the packages' own bars (children of the batch's bar).
            param([object[]] $Record)
            @($Record | Where-Object { $_.ParentActivityId -eq 1 })
        }

        function Get-MostBarsAtOnce {
            # How many packages were downloading at the same time, at most: a package's bar says
            # so from its first bytes until it is finished (before that it shows what it waits for).
            param([object[]] $Record)
            $downloading = [Collections.Generic.HashSet[int]]::new()
            $most = 0
            foreach ($record in Get-PackageBar $Record) {
                if ($record.RecordType -ne 'Completed' -and $record.CurrentOperation -like 'Downloading*') {
                    $null = $downloading.Add($record.ActivityId)
                } elseif ($record.RecordType -eq 'Completed' -or $record.CurrentOperation -notlike 'Verifying*') {
                    $null = $downloading.Remove($record.ActivityId)
                }
                $most = [Math]::Max($most, $downloading.Count)
            }
            $most
        }

        function Assert-SavedAsServed {
            # Each package is in $Folder exactly as the download host serves it, and nothing else is.
            param([string] $Folder, [string[]] $ActionId)
            (Get-ChildItem -LiteralPath $Folder -Force).Name | Sort-Object |
                Should -Be ($ActionId | ForEach-Object { "$_.zip" } | Sort-Object)
            foreach ($id in $ActionId) {
                (Get-FileHash -LiteralPath (Join-Path $Folder "$id.zip") -Algorithm SHA256).Hash.ToLowerInvariant() |
                    Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $id) -Because "$id.zip is the whole package"
            }
        }
    }

    BeforeEach {
        $folder = New-TestFolder
    }

    It 'downloads the ready packages at once, max_concurrent_downloads at a time, and writes an error record for each of the others' {
        $ready = 1..4 | ForEach-Object { New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 200000 } }
        Add-SlowDownload -ActionId $ready -BytesPerSecond 200000
        $pending = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 36000; in_progress_secs = 0 } }
        $unknown = '00000000-0000-4000-8000-0000000b0a7c'
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Failed' }
        $ids = $ready[0], $pending, $ready[1], $unknown, $ready[2], $failed, $ready[3]
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        $shell = New-ConnectedShell -Option @{ max_concurrent_downloads = 2 }
        try {
            $null = $shell.AddScript('param($ids, $folder) $ids | Save-DefenderInvestigationPackage -Path $folder -PassThru').
            AddArgument($ids).AddArgument($folder)
            $saved = $shell.Invoke()
            $failures = @($shell.Streams.Error)
            $warnings = @($shell.Streams.Warning)
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }

        $saved.ActionId | Sort-Object | Should -Be ($ready | Sort-Object)
        Assert-SavedAsServed -Folder $folder -ActionId $ready
        $failures.Count | Should -Be 3
        $byTarget = @{}
        $failures | ForEach-Object { $byTarget[$_.TargetObject.ActionId] = "$($_.FullyQualifiedErrorId) $($_.CategoryInfo.Category)" }
        $byTarget[$pending] | Should -Be 'Defender.NotReady,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand ResourceUnavailable'
        $byTarget[$unknown] | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand ObjectNotFound'
        $byTarget[$failed] | Should -Be 'Defender.ActionFailed,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand InvalidResult'
        $warnings | Should -BeNullOrEmpty -Because 'a failed package is an error record, not also a warning'

        Get-MostBarsAtOnce $records | Should -Be 2 -Because 'two packages download at once, never more'
        @(Get-PackageBar $records | Where-Object StatusDescription -like '*waiting for a download slot*').Count |
            Should -BeGreaterThan 0 -Because 'a ready package that waits for a slot says so in its bar'
        $downloads = Get-SimulatorRequest -Simulator $simulator -Endpoint download
        $downloads.action_id | Sort-Object | Should -Be ($ready | Sort-Object) -Because 'each ready package is downloaded once, the others not at all'
    }

    It 'shows a progress bar per package under one for the whole batch, each completed when its package is' {
        $ready = 1..3 | ForEach-Object { New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 200000 } }
        $pending = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 36000; in_progress_secs = 0 } }
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript('param($ids, $folder) $ids | Save-DefenderInvestigationPackage -Path $folder').
            AddArgument(@($ready[0], $pending, $ready[1], $ready[2])).AddArgument($folder)
            $shell.Invoke()
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }

        $overall = @($records | Where-Object ActivityId -eq 1)
        $overall[0].StatusDescription | Should -Be '0 of 4 packages'
        ($overall | Where-Object RecordType -eq 'Processing')[-1].StatusDescription | Should -Be '4 of 4 packages'
        $overall[-1].RecordType | Should -Be 'Completed'
        $records[-1].ActivityId | Should -Be 1 -Because 'the batch bar goes last'
        $bars = Get-PackageBar $records | Group-Object Activity
        # Each id was looked up first, so each bar names the device (the simulator's default one).
        $device = 'desktop-1e5bc9d (1e5bc9d7e413ddd7902c2932e418702b84d0cc07)'
        $bars.Name | Sort-Object | Should -Be ($ready | ForEach-Object { "Saving the investigation package of machine action $_ on $device" } | Sort-Object) `
            -Because 'each package that downloads has a bar, one that fails before its first byte has none'
        foreach ($bar in $bars) {
            $bar.Group[-1].RecordType | Should -Be 'Completed'
            @($bar.Group.ActivityId | Sort-Object -Unique).Count | Should -Be 1
            $last = $bar.Group | Where-Object RecordType -eq 'Processing' | Select-Object -Last 1
            $last.PercentComplete | Should -Be 100
            $last.StatusDescription | Should -Be '195.3 KiB of 195.3 KiB'
        }
        @($records.ActivityId | Sort-Object -Unique).Count | Should -Be 4 -Because 'each package has its own bar'
    }

    It 'with -WhatIf and several ids writes nothing and sends nothing' {
        $ids = 1..3 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        $missing = Join-Path $folder 'cases'

        $output = $ids | Save-DefenderInvestigationPackage -Path $missing -WhatIf -PassThru

        $output | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
        Get-SimulatorRequest -Simulator $simulator | Should -BeNullOrEmpty
    }

    It 'returns each package with -PassThru as soon as it is saved, while the others still download' {
        $slow = New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 200000 }
        Add-SlowDownload -ActionId $slow -BytesPerSecond 100000
        $quick = New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 50000 }
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript('param($ids, $folder) $ids | Save-DefenderInvestigationPackage -Path $folder -PassThru').
            AddArgument(@($slow, $quick)).AddArgument($folder)
            $noInput = [Management.Automation.PSDataCollection[psobject]]::new()
            $noInput.Complete()
            $output = [Management.Automation.PSDataCollection[psobject]]::new()
            $running = $shell.BeginInvoke($noInput, $output)
            Wait-Until { $output.Count -gt 0 }

            $output[0].ActionId | Should -Be $quick
            $output[0].PSObject.TypeNames[0] | Should -Be 'DefenderPackage.InvestigationPackage'
            Test-Path -LiteralPath (Join-Path $folder "$slow.zip") | Should -BeFalse -Because 'the slow package is still downloading'
            $running.IsCompleted | Should -BeFalse

            $null = $shell.EndInvoke($running)
            $output.ActionId | Should -Be @($quick, $slow)
            $output[1].Path | Should -Be (Join-Path $folder "$slow.zip")
            $output[1].Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $slow)
        } finally {
            $shell.Dispose()
        }
    }

    It 'is cancelled promptly by stopping the pipeline (Ctrl+C) mid-batch, leaving only whole packages' {
        $quick = New-SimulatedAction -Simulator $simulator -Spec @{ package_size = 50000 }
        $slow = 1..2 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        Add-SlowDownload -ActionId $slow -BytesPerSecond 16384
        $shell = New-ConnectedShell
        try {
            $null = $shell.AddScript('param($ids, $folder) $ids | Save-DefenderInvestigationPackage -Path $folder').
            AddArgument(@($slow[0], $quick, $slow[1])).AddArgument($folder)
            $running = $shell.BeginInvoke()
            $slowBars = $slow | ForEach-Object { "Saving the investigation package of machine action $_ on desktop-1e5bc9d (1e5bc9d7e413ddd7902c2932e418702b84d0cc07)" }
            Wait-Until {
                $records = @($shell.Streams.Progress)
                @($records | Where-Object { $_.Activity -like "*$quick*" -and $_.RecordType -eq 'Completed' }).Count -eq 1 -and
                @($records | Where-Object { $_.Activity -in $slowBars -and $_.PercentComplete -gt 0 } | Select-Object -ExpandProperty Activity -Unique).Count -eq 2
            }

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $shell.Stop()
            $clock.Stop()

            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $shell.InvocationStateInfo.State | Should -Be 'Stopped'
            $running.IsCompleted | Should -BeTrue
            Assert-SavedAsServed -Folder $folder -ActionId $quick
        } finally {
            $shell.Dispose()
        }
    }

    It 'with -ErrorAction Stop stops at the first failed package and cancels the others' {
        $slow = 1..2 | ForEach-Object { New-SimulatedAction -Simulator $simulator }
        Add-SlowDownload -ActionId $slow -BytesPerSecond 16384
        $unknown = '00000000-0000-4000-8000-0000000b0a7e'
        $clock = [Diagnostics.Stopwatch]::StartNew()

        { $slow[0], $unknown, $slow[1] | Save-DefenderInvestigationPackage -Path $folder -ErrorAction Stop } |
            Should -Throw -ErrorId 'Defender.NotFound,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'

        $clock.Elapsed.TotalSeconds | Should -BeLessThan 10 -Because 'the slow downloads were cancelled, not waited for'
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
    }

    It 'saves an id given twice once, and writes Defender.InvalidArgument for the repeat' {
        $id = New-SimulatedAction -Simulator $simulator

        $saved = $id, $id | Save-DefenderInvestigationPackage -Path $folder -PassThru -ErrorVariable failures -ErrorAction SilentlyContinue

        $saved.ActionId | Should -Be $id
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.InvalidArgument,Defender.PowerShell.Commands.SaveDefenderInvestigationPackageCommand'
        $failures[0].TargetObject.ActionId | Should -Be $id
        Assert-SavedAsServed -Folder $folder -ActionId $id
    }
}

Describe 'Get-DefenderPackageUri' {
    It 'returns the action id and a fresh link to the download host' {
        $id = New-SimulatedAction -Simulator $simulator
        $link = [pscustomobject]@{ Id = $id } | Get-DefenderPackageUri
        $link.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.PackageUri'
        $link.ActionId | Should -Be $id
        $link.Uri | Should -BeLike "$($simulator.download_url)/safedownload/*.zip?token=*"
    }

    It 'shows the link without its query (the download credential) in its table view' {
        $link = Get-DefenderPackageUri -ActionId (New-SimulatedAction -Simulator $simulator)
        $shown = $link | Out-String -Width 400
        $shown | Should -BeLike "*$($simulator.download_url)/safedownload/*.zip?…*"
        $shown | Should -Not -BeLike '*token=*'
        $link.Uri | Should -BeLike '*token=*'
    }

    It 'writes Defender.NotReady, Defender.NotFound and Defender.ActionFailed, one per bad id, and goes on' {
        $pending = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 3600; in_progress_secs = 0 } }
        $unknown = '00000000-0000-4000-8000-00000000beef'
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'TimeOut' }
        $ready = New-SimulatedAction -Simulator $simulator

        $links = $pending, $unknown, $failed, $ready | Get-DefenderPackageUri -ErrorVariable failures -ErrorAction SilentlyContinue

        $links.ActionId | Should -Be $ready
        $failures.FullyQualifiedErrorId | Should -Be @(
            'Defender.NotReady,Defender.PowerShell.Commands.GetDefenderPackageUriCommand'
            'Defender.NotFound,Defender.PowerShell.Commands.GetDefenderPackageUriCommand'
            'Defender.ActionFailed,Defender.PowerShell.Commands.GetDefenderPackageUriCommand')
        $failures.TargetObject.ActionId | Should -Be @($pending, $unknown, $failed)
        $failures.CategoryInfo.Category | Should -Be @('ResourceUnavailable', 'ObjectNotFound', 'InvalidResult')
    }

    It 'is cancelled promptly by stopping the pipeline (Ctrl+C) while the service has not answered yet' {
        # No progress or log line arrives meanwhile: only the watchdog of the pipeline can cancel.
        $id = New-SimulatedAction -Simulator $simulator
        Add-SimulatorFault -Simulator $simulator -Rule @{ endpoint = 'get_package_uri'; action_id = $id; fault = @{ kind = 'delay'; ms = 60000 } }
        $shell = New-ConnectedShell
        try {
            # The request log shows a request only once answered, and the shell signed in when it
            # connected: give the call time to send its request, which then waits a minute.
            $null = $shell.AddScript("Get-DefenderPackageUri -ActionId '$id'")
            $running = $shell.BeginInvoke()
            Start-Sleep -Milliseconds 1500
            $running.IsCompleted | Should -BeFalse -Because 'the call waits for the service'

            $clock = [Diagnostics.Stopwatch]::StartNew()
            $shell.Stop()
            $clock.Stop()

            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $shell.InvocationStateInfo.State | Should -Be 'Stopped'
            $running.IsCompleted | Should -BeTrue
        } finally {
            $shell.Dispose()
        }
    }

    It 'stops at the first failure with -ErrorAction Stop' {
        $unknown = '00000000-0000-4000-8000-00000000f00d'
        { Get-DefenderPackageUri -ActionId $unknown -ErrorAction Stop } | Should -Throw -ErrorId 'Defender.NotFound,Defender.PowerShell.Commands.GetDefenderPackageUriCommand'
    }
}

Describe 'Machine actions' {
    It 'Get-DefenderMachineAction returns MachineAction objects with every field, shown as a table' {
        $id = New-SimulatedAction -Simulator $simulator
        $action = Get-DefenderMachineAction -ActionId $id
        $action.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        $action.id | Should -Be $id
        $action.type | Should -Be 'CollectInvestigationPackage'
        $action.status | Should -Be 'Succeeded'
        $action.machineId | Should -Be '1e5bc9d7e413ddd7902c2932e418702b84d0cc07'
        $action.PSObject.Properties.Name | Should -Contain 'requestorComment'

        $table = $action | Out-String -Width 200
        $table | Should -Match 'Id\s+Computer\s+Status\s+Type'
        $table | Should -Match "$id\s+\S+\s+Succeeded\s+CollectInvestigationPackage"
    }

    It 'Get-DefenderMachineAction writes Defender.NotFound for an unknown id' {
        $unknown = '00000000-0000-4000-8000-00000000cafe'
        Get-DefenderMachineAction -ActionId $unknown -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.GetDefenderMachineActionCommand'
        $failures[0].TargetObject.ActionId | Should -Be $unknown
        $failures[0].Exception | Should -BeOfType ([Defender.DefenderException])
    }

    It 'Start-DefenderInvestigationPackageCollection starts a collection that Wait and Save take from the pipeline' {
        $machine = '2a5bc9d7e413ddd7902c2932e418702b84d0cc07'
        $folder = New-TestFolder

        $action = Start-DefenderInvestigationPackageCollection -MachineId $machine -Comment 'Pester: incident 4711'

        $action.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        $action.machineId | Should -Be $machine
        $action.requestorComment | Should -Be 'Pester: incident 4711'
        $action.status | Should -BeIn 'Pending', 'InProgress'
        $done = $action | Wait-DefenderMachineAction
        $done.status | Should -Be 'Succeeded'
        $package = $done | Save-DefenderInvestigationPackage -Path $folder -PassThru
        $package.Sha256 | Should -Be (Get-SimulatedPackageHash -Simulator $simulator -ActionId $action.id)
    }

    It 'Start-DefenderInvestigationPackageCollection -WhatIf starts nothing, and an unknown device is Defender.NotFound' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Method Delete -Path requests
        Start-DefenderInvestigationPackageCollection -MachineId '3a5bc9d7e413ddd7902c2932e418702b84d0cc07' -Comment 'x' -WhatIf
        Get-SimulatorRequest -Simulator $simulator | Should -BeNullOrEmpty

        $machines = 'not-a-device', '4a5bc9d7e413ddd7902c2932e418702b84d0cc07'
        $actions = $machines | Start-DefenderInvestigationPackageCollection -Comment 'Pester' -ErrorVariable failures -ErrorAction SilentlyContinue
        $actions.machineId | Should -Be $machines[1]
        $failures[0].FullyQualifiedErrorId | Should -Be 'Defender.NotFound,Defender.PowerShell.Commands.StartDefenderInvestigationPackageCollectionCommand'
        $failures[0].TargetObject.ComputerDnsName | Should -Be 'not-a-device'
    }

    It 'Wait-DefenderMachineAction writes Defender.ActionFailed at once and Defender.Timeout after -Timeout' {
        $failed = New-SimulatedAction -Simulator $simulator -Spec @{ outcome = 'Cancelled'; schedule = @{ pending_secs = 5; in_progress_secs = 5 } }
        $slow = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 36000; in_progress_secs = 0 } }

        $failed, $slow | Wait-DefenderMachineAction -Timeout 30 -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures.FullyQualifiedErrorId | Should -Be @('Defender.ActionFailed,Defender.PowerShell.Commands.WaitDefenderMachineActionCommand', 'Defender.Timeout,Defender.PowerShell.Commands.WaitDefenderMachineActionCommand')
        $failures.CategoryInfo.Category | Should -Be @('InvalidResult', 'OperationTimeout')
        $failures.TargetObject.ActionId | Should -Be @($failed, $slow)
    }

    It 'Wait-DefenderMachineAction says in the verbose stream what it waits for' {
        $id = New-SimulatedAction -Simulator $simulator -Spec @{ schedule = @{ pending_secs = 10; in_progress_secs = 10 } }
        $verbose = Wait-DefenderMachineAction -ActionId $id -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        ($verbose.Message -join "`n") | Should -BeLike "*machine action $id is Pending*"
    }
}
