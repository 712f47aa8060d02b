# The C# program of tests/windows/InteropConsole, published for win-x64 (self-contained) from the
# Defender.Interop package pack.sh wrote, run by tests/windows/Pester.ps1 in PowerShell under
# Wine: it downloads a package from the simulator with no path to the native library set, and
# .NET finds the package's runtimes/win-x64/native/defender.dll beside it.
#   DEFENDER_TEST_CSHARP  the published InteropConsole.exe

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot '../pester/TestHelpers.psm1') -Force
    $script:Simulator = Start-TestSimulator
}

AfterAll {
    if ($script:Simulator) { Stop-TestSimulator -Simulator $script:Simulator }
}

Describe 'a C# program published for win-x64 from Defender.Interop' {
    It 'downloads a package whose SHA-256 is the simulator''s, loading defender.dll from beside itself' {
        $program = $env:DEFENDER_TEST_CSHARP
        $actionId = New-SimulatedAction -Simulator $script:Simulator
        $folder = New-TestFolder
        $env:DEFENDER_TEST_CLIENT_SECRET = 'simulator-secret'
        try {
            $output = @(& $program $script:Simulator.base_url $script:Simulator.tenant_id $script:Simulator.client_id $actionId $folder 2>&1 |
                ForEach-Object { "$_" })
        } finally {
            $env:DEFENDER_TEST_CLIENT_SECRET = $null
        }
        $LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
        $result = $output[-1] | ConvertFrom-Json
        $expected = Get-SimulatedPackageHash -Simulator $script:Simulator -ActionId $actionId
        $result.sha256 | Should -Be $expected
        (Get-FileHash -LiteralPath $result.path -Algorithm SHA256).Hash.ToLowerInvariant() | Should -Be $expected
        $result.path | Should -BeLike "$folder\*.zip"
        $result.native_library | Should -Be (Join-Path (Split-Path $program) 'defender.dll')
        $result.loaded_by_load_call | Should -BeNullOrEmpty -Because 'the program never calls DefenderLibrary.Load'
        $result.library_version | Should -Not -BeNullOrEmpty
    }
}
