using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Wait-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Wait, "DefenderMachineAction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class WaitDefenderMachineActionCommand : DefenderCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        [Parameter]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        public WaitDefenderMachineActionCommand()
        {
            Timeout = 3600;
        }

        internal override IDictionary<string, string> CallOptions
        {
            get
            {
                return new Dictionary<string, string>
                {
                    { "wait_timeout_ms", (Timeout * 1000L).ToString(CultureInfo.InvariantCulture) },
                };
            }
        }

        protected override void ProcessRecord()
        {
            foreach (string id in ActionId)
            {
                PSObject action = Scope.WaitForAction(id);
                if (action != null) WriteObject(action);
            }
        }
    }
}
