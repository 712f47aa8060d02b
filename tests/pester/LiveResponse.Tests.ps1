# Live Response (issue 21): files off devices, script transcripts, any commands, and the library,
# against a simulator whose results are in Azurite (the Azure Storage emulator), with ten sample
# devices (ws-0000..., srv-0003, srv-0007; ws-0000..ws-0002 tagged Incident4711).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-DefenderModulePath) -Force
    $azurite = Start-TestAzurite
    $simulator = Start-TestSimulator -ClockScale 600 -SeedMachines 10 -BlobEndpoint $azurite.BlobAccount
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect -InformationAction Ignore

    function Get-StoredHash {
        # The SHA-256 of a command's result exactly as the store holds it.
        param([string] $ActionId, [int] $Index = 0)
        $bytes = (Invoke-WebRequest -Uri "$($simulator.base_url)/_sim/live_response/$ActionId/$Index" -UseBasicParsing).Content
        $sha256 = [Security.Cryptography.SHA256]::Create()
        try { ([BitConverter]::ToString($sha256.ComputeHash([byte[]]$bytes)) -replace '-').ToLowerInvariant() } finally { $sha256.Dispose() }
    }

    function Get-SessionCount { @(Get-SimulatorRequest -Simulator $simulator -Endpoint run_live_response).Count }

    function New-Script {
        # A script file to publish, in a folder of its own.
        param([string] $Name)
        $path = Join-Path (New-TestFolder) $Name
        Set-Content -LiteralPath $path -Value 'param([switch] $Quick) Write-Output "triage"'
        $path
    }
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Stop-TestAzurite -Azurite $azurite
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Save-DefenderLiveResponseFile' {
    It 'saves a file from a device with the SHA-256 of what the store holds, named after the session' {
        $folder = New-TestFolder
        $file = Save-DefenderLiveResponseFile -ComputerName ws-0001 -RemotePath 'C:\Windows\Temp\x.exe' -Path $folder -PassThru

        $file.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.LiveResponseFile'
        $file.ComputerDnsName | Should -Be 'ws-0001.contoso.test'
        $file.MachineId | Should -Be ('5eed' + '0' * 35 + '1')
        $file.RemotePath | Should -Be 'C:\Windows\Temp\x.exe'
        $file.Path | Should -Be (Join-Path $folder "$($file.ActionId)-0.exe")
        $file.Sha256 | Should -Be (Get-StoredHash $file.ActionId)
        $file.ResumedFrom | Should -Be 0
        (Get-FileHash -LiteralPath $file.Path -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $file.Sha256
        $file.Size | Should -Be (Get-Item -LiteralPath $file.Path).Length
        (Get-DefenderMachineAction -ActionId $file.ActionId).type | Should -Be 'LiveResponse'
    }

    It 'fetches from a pipeline of devices, each result naming its device' {
        $folder = New-TestFolder
        $files = @(Get-DefenderMachine -Tag Incident4711 | Save-DefenderLiveResponseFile -RemotePath 'C:\x.log', 'C:\y.dll' -Path $folder -PassThru)

        $files.Count | Should -Be 6
        @($files.ComputerDnsName | Sort-Object -Unique) | Should -Be @('ws-0000.contoso.test', 'ws-0001.contoso.test', 'ws-0002.contoso.test')
        @($files | Where-Object RemotePath -eq 'C:\y.dll').Count | Should -Be 3
        foreach ($file in $files) {
            $file.Sha256 | Should -Be (Get-StoredHash $file.ActionId)
            [IO.Path]::GetExtension($file.Path) | Should -Be ([IO.Path]::GetExtension($file.RemotePath))
        }
    }

    It 'writes a failed command as an error record naming the device, with the service''s errors, and goes on' {
        $folder = New-TestFolder
        $files = @(Save-DefenderLiveResponseFile -ComputerName ws-0004 -RemotePath 'C:\missing\gone.log', 'C:\there.log' -Path $folder -PassThru `
                -ErrorVariable failures -ErrorAction SilentlyContinue)

        $files.Count | Should -Be 1
        $failures.Count | Should -Be 1
        $failure = $failures[0]
        $failure.FullyQualifiedErrorId | Should -Be 'Defender.ActionFailed,Defender.PowerShell.Commands.SaveDefenderLiveResponseFileCommand'
        $failure.CategoryInfo.Category | Should -Be 'InvalidResult'
        $failure.Exception | Should -BeOfType Defender.DefenderException
        $failure.Exception.Message | Should -BeLike '*ws-0004.contoso.test*'
        $failure.Exception.Message | Should -BeLike '*C:\missing\gone.log was not found on the device*'
        $failure.TargetObject.ComputerDnsName | Should -Be 'ws-0004.contoso.test'
        $failure.TargetObject.ActionId | Should -Not -BeNullOrEmpty
        $failure.ErrorDetails.RecommendedAction | Should -BeLike '*Get-DefenderMachineAction*'
        @(Get-ChildItem -LiteralPath $folder).Count | Should -Be 1
    }

    It 'keeps a file the store holds gzip-compressed as it came, with .gz added, and says so' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ gzip_results = $true }
        try {
            $file = Save-DefenderLiveResponseFile -ComputerName ws-0004 -RemotePath 'C:\Windows\Temp\big.log' -Path (New-TestFolder) -PassThru
        } finally {
            $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ gzip_results = $false }
        }
        $file.ContentEncoding | Should -Be 'gzip'
        $file.Path | Should -BeLike '*-0.log.gz'
        $file.Sha256 | Should -Be (Get-StoredHash $file.ActionId)
        $bytes = [IO.File]::ReadAllBytes($file.Path)
        $bytes[0..1] | Should -Be @(0x1f, 0x8b)
    }

    It 'shows a bar per file under one for the batch, and says when a device is busy with another session' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ live_response_schedule = @{ pending_secs = 60; in_progress_secs = 600 } }
        try {
            $busy = Invoke-DefenderLiveResponse -ComputerName srv-0007 -Command @{ Type = 'GetFile'; Path = 'C:\first.log' } -Confirm:$false
        } finally {
            $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ live_response_schedule = @{ pending_secs = 2; in_progress_secs = 10 } }
        }
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module, $connect, $folder) Import-Module $module; Connect-DefenderApi @connect -InformationAction Ignore
                ''srv-0007'', ''ws-0008'' | Save-DefenderLiveResponseFile -RemotePath C:\p.log -Path $folder -PassThru').
            AddArgument((Get-DefenderModulePath)).AddArgument($connect).AddArgument((New-TestFolder))
            $files = @($shell.Invoke())
            $records = @($shell.Streams.Progress)
        } finally {
            $shell.Dispose()
        }

        $files.Count | Should -Be 2
        $files.ActionId | Should -Not -Contain $busy.id
        $overall = @($records | Where-Object ActivityId -eq 1)
        $overall[0].Activity | Should -Be 'Fetching 2 files with live response'
        $overall[0].StatusDescription | Should -Be '0 of 2 files'
        ($overall | Where-Object RecordType -eq 'Processing')[-1].StatusDescription | Should -Be '2 of 2 files'
        $waits = @($records | Where-Object StatusDescription -like 'Waiting for a live response session*')
        $waits.Count | Should -BeGreaterThan 0 -Because 'the busy device''s bar says that it waits for its session'
        $waits[0].Activity | Should -Be "Fetching 'C:\p.log' from device srv-0007.contoso.test ($('5eed' + '0' * 35 + '7'))"
    }

    It 'waits for a device that is offline to come back, its bar saying the session is pending' {
        $id = '5eed' + '0' * 35 + '6'
        $null = Invoke-SimulatorControl -Simulator $simulator -Path "machines/$id/online" -Body @{ online = $false }
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript('param($module, $connect, $folder) Import-Module $module; Connect-DefenderApi @connect -InformationAction Ignore
                Save-DefenderLiveResponseFile -ComputerName ws-0006 -RemotePath C:\back.log -Path $folder -PassThru').
            AddArgument((Get-DefenderModulePath)).AddArgument($connect).AddArgument((New-TestFolder))
            $running = $shell.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while (-not @($shell.Streams.Progress | Where-Object StatusDescription -like 'Waiting for the live response session to finish: Pending*').Count -and
                -not $running.IsCompleted -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 20
            }
            $running.IsCompleted | Should -BeFalse -Because 'the session waits while the device is offline'
            $null = Invoke-SimulatorControl -Simulator $simulator -Path "machines/$id/online" -Body @{ online = $true }
            $files = @($shell.EndInvoke($running))
        } finally {
            $null = Invoke-SimulatorControl -Simulator $simulator -Path "machines/$id/online" -Body @{ online = $true }
            $shell.Dispose()
        }
        $files.Count | Should -Be 1
        $files[0].ComputerDnsName | Should -Be 'ws-0006.contoso.test'
        $files[0].Sha256 | Should -Be (Get-StoredHash $files[0].ActionId)
    }

    It 'with -WhatIf starts nothing and creates no folder' {
        $before = Get-SessionCount
        $folder = Join-Path (New-TestFolder) 'not-made'
        Save-DefenderLiveResponseFile -ComputerName ws-0005 -RemotePath 'C:\x.log' -Path $folder -WhatIf
        'ws-0006' | Save-DefenderLiveResponseFile -RemotePath 'C:\x.log' -Path $folder -WhatIf
        Get-SessionCount | Should -Be $before
        Test-Path -LiteralPath $folder | Should -BeFalse
    }
}

Describe 'Invoke-DefenderLiveResponseScript' {
    BeforeAll {
        $null = Publish-DefenderLibraryFile -Path (New-Script 'triage.ps1') -Description 'Pester: triage' -HasParameters -ParametersDescription '-Quick' -Force
        $null = Publish-DefenderLibraryFile -Path (New-Script 'fail-triage.ps1') -Description 'Pester: a script that fails' -Force
    }

    It 'returns the transcript as an object: ExitCode, Output, Errors, with the device' {
        $run = Invoke-DefenderLiveResponseScript -ComputerName ws-0002 -ScriptName triage.ps1 -Arguments '-Quick' -Confirm:$false

        $run.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.LiveResponseScriptResult'
        $run.ComputerDnsName | Should -Be 'ws-0002.contoso.test'
        $run.ScriptName | Should -Be 'triage.ps1'
        $run.ExitCode | Should -Be 0
        $run.Output | Should -BeLike '*-Quick*'
        $run.Errors | Should -Be ''
        (Get-DefenderMachineAction -ActionId $run.ActionId).commands[0].commandStatus | Should -Be 'Completed'
    }

    It 'returns a script''s failure as its exit code and errors, for each device of the pipeline' {
        $runs = @('ws-0000', 'ws-0001') | Invoke-DefenderLiveResponseScript fail-triage.ps1 -Confirm:$false
        $runs.Count | Should -Be 2
        $runs.ExitCode | Should -Be @(1, 1)
        foreach ($run in $runs) { $run.Errors | Should -Not -BeNullOrEmpty }
    }

    It 'writes Defender.ActionFailed for a script the library does not have' {
        $run = Invoke-DefenderLiveResponseScript -ComputerName ws-0005 -ScriptName nowhere.ps1 -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue
        $run | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.ActionFailed,*'
        $failures[0].Exception.Message | Should -BeLike '*nowhere.ps1 is not in the live response library*'
        $failures[0].TargetObject.ComputerDnsName | Should -Be 'ws-0005.contoso.test'
    }

    It 'completes -ScriptName from the tenant''s library' {
        $line = 'Invoke-DefenderLiveResponseScript -ComputerName ws-0000 -ScriptName tri'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be 'triage.ps1'
    }

    It 'asks first (ConfirmImpact High) and with -WhatIf runs nothing' {
        (Get-Command Invoke-DefenderLiveResponseScript).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact |
            Should -Be 'High'
        $before = Get-SessionCount
        Invoke-DefenderLiveResponseScript -ComputerName ws-0005 -ScriptName triage.ps1 -WhatIf
        Get-SessionCount | Should -Be $before
    }
}

Describe 'Invoke-DefenderLiveResponse' {
    It 'takes commands as hashtables in either form and waits for the session' {
        $session = Invoke-DefenderLiveResponse -ComputerName ws-0006 -Wait -Confirm:$false -Command @(
            @{ Type = 'GetFile'; Path = 'C:\a.log' }
            @{ type = 'RunScript'; params = @(@{ key = 'ScriptName'; value = 'triage.ps1' }, @{ key = 'Args'; value = '-Quick' }) })

        $session.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.MachineAction'
        $session.type | Should -Be 'LiveResponse'
        $session.status | Should -Be 'Succeeded'
        $session.commands.commandStatus | Should -Be @('Completed', 'Completed')
        $session.commands[1].command.params[1].value | Should -Be '-Quick'
    }

    It 'takes the service''s JSON and LiveResponseCommand objects, and returns at once without -Wait' {
        $session = Invoke-DefenderLiveResponse -MachineId ('5eed' + '0' * 35 + '8') -Confirm:$false -Command ([Defender.LiveResponseCommand]::GetFile('C:\b.log')),
            '{"type":"GetFile","params":[{"key":"Path","value":"C:\\c.log"}]}'
        $session.commands.Count | Should -Be 2
        $session.status | Should -BeIn 'Pending', 'InProgress'
    }

    It 'saves the results of a session''s commands, each by its index, from the pipeline' {
        $folder = New-TestFolder
        $saved = @(Invoke-DefenderLiveResponse -ComputerName ws-0005 -Wait -Confirm:$false -Command @(
                @{ Type = 'RunScript'; ScriptName = 'triage.ps1'; Args = '-Quick' }
                @{ Type = 'GetFile'; Path = 'C:\Windows\Temp\d.dll' }) |
            Save-DefenderLiveResponseResult -Path $folder -PassThru)

        $saved.Index | Should -Be @(0, 1)
        $saved.CommandType | Should -Be @('RunScript', 'GetFile')
        $saved[0].Path | Should -Be (Join-Path $folder "$($saved[0].ActionId)-0.json")
        (Get-Content -Raw -LiteralPath $saved[0].Path | ConvertFrom-Json).exit_code | Should -Be 0
        $saved[1].RemotePath | Should -Be 'C:\Windows\Temp\d.dll'
        $saved[1].Sha256 | Should -Be (Get-StoredHash $saved[1].ActionId 1)
        $saved.ComputerDnsName | Sort-Object -Unique | Should -Be 'ws-0005.contoso.test'

        $again = Save-DefenderLiveResponseResult -ActionId $saved[1].ActionId -Index 1 -Path (New-TestFolder) -PassThru
        $again.Sha256 | Should -Be $saved[1].Sha256
        Get-DefenderMachine ws-0005 | Save-DefenderLiveResponseResult -Path $folder -ErrorVariable refused -ErrorAction SilentlyContinue
        $refused[0].FullyQualifiedErrorId | Should -BeLike 'Defender.InvalidArgument,*'
    }

    It 'words the library''s limits as the parameters that set them: -Wait, -Timeout' {
        $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ live_response_schedule = @{ pending_secs = 600; in_progress_secs = 6000 } }
        try {
            $busy = Invoke-DefenderLiveResponse -ComputerName srv-0003 -Command @{ Type = 'GetFile'; Path = 'C:\a.log' } -Confirm:$false
            Invoke-DefenderLiveResponse -ComputerName srv-0003 -Command @{ Type = 'GetFile'; Path = 'C:\b.log' } -Confirm:$false -ErrorVariable refused -ErrorAction SilentlyContinue
            Invoke-DefenderLiveResponse -ComputerName srv-0003 -Command @{ Type = 'GetFile'; Path = 'C:\b.log' } -Confirm:$false -Wait -Timeout 1 -ErrorVariable late -ErrorAction SilentlyContinue
        } finally {
            $null = Invoke-SimulatorControl -Simulator $simulator -Path config -Body @{ live_response_schedule = @{ pending_secs = 2; in_progress_secs = 10 } }
            $null = Stop-DefenderMachineAction -ActionId $busy.id -Confirm:$false -ErrorAction SilentlyContinue
        }
        $refused[0].Exception.Message | Should -BeLike '*add -Wait to wait for a session*'
        $late[0].FullyQualifiedErrorId | Should -BeLike 'Defender.Timeout,*'
        $late[0].Exception.Message | Should -BeLike '*(-Timeout 1 s)*'
        $late[0].Exception.Message | Should -Not -BeLike '*wait_timeout_ms*'
    }

    It 'refuses a command without a type before starting anything' {
        $before = Get-SessionCount
        { Invoke-DefenderLiveResponse -ComputerName ws-0006 -Command @{ Path = 'C:\a.log' } -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'Defender.InvalidArgument,Defender.PowerShell.Commands.InvokeDefenderLiveResponseCommand'
        Get-SessionCount | Should -Be $before
    }
}

Describe 'The live response library' {
    It 'publishes, lists, refuses a second publish without -Force, and removes' {
        $path = New-Script 'pester-collect.ps1'

        $published = Publish-DefenderLibraryFile -Path $path -Description 'Pester: collect'
        $published.PSObject.TypeNames[0] | Should -Be 'DefenderPackage.LibraryFile'
        $published.fileName | Should -Be 'pester-collect.ps1'
        $published.sha256 | Should -Be (Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash.ToLowerInvariant()

        $null = Publish-DefenderLibraryFile -Path $path -Description 'Pester: collect' -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.Exists,*'
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*-Force*'
        (Get-Item -LiteralPath $path | Publish-DefenderLibraryFile -Description 'Pester: again' -Force).description | Should -Be 'Pester: again'

        (Get-DefenderLibraryFile -FileName 'pester-*').fileName | Should -Be 'pester-collect.ps1'
        Get-DefenderLibraryFile -FileName pester-collect.ps1 | Remove-DefenderLibraryFile -Confirm:$false
        Get-DefenderLibraryFile -FileName pester-collect.ps1 -ErrorVariable missing -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $missing[0].FullyQualifiedErrorId | Should -BeLike 'Defender.NotFound,*'
        Remove-DefenderLibraryFile -FileName pester-collect.ps1 -Confirm:$false -ErrorVariable gone -ErrorAction SilentlyContinue
        $gone[0].FullyQualifiedErrorId | Should -BeLike 'Defender.NotFound,*'
    }

    It 'with -WhatIf publishes and removes nothing' {
        $path = New-Script 'pester-whatif.ps1'
        Publish-DefenderLibraryFile -Path $path -Description 'Pester: what if' -WhatIf
        Get-DefenderLibraryFile -FileName 'pester-whatif*' | Should -BeNullOrEmpty
        $null = Publish-DefenderLibraryFile -Path $path -Description 'Pester: what if'
        Remove-DefenderLibraryFile -FileName pester-whatif.ps1 -WhatIf
        (Get-DefenderLibraryFile -FileName pester-whatif.ps1).fileName | Should -Be 'pester-whatif.ps1'
    }
}

Describe 'Views' {
    It 'shows a saved file''s device and name at 80 columns, and its remote path and size at 120' {
        $file = Save-DefenderLiveResponseFile -ComputerName ws-0008 -RemotePath 'C:\Windows\Temp\x.exe' -Path (New-TestFolder) -PassThru
        $narrow = @(($file | Out-String -Width 80) -split "`r?`n" | ForEach-Object TrimEnd | Where-Object { $_ })
        $narrow[0] | Should -Match '^Computer\s+File$'
        $narrow[2] | Should -Match "^ws-0008\.contoso\.test\s+$($file.ActionId)-0\.exe$"
        $wide = @(($file | Out-String -Width 120) -split "`r?`n" | ForEach-Object TrimEnd | Where-Object { $_ })
        $wide[0] | Should -Match '^Computer\s+File\s+RemotePath\s+Size$'
        foreach ($line in $narrow) { $line.Length | Should -BeLessOrEqual 80 }
        foreach ($line in $wide) { $line.Length | Should -BeLessOrEqual 120 }
        ($file | Format-List | Out-String) | Should -Match "Sha256\s+: $($file.Sha256)"
    }

    It 'shows a library file''s name, parameters and description at 80 columns, and when and by whom at 120' {
        $file = Get-DefenderLibraryFile -FileName triage.ps1
        $narrow = @(($file | Out-String -Width 80) -split "`r?`n" | ForEach-Object TrimEnd | Where-Object { $_ })
        $narrow[0] | Should -Match '^FileName\s+Parameters\s+Description$'
        $narrow[2] | Should -Match '^triage\.ps1\s+True\s+Pester: triage$'
        $wide = @(($file | Out-String -Width 120) -split "`r?`n" | ForEach-Object TrimEnd | Where-Object { $_ })
        $wide[0] | Should -Match '^FileName\s+Parameters\s+Description\s+Updated \(UTC\)\s+CreatedBy$'
        foreach ($line in $narrow) { $line.Length | Should -BeLessOrEqual 80 }
        foreach ($line in $wide) { $line.Length | Should -BeLessOrEqual 120 }
    }

    It 'shows a script''s device, name and exit code at 80 columns' {
        $run = Invoke-DefenderLiveResponseScript -ComputerName ws-0008 -ScriptName triage.ps1 -Confirm:$false
        $narrow = @(($run | Out-String -Width 80) -split "`r?`n" | ForEach-Object TrimEnd | Where-Object { $_ })
        $narrow[0] | Should -Match '^Computer\s+Script\s+ExitCode\s+Output$'
        $narrow[2] | Should -Match '^ws-0008\.contoso\.test\s+triage\.ps1\s+0\s+Ran'
        foreach ($line in $narrow) { $line.Length | Should -BeLessOrEqual 80 }
    }
}
