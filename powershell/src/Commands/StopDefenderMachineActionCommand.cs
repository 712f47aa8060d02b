using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Stop-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Stop, "DefenderMachineAction", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High,
        DefaultParameterSetName = ActionIdSet, HelpUri = Help.Base + "stop-defendermachineaction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class StopDefenderMachineActionCommand : ActionCommand
    {
        /// <summary>Recorded with the cancellation; the library's default when not given.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        /// <summary>A device is never cancelled by guess: its actions must be named.</summary>
        internal override DefenderTarget ActionOf(CommandScope scope, DefenderTarget device)
        {
            WriteError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                device + " is a device, not a machine action: Stop-DefenderMachineAction cancels only the actions it is given.",
                ErrorCategory.InvalidArgument, device,
                "Pipe the device's actions instead: Get-DefenderMachine ... | Get-DefenderMachineAction -Status InProgress | Stop-DefenderMachineAction."));
            return null;
        }

        internal override PSObject Call(CommandScope scope, DefenderTarget action)
        {
            if (!ShouldProcess(action.ToString(), "Cancel")) return null;
            return scope.CancelMachineAction(action, Comment);
        }
    }
}
