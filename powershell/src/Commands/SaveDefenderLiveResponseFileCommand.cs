using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Save-DefenderLiveResponseFile (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsData.Save, "DefenderLiveResponseFile", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
        DefaultParameterSetName = ComputerNameSet, HelpUri = Help.Base + "save-defenderliveresponsefile")]
    [OutputType("DefenderPackage.LiveResponseFile")]
    public sealed class SaveDefenderLiveResponseFileCommand : DeviceCommand
    {
        // What the pipeline gave, fetched together in EndProcessing, several at once.
        readonly List<KeyValuePair<DefenderTarget, string>> approved = new List<KeyValuePair<DefenderTarget, string>>();
        string folder;

        /// <summary>The files' paths on each device.</summary>
        [Parameter(Mandatory = true)]
        [ValidateNotNullOrEmpty]
        public string[] RemotePath { get; set; }

        /// <summary>The folder the files are saved in (created when missing).</summary>
        [Parameter(Position = 0)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; }

        /// <summary>Seconds to wait for each file: its session to start and end.</summary>
        [Parameter]
        [ValidateRange(1, 2147483)]
        public int Timeout { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        public SaveDefenderLiveResponseFileCommand()
        {
            Path = ".";
            Timeout = 3600;
        }

        // Each file's name is its session's (<action id>-<index>), so no file is ever replaced.
        internal override IDictionary<string, string> CallOptions
        {
            get { return new Dictionary<string, string> { { "wait_timeout_ms", Help.Milliseconds(Timeout) } }; }
        }

        internal override string Reword(string message)
        {
            return Help.RewordTimeout(message, Timeout);
        }

        protected override void BeginProcessing()
        {
            // The library resolves relative paths against the process's directory, not this session's location.
            folder = GetUnresolvedProviderPathFromPSPath(Path);
            if (File.Exists(folder))
                ThrowTerminatingError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                    "-Path '" + folder + "' is a file; give the folder the files are saved in.", ErrorCategory.InvalidArgument, folder, null));
            if (!MyInvocation.BoundParameters.ContainsKey("WhatIf")) _ = Scope;
            if (!Directory.Exists(folder) && ShouldProcess(folder, "Create folder"))
            {
                try
                {
                    Directory.CreateDirectory(folder);
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    ThrowTerminatingError(DefenderErrors.ModuleError("Io", DefenderStatus.Io, e.Message, ErrorCategory.WriteError, folder,
                        "Check the folder's path and permissions."));
                }
            }
        }

        protected override void ProcessRecord()
        {
            foreach (DefenderTarget device in Devices())
            {
                foreach (string remotePath in RemotePath)
                {
                    if (!ShouldProcess(device.ToString(), "Fetch '" + remotePath + "' (live response GetFile) into folder '" + folder + "'")) continue;
                    approved.Add(new KeyValuePair<DefenderTarget, string>(device, remotePath));
                }
            }
        }

        protected override void EndProcessing()
        {
            if (approved.Count == 0) return;
            Scope.SaveLiveResponseFiles(approved, folder, PassThru);
        }
    }
}
