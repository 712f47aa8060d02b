using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Stop-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Stop, "DefenderMachineAction", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class StopDefenderMachineActionCommand : ActionIdCommand
    {
        /// <summary>Recorded with the cancellation; the library's default when not given.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        internal override PSObject Call(CommandScope scope, string actionId)
        {
            if (!ShouldProcess("machine action " + actionId, "Cancel")) return null;
            return scope.CancelMachineAction(actionId, Comment);
        }
    }
}
