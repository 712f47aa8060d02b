using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Start-DefenderInvestigationPackageCollection (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsLifecycle.Start, "DefenderInvestigationPackageCollection", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType("DefenderPackage.MachineAction")]
    public sealed class StartDefenderInvestigationPackageCollectionCommand : DefenderCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] MachineId { get; set; }

        [Parameter(Mandatory = true)]
        [ValidateNotNullOrEmpty]
        public string Comment { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string id in MachineId)
            {
                if (!ShouldProcess("device " + id, "Collect an investigation package")) continue;
                PSObject action = Scope.CollectInvestigationPackage(id, Comment);
                if (action != null) WriteObject(action);
            }
        }
    }
}
