using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Disconnect-DefenderApi: frees the session's client (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommunications.Disconnect, "DefenderApi")]
    [OutputType(typeof(void))]
    public sealed class DisconnectDefenderApiCommand : PSCmdlet
    {
        protected override void ProcessRecord()
        {
            if (DefenderConnection.ForThisRunspace == null) return;
            DefenderConnection.Replace(null);
            WriteVerbose("Disconnected from the Defender for Endpoint API.");
        }
    }
}
