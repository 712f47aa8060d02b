using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Wait-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Wait, "DefenderMachineAction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class WaitDefenderMachineActionCommand : ActionIdCommand
    {
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

        internal override PSObject Call(CommandScope scope, string actionId)
        {
            return scope.WaitForAction(actionId);
        }
    }
}
