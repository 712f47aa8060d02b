using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderMachineAction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class GetDefenderMachineActionCommand : ActionIdCommand
    {
        internal override PSObject Call(CommandScope scope, string actionId)
        {
            return scope.GetMachineAction(actionId);
        }
    }
}
