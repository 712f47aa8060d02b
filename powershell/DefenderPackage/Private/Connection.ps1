# The session's connection: one DefenderClient, the options Connect-DefenderApi gave it, and,
# for a certificate in a store, the certificate and app that client assertions are signed for.

# Assertions signed with a certificate from a store live this long. Each command hands the
# library a fresh one (which keeps its cached token), so a sign-in within a command's first ten
# minutes always has a valid assertion.
$script:AssertionLifetime = [TimeSpan]::FromMinutes(10)

function New-DefenderErrorRecord {
    # An error record for a failure found by the module itself, in the form the library's
    # failures take (ErrorId Defender.<reason>).
    param(
        [Parameter(Mandatory)] [string] $Reason,
        [Parameter(Mandatory)] [string] $Message,
        [Parameter(Mandatory)] [System.Management.Automation.ErrorCategory] $Category,
        [object] $Target
    )
    [System.Management.Automation.ErrorRecord]::new(
        [InvalidOperationException]::new($Message), "Defender.$Reason", $Category, $Target)
}

function Get-DefenderConnection {
    # The connection, with a fresh client assertion when it signs in with a stored certificate;
    # a terminating error for $Command when there is none.
    param([Parameter(Mandatory)] [System.Management.Automation.PSCmdlet] $Command)
    $connection = $script:Connection
    if (-not $connection) {
        $Command.ThrowTerminatingError((New-DefenderErrorRecord -Reason NotConnected -Category ConnectionError `
                    -Message 'Not connected to the Defender for Endpoint API: run Connect-DefenderApi first.'))
    }
    if ($connection.Certificate) {
        Set-DefenderClientAssertion -Connection $connection
    }
    $connection
}

function Set-DefenderClientAssertion {
    # Signs a client assertion with the connection's certificate and hands it to its client.
    param([Parameter(Mandatory)] [psobject] $Connection)
    $assertion = [Defender.ClientAssertion]::Create($Connection.Certificate, $Connection.Client.GetAssertionAudience(),
        $Connection.ClientId, $script:AssertionLifetime)
    $Connection.Client.Set('client_assertion', $assertion)
}

function Get-InnerDefenderException {
    # The DefenderException behind an exception PowerShell wrapped (a .NET method's exceptions
    # arrive as MethodInvocationException).
    param([Parameter(Mandatory)] [Exception] $Exception)
    for ($current = $Exception; $current; $current = $current.InnerException) {
        if ($current -is [Defender.DefenderException]) {
            return $current
        }
    }
    throw $Exception
}

function Set-DefenderClientOption {
    # Sets an option of $Client; $null restores its default (a $null passed to a .NET string
    # parameter would arrive as '').
    param(
        [Parameter(Mandatory)] [Defender.DefenderClient] $Client,
        [Parameter(Mandatory)] [string] $Key,
        [AllowNull()] [object] $Value
    )
    if ($null -eq $Value) {
        $Client.Set($Key, [NullString]::Value)
    } else {
        $Client.Set($Key, [string]$Value)
    }
}

function Invoke-DefenderCall {
    # Runs $Call with a CommandScope of the session's client for $Command (whose calls write
    # their failures as $Command's non-terminating errors, log lines to its streams, Ctrl+C
    # cancels), with $Option set on the client for this call only. $Call gets the scope.
    param(
        [Parameter(Mandatory)] [System.Management.Automation.PSCmdlet] $Command,
        [Parameter(Mandatory)] [scriptblock] $Call,
        [hashtable] $Option = @{}
    )
    $connection = Get-DefenderConnection -Command $Command
    $scope = [Defender.PowerShell.CommandScope]::new($connection.Client, $Command)
    try {
        foreach ($key in $Option.Keys) {
            Set-DefenderClientOption -Client $connection.Client -Key $key -Value $Option[$key]
        }
        & $Call $scope
    } finally {
        # Back to what Connect-DefenderApi set (or the library's default).
        foreach ($key in $Option.Keys) {
            Set-DefenderClientOption -Client $connection.Client -Key $key -Value $connection.Options[$key]
        }
        $scope.Dispose()
    }
}

function ConvertTo-DefenderMachineAction {
    # A MachineAction as the service sent it (every field, the API's names), typed for the
    # module's format view and for pipeline binding by Id.
    param([Parameter(ValueFromPipeline)] [AllowNull()] [Defender.MachineAction] $Action)
    process {
        if (-not $Action) {
            return
        }
        $object = $Action.Json | ConvertFrom-Json
        $object.PSObject.TypeNames.Insert(0, 'DefenderPackage.MachineAction')
        $object
    }
}

function ConvertTo-DefenderOptionValue {
    # An -Option value as the library takes it: text, booleans as 'true'/'false', numbers
    # without the session's culture, $null for the default.
    param([AllowNull()] [object] $Value)
    if ($null -eq $Value) {
        return $null
    }
    if ($Value -is [bool] -or $Value -is [switch]) {
        return ([bool]$Value).ToString().ToLowerInvariant()
    }
    [Convert]::ToString($Value, [Globalization.CultureInfo]::InvariantCulture)
}

function Find-DefenderCertificate {
    # The certificate with $Thumbprint from CurrentUser\My, else LocalMachine\My, with a private key.
    param(
        [Parameter(Mandatory)] [string] $Thumbprint,
        [Parameter(Mandatory)] [System.Management.Automation.PSCmdlet] $Command
    )
    $wanted = ($Thumbprint -replace '[\s:]', '').ToUpperInvariant()
    foreach ($location in 'CurrentUser', 'LocalMachine') {
        $store = [System.Security.Cryptography.X509Certificates.X509Store]::new('My', $location)
        try {
            $store.Open('ReadOnly, OpenExistingOnly')
        } catch {
            # LocalMachine\My does not exist on every system (Linux, macOS).
            $store.Dispose()
            continue
        }
        try {
            $found = $store.Certificates.Find('FindByThumbprint', $wanted, $false)
            if ($found.Count -gt 0) {
                $certificate = $found[0]
                if (-not $certificate.HasPrivateKey) {
                    $Command.ThrowTerminatingError((New-DefenderErrorRecord -Reason CertificateWithoutKey `
                                -Category InvalidArgument -Target $wanted `
                                -Message "The certificate $wanted in $location\My has no private key that this process can use."))
                }
                return $certificate
            }
        } finally {
            $store.Dispose()
        }
    }
    $Command.ThrowTerminatingError((New-DefenderErrorRecord -Reason CertificateNotFound -Category ObjectNotFound `
                -Target $wanted -Message "No certificate with thumbprint $wanted in CurrentUser\My or LocalMachine\My."))
}
