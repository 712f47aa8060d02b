# A hostile service: the text it sends reaches PowerShell's error records only once it is safe to
# print (control characters escaped as \u001b, length capped), so it can neither drive the
# console with escape sequences nor forge lines in a transcript. Public behaviour only: the
# commands, their parameters and their error ids.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-DefenderModulePath) -Force
    $simulator = Start-TestSimulator
    $connect = Get-SimulatorConnectParameters -Simulator $simulator
    Connect-DefenderApi @connect
}

AfterAll {
    Disconnect-DefenderApi
    Stop-TestSimulator -Simulator $simulator
    Remove-Module DefenderPackage -ErrorAction SilentlyContinue
}

Describe 'Text from a hostile service' {
    It 'reaches the error record with its control characters escaped and its length capped' {
        $id = New-SimulatedAction -Simulator $simulator
        $esc = [char]27
        $message = "$esc]0;pwned$([char]7)$esc[2J`r`n[Error] forged line " + ('x' * 50000)
        $body = @{ error = @{ code = "Bad$esc[31m"; message = $message; target = 'id' } } | ConvertTo-Json -Compress
        Add-SimulatorFault -Simulator $simulator -Rule @{
            endpoint = 'get_package_uri'; action_id = $id; times = 0
            fault = @{ kind = 'answer'; status = 400; body = $body }
        }

        Get-DefenderPackageUri -ActionId $id -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'Defender.Http,*'
        foreach ($text in $failures[0].ToString(), $failures[0].Exception.Message) {
            $text | Should -Not -Match '[\x00-\x1f\x7f-\x9f]'
            $text | Should -BeLike '*\u001b]0;pwned\u0007*'
            $text.Length | Should -BeLessThan 5000
        }
    }
}
