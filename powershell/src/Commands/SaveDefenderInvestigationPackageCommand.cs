using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Save-DefenderInvestigationPackage (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsData.Save, "DefenderInvestigationPackage", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low,
        DefaultParameterSetName = NowSet)]
    [OutputType("DefenderPackage.InvestigationPackage")]
    public sealed class SaveDefenderInvestigationPackageCommand : DefenderCmdlet
    {
        const string NowSet = "Now";
        const string WaitSet = "Wait";

        // The ids of the pipeline, saved together in EndProcessing: one batch downloads them several at once.
        readonly List<string> approved = new List<string>();
        string destination;
        bool toFile;

        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [Alias("Id")]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = WaitSet)]
        public SwitchParameter Wait { get; set; }

        [Parameter(ParameterSetName = WaitSet)]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        [Parameter]
        public SwitchParameter Force { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        public SaveDefenderInvestigationPackageCommand()
        {
            Path = ".";
            Timeout = 3600;
        }

        // -Force and -Wait are this command's options alone: a command nested in its pipeline
        // (Save -Force -PassThru | ForEach-Object { Save ... }) has its own.
        internal override IDictionary<string, string> CallOptions
        {
            get
            {
                Dictionary<string, string> options = new Dictionary<string, string>();
                if (Force) options["overwrite"] = "true";
                if (Wait) options["wait_timeout_ms"] = (Timeout * 1000L).ToString(CultureInfo.InvariantCulture);
                return options;
            }
        }

        protected override void BeginProcessing()
        {
            // The library resolves relative paths against the process's directory, not this session's location.
            destination = GetUnresolvedProviderPathFromPSPath(Path);
            toFile = File.Exists(destination) ||
                (destination.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(destination));
            if (!toFile && !Directory.Exists(destination) && ShouldProcess(destination, "Create folder"))
            {
                try
                {
                    Directory.CreateDirectory(destination);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    ThrowTerminatingError(new ErrorRecord(e, "Defender.Io", ErrorCategory.WriteError, destination));
                }
            }
        }

        protected override void ProcessRecord()
        {
            foreach (string id in ActionId)
            {
                string target = toFile ? destination : System.IO.Path.Combine(destination, id + ".zip");
                if (!ShouldProcess("machine action " + id, "Save the investigation package to '" + target + "'")) continue;
                if (toFile && approved.Count > 0)
                {
                    WriteError(ModuleError("InvalidArgument",
                        "-Path '" + destination + "' is a file and takes one package; give a folder to save several.",
                        ErrorCategory.InvalidArgument, id));
                    continue;
                }
                approved.Add(id);
            }
        }

        protected override void EndProcessing()
        {
            if (approved.Count == 0) return;
            if (toFile) Scope.SavePackage(approved[0], destination, PassThru);
            else Scope.SavePackages(approved, destination, PassThru);
        }
    }
}
