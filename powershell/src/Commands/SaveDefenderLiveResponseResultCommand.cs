using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Management.Automation;

namespace Defender.PowerShell.Commands
{
    /// <summary>Save-DefenderLiveResponseResult (help: en-US/DefenderPackage.dll-Help.xml).</summary>
    [Cmdlet(VerbsData.Save, "DefenderLiveResponseResult", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low,
        DefaultParameterSetName = ActionIdSet, HelpUri = Help.Base + "save-defenderliveresponseresult")]
    [OutputType("DefenderPackage.LiveResponseFile")]
    public sealed class SaveDefenderLiveResponseResultCommand : ActionCommand
    {
        // The command types whose results are files to download.
        static readonly string[] WithResult = { "GetFile", "RunScript" };

        string folder;

        /// <summary>The commands whose results to save, by their index in the session; default: each that has one.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ValidateRange(0, int.MaxValue)]
        public int[] Index { get; set; }

        /// <summary>The folder the results are saved in (created when missing).</summary>
        [Parameter(Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        public SaveDefenderLiveResponseResultCommand()
        {
            Path = ".";
        }

        protected override void BeginProcessing()
        {
            folder = GetUnresolvedProviderPathFromPSPath(Path);
            if (File.Exists(folder))
                ThrowTerminatingError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                    "-Path '" + folder + "' is a file; give the folder the results are saved in.", ErrorCategory.InvalidArgument, folder, null));
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

        /// <summary>A device is never taken for one of its sessions: its sessions must be named.</summary>
        internal override DefenderTarget ActionOf(CommandScope scope, DefenderTarget device)
        {
            WriteError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                device + " is a device, not a live response session: Save-DefenderLiveResponseResult saves the results of the sessions it is given.",
                ErrorCategory.InvalidArgument, device,
                "Pipe the sessions instead: Get-DefenderMachineAction -Type LiveResponse ... | Save-DefenderLiveResponseResult, or fetch files with Save-DefenderLiveResponseFile."));
            return null;
        }

        internal override PSObject Call(CommandScope scope, DefenderTarget action)
        {
            PSObject session = scope.GetMachineAction(action);
            if (session == null) return null;
            action = action.WithDeviceOf(session, false);
            if (!string.Equals(DefenderTarget.Text(session, "type"), "LiveResponse", StringComparison.OrdinalIgnoreCase))
            {
                WriteError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                    action + " is a " + (DefenderTarget.Text(session, "type") ?? "machine action") + ", not a live response session.",
                    ErrorCategory.InvalidArgument, action, "Save-DefenderInvestigationPackage saves an investigation package."));
                return null;
            }
            foreach (KeyValuePair<int, string> command in Commands(session))
            {
                string what = "the result of command " + command.Key.ToString(CultureInfo.InvariantCulture) + " of " + action;
                if (!ShouldProcess(what, "Save to folder '" + folder + "'")) continue;
                PSObject saved = scope.SaveLiveResponseResult(action, command.Key, folder, command.Value);
                if (saved != null && PassThru) WriteObject(saved);
            }
            return null;
        }

        // The commands to save: -Index, else each whose type has a result; with the path on the
        // device of a GetFile (null for others).
        IEnumerable<KeyValuePair<int, string>> Commands(PSObject session)
        {
            Dictionary<int, KeyValuePair<string, string>> known = new Dictionary<int, KeyValuePair<string, string>>();
            PSPropertyInfo commands = session.Properties["commands"];
            object[] list = commands == null || commands.Value == null ? new object[0] : (object[])LanguagePrimitives.ConvertTo(commands.Value, typeof(object[]), CultureInfo.InvariantCulture);
            for (int position = 0; position < list.Length; position++)
            {
                PSObject entry = PSObject.AsPSObject(list[position]);
                int index;
                if (!int.TryParse(DefenderTarget.Text(entry, "index"), NumberStyles.Integer, CultureInfo.InvariantCulture, out index)) index = position;
                PSPropertyInfo inner = entry.Properties["command"];
                PSObject command = inner == null || inner.Value == null ? null : PSObject.AsPSObject(inner.Value);
                known[index] = new KeyValuePair<string, string>(command == null ? null : DefenderTarget.Text(command, "type"), command == null ? null : PathOf(command));
            }
            if (Index != null)
            {
                foreach (int index in Index)
                {
                    KeyValuePair<string, string> command;
                    yield return new KeyValuePair<int, string>(index, known.TryGetValue(index, out command) ? command.Value : null);
                }
                yield break;
            }
            List<int> indexes = new List<int>(known.Keys);
            indexes.Sort();
            foreach (int index in indexes)
                if (Array.IndexOf(WithResult, known[index].Key) >= 0) yield return new KeyValuePair<int, string>(index, known[index].Value);
        }

        // A GetFile's Path parameter.
        static string PathOf(PSObject command)
        {
            PSPropertyInfo parameters = command.Properties["params"];
            if (parameters == null || parameters.Value == null) return null;
            foreach (object parameter in (object[])LanguagePrimitives.ConvertTo(parameters.Value, typeof(object[]), CultureInfo.InvariantCulture))
            {
                PSObject pair = PSObject.AsPSObject(parameter);
                if (string.Equals(DefenderTarget.Text(pair, "key"), "Path", StringComparison.OrdinalIgnoreCase)) return DefenderTarget.Text(pair, "value");
            }
            return null;
        }

        internal override string RecommendedAction(DefenderStatus status)
        {
            if (status == DefenderStatus.NotReady)
                return "Wait for the session first: Wait-DefenderMachineAction, or Invoke-DefenderLiveResponse -Wait.";
            return base.RecommendedAction(status);
        }
    }
}
