using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Save-DefenderInvestigationPackage (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsData.Save, "DefenderInvestigationPackage", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low,
        DefaultParameterSetName = ActionCommand.ActionIdSet, HelpUri = Help.Base + "save-defenderinvestigationpackage")]
    [OutputType("DefenderPackage.InvestigationPackage")]
    public sealed class SaveDefenderInvestigationPackageCommand : DefenderApiCmdlet
    {
        // What the pipeline gave, saved together in EndProcessing: one batch downloads them
        // several at once, and -Path's use is checked before any download.
        readonly List<DefenderTarget> approved = new List<DefenderTarget>();
        string destination;
        bool toFile;

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ActionCommand.ActionIdSet)]
        [ValidateNotNullOrEmpty]
        public string[] ActionId { get; set; }

        /// <summary>Machine action ids or objects (machine actions, saved packages, links, devices), from the pipeline.</summary>
        [Parameter(Mandatory = true, ParameterSetName = ActionCommand.InputObjectSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public PSObject[] InputObject { get; set; }

        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; }

        [Parameter]
        public SwitchParameter Wait { get; set; }

        /// <summary>Seconds to wait for each collection, with -Wait.</summary>
        [Parameter]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        /// <summary>The file name of each package in a folder (the library's option file_name_pattern).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(FileNamePatternCompleter))]
        public string FileNamePattern { get; set; }

        [Parameter]
        public SwitchParameter Force { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        public SaveDefenderInvestigationPackageCommand()
        {
            Path = ".";
            Timeout = 3600;
        }

        // -Force, -Wait and -FileNamePattern are this command's options alone: a command nested
        // in its pipeline (Save -Force -PassThru | ForEach-Object { Save ... }) has its own.
        internal override IDictionary<string, string> CallOptions
        {
            get
            {
                Dictionary<string, string> options = new Dictionary<string, string>();
                if (Force) options["overwrite"] = "true";
                if (Wait) options["wait_timeout_ms"] = Help.Milliseconds(Timeout);
                if (FileNamePattern != null) options["file_name_pattern"] = FileNamePattern;
                return options;
            }
        }

        internal override string Reword(string message)
        {
            message = Help.RewordWaitForOther(Help.RewordOverwrite(Help.RewordFileNamePattern(message)));
            return Wait ? Help.RewordTimeout(message, Timeout) : message;
        }

        protected override void BeginProcessing()
        {
            if (MyInvocation.BoundParameters.ContainsKey("Timeout") && !Wait)
                Usage("-Timeout applies with -Wait: add -Wait to wait for the collections, for up to -Timeout seconds each.");
            // The library resolves relative paths against the process's directory, not this session's location.
            destination = GetUnresolvedProviderPathFromPSPath(Path);
            toFile = File.Exists(destination) ||
                (destination.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) && !Directory.Exists(destination));
            if (toFile)
            {
                if (FileNamePattern != null)
                    Usage("-FileNamePattern names the files in a folder; -Path '" + destination + "' is a file. Give a folder, or leave out -FileNamePattern.");
                string folder = System.IO.Path.GetDirectoryName(destination);
                if (!string.IsNullOrEmpty(folder) && !Directory.Exists(folder))
                    ThrowTerminatingError(DefenderErrors.ModuleError("Io", DefenderStatus.Io, "The folder of -Path '" + destination + "' does not exist.",
                        ErrorCategory.ObjectNotFound, destination, "Create the folder first, or give a folder as -Path (it is created)."));
                if (File.Exists(destination) && !Force)
                    ThrowTerminatingError(DefenderErrors.ToErrorRecord(new DefenderException(DefenderStatus.Exists,
                        "'" + destination + "' exists; add -Force to replace it."), destination));
            }
            // Opened now, so that a missing connection or a -FileNamePattern the library refuses
            // stops the command before anything is done.
            if (!MyInvocation.BoundParameters.ContainsKey("WhatIf")) _ = Scope;
            if (!toFile && !Directory.Exists(destination) && ShouldProcess(destination, "Create folder"))
            {
                try
                {
                    Directory.CreateDirectory(destination);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    ThrowTerminatingError(DefenderErrors.ModuleError("Io", DefenderStatus.Io, e.Message, ErrorCategory.WriteError, destination,
                        "Check the folder's path and permissions."));
                }
            }
        }

        void Usage(string message)
        {
            ThrowTerminatingError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument, message,
                ErrorCategory.InvalidArgument, null, null));
        }

        protected override void ProcessRecord()
        {
            foreach (object input in (object[])ActionId ?? InputObject)
            {
                DefenderTarget target = Classify(input, InputKind.Action);
                if (target == null) continue;
                string what = target.IsAction ? "the investigation package of " + target : "the newest investigation package of " + target;
                string where = toFile ? "'" + destination + "'" : "folder '" + destination + "'";
                if (!ShouldProcess(what, "Save to " + where)) continue;
                approved.Add(target);
            }
        }

        protected override void EndProcessing()
        {
            if (approved.Count == 0) return;
            if (toFile && approved.Count > 1)
                Usage("-Path '" + destination + "' is a file and takes one package; " + approved.Count.ToString(CultureInfo.InvariantCulture) +
                    " were given. Give a folder to save several (nothing was saved).");
            List<DefenderTarget> actions = new List<DefenderTarget>();
            foreach (DefenderTarget target in approved)
            {
                DefenderTarget action = target.IsAction ? target : Scope.LatestCollection(target);
                // An id alone is looked up first (a cheap call, where the link is the scarce one),
                // so that its result and its errors name the device. With -Wait the library
                // looks it up as it waits, and a collection started moments ago may not be
                // visible yet: that wait is the library's to tolerate.
                if (action != null && !action.KnowsDevice && !Wait) action = Scope.WithDevice(action);
                if (action != null) actions.Add(action);
            }
            if (actions.Count == 0) return;
            if (toFile) Scope.SavePackage(actions[0], destination, PassThru);
            else Scope.SavePackages(actions, destination, PassThru);
        }
    }

    /// <summary>Completes -FileNamePattern with patterns that name each file after its device.</summary>
    public sealed class FileNamePatternCompleter : IArgumentCompleter
    {
        static readonly string[] Patterns =
        {
            "{ComputerName}_{ActionId}.zip",
            "{ComputerDnsName}_{ActionId}.zip",
            "{ComputerName}_{MachineId}_{ActionId}.zip",
            "{ActionId}.zip",
        };

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            System.Management.Automation.Language.CommandAst commandAst, System.Collections.IDictionary fakeBoundParameters)
        {
            string typed = (wordToComplete ?? "").Trim('\'', '"');
            foreach (string pattern in Patterns)
                if (pattern.StartsWith(typed, StringComparison.OrdinalIgnoreCase))
                    yield return new CompletionResult("'" + pattern + "'", pattern, CompletionResultType.ParameterValue,
                        "Placeholders: {ActionId} (required), {MachineId}, {ComputerDnsName}, {ComputerName}");
        }
    }
}
