function Disconnect-DefenderApi {
    <#
    .SYNOPSIS
    Ends this session's connection to the Defender for Endpoint API.

    .DESCRIPTION
    Frees the session's client, with its cached access token and connections. Commands that need
    the API then fail until Connect-DefenderApi is run again. Does nothing when not connected.
    Removing the module disconnects too.

    .EXAMPLE
    PS> Disconnect-DefenderApi

    Ends the connection at the end of a runbook.

    .OUTPUTS
    None.

    .LINK
    Connect-DefenderApi
    #>
    [CmdletBinding()]
    [OutputType([void])]
    param()

    if ($script:Connection) {
        $script:Connection.Client.Dispose()
        $script:Connection = $null
        Write-Verbose 'Disconnected from the Defender for Endpoint API.'
    }
}
