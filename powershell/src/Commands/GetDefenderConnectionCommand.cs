using System.Management.Automation;
using System.Management.Automation.Runspaces;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderConnection: the connection commands use (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderConnection", HelpUri = Help.Base + "get-defenderconnection")]
    [OutputType(typeof(DefenderConnection))]
    public sealed class GetDefenderConnectionCommand : DefenderCmdlet
    {
        /// <summary>The connection to show; by default the one commands use without -Connection.</summary>
        [Parameter(ValueFromPipeline = true)]
        [ValidateNotNull]
        public DefenderConnection Connection { get; set; }

        protected override void ProcessRecord()
        {
            DefenderConnection connection = Connection;
            if (connection == null)
            {
                bool borrowed;
                int others;
                Runspace runspace = Runspace.DefaultRunspace;
                connection = runspace == null ? null : Connections.Find(runspace, out borrowed, out others);
                if (connection == null)
                {
                    WriteVerbose("Not connected: run Connect-DefenderApi.");
                    return;
                }
            }
            if (connection.IsConnected)
            {
                // Its token as it is now (the library renews it by itself): signing in when it has none.
                try
                {
                    Open(connection.Client).SignIn(connection);
                }
                catch (DefenderException e)
                {
                    WriteError(DefenderErrors.ToErrorRecord(e, connection));
                }
            }
            connection.HandedOut = true;
            WriteObject(connection);
        }
    }
}
