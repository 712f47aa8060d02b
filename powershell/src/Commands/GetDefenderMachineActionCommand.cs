using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderMachineAction (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderMachineAction")]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class GetDefenderMachineActionCommand : DefenderCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string id in ActionId)
            {
                PSObject action = Scope.GetMachineAction(id);
                if (action != null) WriteObject(action);
            }
        }
    }
}
