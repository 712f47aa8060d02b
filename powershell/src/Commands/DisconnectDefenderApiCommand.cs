using System.Management.Automation;
using System.Management.Automation.Runspaces;

namespace Defender.PowerShell.Commands
{
    /// <summary>Disconnect-DefenderApi: ends a connection (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommunications.Disconnect, "DefenderApi", HelpUri = Help.Base + "disconnect-defenderapi")]
    [OutputType(typeof(void))]
    public sealed class DisconnectDefenderApiCommand : PSCmdlet
    {
        /// <summary>The connection to end; by default this runspace's.</summary>
        [Parameter(ValueFromPipeline = true)]
        [ValidateNotNull]
        public DefenderConnection Connection { get; set; }

        protected override void ProcessRecord()
        {
            DefenderConnection connection = Connection ?? Connections.DefaultOf(Runspace.DefaultRunspace);
            if (connection == null) return;
            Connections.End(connection);
            WriteVerbose("Disconnected from the Defender for Endpoint API: " + connection + ".");
        }
    }
}
