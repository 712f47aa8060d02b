using System.Collections.Generic;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Get-DefenderLibraryFile (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsCommon.Get, "DefenderLibraryFile", HelpUri = Help.Base + "get-defenderlibraryfile")]
    [OutputType("DefenderPackage.LibraryFile")]
    public sealed class GetDefenderLibraryFileCommand : DefenderApiCmdlet
    {
        /// <summary>File names; * and ? are wildcards. Default: every file.</summary>
        [Parameter(Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(LibraryFileCompleter))]
        public string[] FileName { get; set; }

        // The library is listed once per command, however many names the pipeline gives.
        IList<PSObject> files;

        protected override void ProcessRecord()
        {
            if (files == null) files = Scope.GetLibraryFiles();
            if (files == null) return;
            if (FileName == null)
            {
                WriteObject(files, true);
                return;
            }
            foreach (string name in FileName)
            {
                WildcardPattern pattern = WildcardPattern.Get(name, WildcardOptions.IgnoreCase);
                bool found = false;
                foreach (PSObject file in files)
                {
                    if (!pattern.IsMatch(DefenderTarget.Text(file, "fileName") ?? "")) continue;
                    found = true;
                    WriteObject(file);
                }
                if (!found && !WildcardPattern.ContainsWildcardCharacters(name))
                    WriteError(DefenderErrors.ModuleError("NotFound", DefenderStatus.NotFound,
                        "The live response library has no file " + PipelineInput.Quote(name) + ".", ErrorCategory.ObjectNotFound, name,
                        "Get-DefenderLibraryFile lists the library; Publish-DefenderLibraryFile adds a file."));
            }
        }
    }
}
