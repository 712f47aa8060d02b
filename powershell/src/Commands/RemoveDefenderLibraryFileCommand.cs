using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Remove-DefenderLibraryFile (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Remove, "DefenderLibraryFile", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High,
        HelpUri = Help.Base + "remove-defenderlibraryfile")]
    public sealed class RemoveDefenderLibraryFileCommand : DefenderApiCmdlet
    {
        /// <summary>The library's file names (Get-DefenderLibraryFile pipes them).</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(LibraryFileCompleter))]
        public string[] FileName { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string name in FileName)
            {
                if (!ShouldProcess(name, "Remove from the tenant's live response library")) continue;
                Scope.RemoveLibraryFile(name);
            }
        }

        internal override string RecommendedAction(DefenderStatus status)
        {
            switch (status)
            {
                case DefenderStatus.NotFound:
                    return "Get-DefenderLibraryFile lists the library's files.";
                case DefenderStatus.Forbidden:
                    return "Grant the app the application permission Library.Manage on WindowsDefenderATP with admin consent.";
                default:
                    return null;
            }
        }
    }
}
