using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderPackageUri (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderPackageUri")]
    [OutputType("DefenderPackage.PackageUri")]
    public sealed class GetDefenderPackageUriCommand : DefenderCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string id in ActionId)
            {
                PSObject link = Scope.GetPackageUri(id);
                if (link != null) WriteObject(link);
            }
        }
    }
}
