using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Publish-DefenderLibraryFile (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsData.Publish, "DefenderLibraryFile", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
        HelpUri = Help.Base + "publish-defenderlibraryfile")]
    [OutputType("DefenderPackage.LibraryFile")]
    public sealed class PublishDefenderLibraryFileCommand : DefenderApiCmdlet
    {
        /// <summary>The files to put in the library (Get-ChildItem pipes them).</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName")]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        /// <summary>What the file is (the service requires one).</summary>
        [Parameter(Mandatory = true)]
        [ValidateNotNullOrEmpty]
        public string Description { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string ParametersDescription { get; set; }

        [Parameter]
        public SwitchParameter HasParameters { get; set; }

        /// <summary>Replace a file of the same name in the library.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void BeginProcessing()
        {
            if (ParametersDescription != null && !HasParameters)
                ThrowTerminatingError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                    "-ParametersDescription describes a script's parameters: add -HasParameters.", ErrorCategory.InvalidArgument, null, null));
        }

        protected override void ProcessRecord()
        {
            foreach (string given in Path)
            {
                string path = GetUnresolvedProviderPathFromPSPath(given);
                if (!System.IO.File.Exists(path))
                {
                    WriteError(DefenderErrors.ModuleError("Io", DefenderStatus.Io, "There is no file '" + path + "' to publish.",
                        ErrorCategory.ObjectNotFound, given, "Check the path."));
                    continue;
                }
                string name = System.IO.Path.GetFileName(path);
                if (!ShouldProcess(name, Force ? "Publish to the tenant's live response library, replacing a file of that name" :
                        "Publish to the tenant's live response library")) continue;
                PSObject file = Scope.UploadLibraryFile(path, Description, ParametersDescription, HasParameters, Force);
                if (file != null) WriteObject(file);
            }
        }

        internal override string RecommendedAction(DefenderStatus status)
        {
            switch (status)
            {
                case DefenderStatus.Exists:
                    return "Add -Force to replace the library's file of that name.";
                case DefenderStatus.Forbidden:
                    return "Grant the app the application permission Library.Manage on WindowsDefenderATP with admin consent.";
                default:
                    return null;
            }
        }
    }
}
