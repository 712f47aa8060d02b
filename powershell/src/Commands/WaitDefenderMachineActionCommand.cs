using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Wait-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Wait, "DefenderMachineAction", DefaultParameterSetName = ActionIdSet, HelpUri = Help.Base + "wait-defendermachineaction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class WaitDefenderMachineActionCommand : ActionCommand
    {
        /// <summary>Seconds to wait for each action.</summary>
        [Parameter]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        public WaitDefenderMachineActionCommand()
        {
            Timeout = 3600;
        }

        internal override IDictionary<string, string> CallOptions
        {
            get { return new Dictionary<string, string> { { "wait_timeout_ms", Help.Milliseconds(Timeout) } }; }
        }

        internal override string Reword(string message)
        {
            return Help.RewordTimeout(message, Timeout);
        }

        internal override PSObject Call(CommandScope scope, DefenderTarget action)
        {
            return scope.WaitForAction(action);
        }
    }
}
