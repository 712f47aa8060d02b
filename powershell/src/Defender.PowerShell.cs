// What the DefenderPackage cmdlets share beyond the binding in Defender.cs: a command's own clone
// of the session's client (its options, its cancellation), the library's log lines and phases
// written to the command's streams and progress bars, Ctrl+C turned into a cancellation, and
// failures turned into ErrorRecords.
//
// Native callbacks arrive on the pipeline thread (the library calls them on the thread that made
// the call, and DownloadPackages relays them to it), so writing to the command from them is
// safe. StopProcessing, which the engine calls on another thread, only cancels.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Text;
using System.Threading;

namespace Defender.PowerShell
{
    /// <summary>
    /// The base of the module's cmdlets: the session's connection, a scope for the command's
    /// calls, and Ctrl+C (StopProcessing) cancelling the call in flight.
    /// </summary>
    public abstract class DefenderCmdlet : PSCmdlet, IDisposable
    {
        readonly object scopeLock = new object();
        CommandScope scope;
        bool stopping;

        /// <summary>
        /// The command's scope: created at its first call, on a clone of the session's client with
        /// <see cref="CallOptions"/> set on it. Terminating error Defender.NotConnected when the
        /// session is not connected.
        /// </summary>
        internal CommandScope Scope
        {
            get
            {
                if (scope != null) return scope;
                DefenderConnection connection = DefenderConnection.ForThisRunspace;
                if (connection == null)
                    ThrowTerminatingError(ModuleError("NotConnected",
                        "Not connected to the Defender for Endpoint API: run Connect-DefenderApi first.",
                        ErrorCategory.ConnectionError, null));
                return Open(connection.Client);
            }
        }

        /// <summary>
        /// Options of the library for this command's calls only (overwrite, wait_timeout_ms); the
        /// session's client and other commands (a nested command in the pipeline) keep theirs.
        /// </summary>
        internal virtual IDictionary<string, string> CallOptions
        {
            get { return null; }
        }

        /// <summary>Opens the command's scope on a clone of <paramref name="client"/>.</summary>
        internal CommandScope Open(DefenderClient client)
        {
            CommandScope opened = new CommandScope(client, this, CallOptions);
            lock (scopeLock)
            {
                scope = opened;
                if (stopping) opened.Stop();
            }
            return opened;
        }

        protected override void StopProcessing()
        {
            lock (scopeLock)
            {
                stopping = true;
                if (scope != null) scope.Stop();
            }
        }

        public void Dispose()
        {
            lock (scopeLock)
            {
                if (scope != null) scope.Dispose();
                scope = null;
            }
        }

        /// <summary>
        /// An error record for a failure the module finds itself, in the form of the library's
        /// (ErrorId Defender.&lt;reason&gt;).
        /// </summary>
        internal static ErrorRecord ModuleError(string reason, string message, ErrorCategory category, object target)
        {
            return new ErrorRecord(new InvalidOperationException(message), "Defender." + reason, category, target);
        }
    }

    /// <summary>
    /// One command's calls, from its creation to Dispose: a clone of the session's client with
    /// the command's own options, whose failures are the command's non-terminating errors, whose
    /// log lines go to the command's Verbose, Warning and Debug streams and whose phases to its
    /// progress bars, and which <see cref="Stop"/> (Ctrl+C) cancels.
    /// </summary>
    sealed class CommandScope : IDisposable
    {
        const string InvestigationPackageType = "DefenderPackage.InvestigationPackage";
        const string MachineActionType = "DefenderPackage.MachineAction";
        const string MachineType = "DefenderPackage.Machine";
        const string PackageUriType = "DefenderPackage.PackageUri";

        readonly DefenderClient client;
        readonly PSCmdlet command;
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        // The bars the phases of the call in flight go to.
        PackageProgress bars;

        internal CommandScope(DefenderClient sessionClient, PSCmdlet command, IDictionary<string, string> options)
        {
            this.command = command;
            client = sessionClient.Clone();
            try
            {
                if (options != null)
                    foreach (KeyValuePair<string, string> option in options) client.Set(option.Key, option.Value);
                client.LogHandler = WriteLog;
                client.PhaseHandler = ReportPhase;
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }

        /// <summary>From any thread (StopProcessing): cancels the call in flight and every later one.</summary>
        internal void Stop()
        {
            try
            {
                stop.Cancel();
                // The clone is this command's alone: cancelling it stops no other command.
                client.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The command finished meanwhile.
            }
        }

        // The calls below write a failure of the library to the command as a non-terminating
        // error about the id (and return null), so that the next pipeline item goes on.

        /// <summary>Signs in now; a failure is thrown (Connect-DefenderApi makes it terminating).</summary>
        internal void SignIn()
        {
            client.SignIn(stop.Token);
        }

        internal PSObject GetMachineAction(string actionId)
        {
            return ToMachineAction(WithBar("Looking up machine action {0}", actionId,
                delegate { return client.GetMachineAction(actionId, stop.Token); }));
        }

        internal PSObject WaitForAction(string actionId)
        {
            return ToMachineAction(WithBar("Waiting for machine action {0}", actionId,
                delegate { return client.WaitForAction(actionId, stop.Token); }));
        }

        internal PSObject CollectInvestigationPackage(string machineId, string comment)
        {
            return ToMachineAction(WithBar("Starting a collection on device {0}", machineId,
                delegate { return client.CollectInvestigationPackage(machineId, comment, stop.Token); }));
        }

        /// <summary>A device by id or computer name (see DefenderClient.GetMachine).</summary>
        internal PSObject GetMachine(string idOrName)
        {
            Machine machine = WithBar("Looking up device {0}", idOrName, delegate { return client.GetMachine(idOrName, stop.Token); });
            return machine == null ? null : ConvertJson(new[] { machine.Json }, MachineType)[0];
        }

        /// <summary>The devices <paramref name="filter"/> selects (null: all); null when the call failed.</summary>
        internal IList<PSObject> ListMachines(string filter)
        {
            return ToObjects(WithBar("Listing devices: {0}", filter ?? AllItems,
                delegate { return client.ListMachines(filter, 0, stop.Token); }), delegate(Machine machine) { return machine.Json; }, MachineType);
        }

        /// <summary>The machine actions <paramref name="filter"/> selects (null: all); null when the call failed.</summary>
        internal IList<PSObject> ListMachineActions(string filter)
        {
            return ToObjects(WithBar("Listing machine actions: {0}", filter ?? AllItems,
                delegate { return client.ListMachineActions(filter, 0, stop.Token); }), delegate(MachineAction action) { return action.Json; }, MachineActionType);
        }

        // The target of a list without a filter, in its bar and its error record.
        const string AllItems = "all";

        // The items of a list as typed objects; null for a list that failed.
        IList<PSObject> ToObjects<T>(IList<T> items, Func<T, string> json, string typeName)
        {
            if (items == null) return null;
            List<string> texts = new List<string>();
            foreach (T item in items) texts.Add(json(item));
            return ConvertJson(texts, typeName);
        }

        internal PSObject CancelMachineAction(string actionId, string comment)
        {
            return ToMachineAction(WithBar("Cancelling machine action {0}", actionId,
                delegate { return client.CancelMachineAction(actionId, comment, stop.Token); }));
        }

        internal PSObject GetPackageUri(string actionId)
        {
            string uri = WithBar("Getting the download link of machine action {0}", actionId,
                delegate { return client.GetPackageUri(actionId, stop.Token); });
            if (uri == null) return null;
            PSObject link = new PSObject();
            link.TypeNames.Insert(0, PackageUriType);
            link.Properties.Add(new PSNoteProperty("ActionId", actionId));
            link.Properties.Add(new PSNoteProperty("Uri", uri));
            return link;
        }

        /// <summary>
        /// Downloads one package to <paramref name="destination"/> (a file, or a folder that gets
        /// &lt;action id&gt;.zip) with a progress bar; with <paramref name="passThru"/> writes it
        /// to the command's output.
        /// </summary>
        internal void SavePackage(string actionId, string destination, bool passThru)
        {
            bars = new PackageProgress(command, new[] { actionId }, SavingActivity);
            try
            {
                DownloadedPackage saved = Run(actionId, delegate
                {
                    return client.DownloadPackage(actionId, destination, null, stop.Token);
                });
                bars.Finish(0);
                if (saved != null && passThru)
                    command.WriteObject(ToInvestigationPackage(saved.ActionId, saved.Path, saved.Bytes, saved.Sha256, saved.Elapsed));
            }
            finally
            {
                bars.Close();
                bars = null;
            }
        }

        /// <summary>
        /// Downloads the packages of <paramref name="actionIds"/> into <paramref name="folder"/>,
        /// several at once, with a progress bar per package under one for the whole batch. Each
        /// package is reported as soon as it is finished: with <paramref name="passThru"/> written
        /// to the command's output when saved, and as a non-terminating error about its action id
        /// when not. An error the command's -ErrorAction turns into a stop (Stop) cancels the
        /// packages still running.
        /// </summary>
        internal void SavePackages(IList<string> actionIds, string folder, bool passThru)
        {
            bars = new PackageProgress(command, actionIds, SavingActivity);
            try
            {
                Run(folder, delegate
                {
                    return client.DownloadPackages(actionIds, folder, null, delegate(int index, PackageDownloadResult item)
                    {
                        bars.Finish(index);
                        if (!item.Succeeded)
                            WriteFailure(new DefenderException(item.Status, item.Message), item.ActionId);
                        else if (passThru)
                            command.WriteObject(ToInvestigationPackage(item.ActionId, item.Path, item.Bytes, item.Sha256, item.Elapsed));
                    }, stop.Token);
                });
            }
            finally
            {
                bars.Close();
                bars = null;
            }
        }

        public void Dispose()
        {
            client.Dispose();
            stop.Dispose();
        }

        const string SavingActivity = "Saving the investigation package of machine action {0}";

        // A call about one id, whose phases (a wait, a queue, a retry) show in a bar of its own
        // (activity: {0} is the id).
        T WithBar<T>(string activity, string target, Func<T> call) where T : class
        {
            bars = new PackageProgress(command, new[] { target }, activity);
            try
            {
                return Run(target, call);
            }
            finally
            {
                bars.Close();
                bars = null;
            }
        }

        T Run<T>(string target, Func<T> call) where T : class
        {
            try
            {
                return call();
            }
            catch (DefenderException e)
            {
                WriteFailure(e, target);
                return null;
            }
        }

        // With -ErrorAction Stop this throws ActionPreferenceStopException, which ends the command.
        void WriteFailure(DefenderException failure, object target)
        {
            command.WriteError(DefenderErrors.ToErrorRecord(failure, target));
        }

        void ReportPhase(PhaseEvent phase)
        {
            if (bars != null) bars.Report(phase);
        }

        // A MachineAction as the service sent it (every field, the API's names), as
        // ConvertFrom-Json makes it, typed for the module's format view and for pipeline binding by Id.
        PSObject ToMachineAction(MachineAction action)
        {
            if (action == null) return null;
            return ConvertJson(new[] { action.Json }, MachineActionType)[0];
        }

        // Objects of the service (one JSON object each) as ConvertFrom-Json makes them, with
        // <paramref name="typeName"/> first among their type names.
        IList<PSObject> ConvertJson(IList<string> json, string typeName)
        {
            if (json.Count == 0) return new PSObject[0];
            using (System.Management.Automation.PowerShell convert =
                System.Management.Automation.PowerShell.Create(RunspaceMode.CurrentRunspace))
            {
                convert.AddCommand("Microsoft.PowerShell.Utility\\ConvertFrom-Json");
                Collection<PSObject> converted = convert.Invoke(json);
                if (converted.Count != json.Count)
                    throw new InvalidOperationException("ConvertFrom-Json did not make one object of each " + typeName + ".");
                foreach (PSObject result in converted) result.TypeNames.Insert(0, typeName);
                return converted;
            }
        }

        // What -PassThru returns for a saved package.
        static PSObject ToInvestigationPackage(string actionId, string path, long size, string sha256, TimeSpan elapsed)
        {
            PSObject package = new PSObject();
            package.TypeNames.Insert(0, InvestigationPackageType);
            package.Properties.Add(new PSNoteProperty("ActionId", actionId));
            package.Properties.Add(new PSNoteProperty("Path", path));
            package.Properties.Add(new PSNoteProperty("Size", size));
            package.Properties.Add(new PSNoteProperty("Sha256", sha256));
            package.Properties.Add(new PSNoteProperty("Elapsed", elapsed));
            return package;
        }

        void WriteLog(DefenderLogLevel level, string message)
        {
            switch (level)
            {
                case DefenderLogLevel.Warn:
                    command.WriteWarning(message);
                    break;
                case DefenderLogLevel.Debug:
                    command.WriteDebug(message);
                    break;
                default:
                    // Error lines announce the failure that the command reports as an error record.
                    command.WriteVerbose(message);
                    break;
            }
        }
    }

    /// <summary>
    /// The progress bars of a command's items: one per item, showing its phase (waiting for the
    /// collection, queued for the rate limit, downloading, verifying, retrying) from its first
    /// report until it is finished, and, for several, one for the whole ("n of N packages") that
    /// the others are children of.
    /// </summary>
    sealed class PackageProgress
    {
        const int OverallActivityId = 1;

        readonly PSCmdlet command;
        readonly IList<string> ids;
        readonly string itemActivity;
        readonly bool[] shown;
        readonly string overallActivity;
        int finished;

        /// <param name="itemActivity">The activity of an item's bar, {0} being its id.</param>
        internal PackageProgress(PSCmdlet command, IList<string> ids, string itemActivity)
        {
            this.command = command;
            this.ids = ids;
            this.itemActivity = itemActivity;
            shown = new bool[ids.Count];
            overallActivity = string.Format(CultureInfo.CurrentCulture, "Saving {0} investigation packages", ids.Count);
            if (Several) WriteOverall(ProgressRecordType.Processing);
        }

        // One item needs no bar above its own.
        bool Several
        {
            get { return ids.Count > 1; }
        }

        /// <summary>What item <paramref name="phase"/>.Index is doing now.</summary>
        internal void Report(PhaseEvent phase)
        {
            int index = phase.Index;
            if (index < 0 || index >= ids.Count) return;
            // A new record each time: a host may keep the records it was given.
            ProgressRecord progress = ItemRecord(index, "Working");
            Describe(phase, progress);
            command.WriteProgress(progress);
            shown[index] = true;
        }

        /// <summary>Item <paramref name="index"/> is finished, saved or not: its bar goes.</summary>
        internal void Finish(int index)
        {
            CompleteItem(index);
            finished++;
            if (Several) WriteOverall(ProgressRecordType.Processing);
        }

        /// <summary>Removes the bars still shown (of items a failure or cancellation stopped).</summary>
        internal void Close()
        {
            // Writing to a stopping pipeline throws; the bars go away with it anyway.
            if (command.Stopping) return;
            for (int index = 0; index < shown.Length; index++) CompleteItem(index);
            if (Several) WriteOverall(ProgressRecordType.Completed);
        }

        void CompleteItem(int index)
        {
            if (!shown[index]) return;
            shown[index] = false;
            ProgressRecord completed = ItemRecord(index, "Done");
            completed.RecordType = ProgressRecordType.Completed;
            command.WriteProgress(completed);
        }

        ProgressRecord ItemRecord(int index, string status)
        {
            ProgressRecord record = new ProgressRecord(OverallActivityId + 1 + index,
                string.Format(CultureInfo.CurrentCulture, itemActivity, ids[index]), status);
            if (Several) record.ParentActivityId = OverallActivityId;
            return record;
        }

        void WriteOverall(ProgressRecordType type)
        {
            string status = string.Format(CultureInfo.CurrentCulture, "{0} of {1} packages", finished, ids.Count);
            ProgressRecord overall = new ProgressRecord(OverallActivityId, overallActivity, status);
            overall.PercentComplete = finished * 100 / ids.Count;
            overall.RecordType = type;
            command.WriteProgress(overall);
        }

        /// <summary>The bar's status (what the item is doing) and current operation (the detail).</summary>
        static void Describe(PhaseEvent phase, ProgressRecord record)
        {
            switch (phase.Phase)
            {
                case DefenderPhase.WaitingForCollection:
                    record.StatusDescription = "Waiting for the collection to finish: " + phase.Detail + " for " + Duration(phase.Elapsed);
                    if (phase.Remaining.HasValue) record.CurrentOperation = "Looking again in " + Duration(phase.Remaining.Value);
                    break;
                case DefenderPhase.QueuedForRateLimit:
                    record.StatusDescription = phase.QueuePosition <= 1
                        ? "Next in line for the API's rate limit"
                        : string.Format(CultureInfo.CurrentCulture, "Queued for the API's rate limit: {0} calls ahead", phase.QueuePosition - 1);
                    record.CurrentOperation = phase.Remaining.HasValue
                        ? "About " + Duration(phase.Remaining.Value) + " to go"
                        : "Waiting for calls in flight to be answered";
                    if (phase.Remaining.HasValue) record.SecondsRemaining = Seconds(phase.Remaining.Value);
                    break;
                case DefenderPhase.WaitingForDownloadSlot:
                    record.StatusDescription = "Ready; waiting for a download slot (max_concurrent_downloads)";
                    break;
                case DefenderPhase.Downloading:
                    record.StatusDescription = DescribeBytes(phase.BytesDone, phase.BytesTotal);
                    if (phase.BytesTotal > 0) record.PercentComplete = (int)Math.Min(100, phase.BytesDone * 100 / phase.BytesTotal);
                    record.CurrentOperation = phase.BytesPerSecond > 0 ? "Downloading at " + FormatBytes(phase.BytesPerSecond) + "/s" : "Downloading";
                    if (phase.BytesPerSecond > 0 && phase.BytesTotal > 0)
                        record.SecondsRemaining = (int)Math.Min(int.MaxValue, (phase.BytesTotal - phase.BytesDone) / phase.BytesPerSecond);
                    break;
                case DefenderPhase.Verifying:
                    record.StatusDescription = DescribeBytes(phase.BytesTotal, phase.BytesTotal);
                    record.PercentComplete = 100;
                    record.CurrentOperation = "Verifying the package";
                    break;
                case DefenderPhase.Retrying:
                    record.StatusDescription = string.Format(CultureInfo.CurrentCulture, "Retrying{0} (retry {1})",
                        phase.Remaining.HasValue ? " in " + Duration(phase.Remaining.Value) : "", phase.Attempt);
                    record.CurrentOperation = phase.Detail;
                    break;
                default:
                    record.StatusDescription = "Working";
                    break;
            }
        }

        static int Seconds(TimeSpan duration)
        {
            return (int)Math.Min(int.MaxValue, Math.Ceiling(duration.TotalSeconds));
        }

        // "12 s", "3 min 5 s", "1 h 20 min"
        static string Duration(TimeSpan duration)
        {
            if (duration.TotalSeconds < 60) return Math.Ceiling(duration.TotalSeconds).ToString(CultureInfo.CurrentCulture) + " s";
            if (duration.TotalMinutes < 60)
                return string.Format(CultureInfo.CurrentCulture, "{0} min {1} s", (int)duration.TotalMinutes, duration.Seconds);
            return string.Format(CultureInfo.CurrentCulture, "{0} h {1} min", (int)duration.TotalHours, duration.Minutes);
        }

        static string DescribeBytes(long done, long total)
        {
            if (total <= 0) return FormatBytes(done);
            return FormatBytes(done) + " of " + FormatBytes(total);
        }

        static string FormatBytes(long bytes)
        {
            string[] units = { "bytes", "KiB", "MiB", "GiB", "TiB" };
            double value = bytes;
            int unit = 0;
            while (value >= 1024 && unit < units.Length - 1)
            {
                value /= 1024;
                unit++;
            }
            return unit == 0
                ? bytes.ToString(CultureInfo.CurrentCulture) + " bytes"
                : value.ToString("0.0", CultureInfo.CurrentCulture) + " " + units[unit];
        }
    }

    /// <summary>Failures of the library as PowerShell error records.</summary>
    public static class DefenderErrors
    {
        /// <summary>
        /// An error record with ErrorId Defender.&lt;Status&gt; (e.g. Defender.NotReady for the
        /// library's NOT_READY), a fitting category, the library's message, and
        /// <paramref name="target"/> (the action or machine id).
        /// </summary>
        public static ErrorRecord ToErrorRecord(DefenderException exception, object target)
        {
            if (exception == null) throw new ArgumentNullException("exception");
            return new ErrorRecord(exception, "Defender." + ErrorIdOf(exception), CategoryOf(exception.Status), target);
        }

        // The library's name of the status in PascalCase (NOT_READY: NotReady), so that a status
        // this module does not know yet still gets its name; a number the library does not name
        // either stays a number.
        static string ErrorIdOf(DefenderException exception)
        {
            string name = exception.StatusName;
            if (name == "UNKNOWN") return ((int)exception.Status).ToString(CultureInfo.InvariantCulture);
            StringBuilder id = new StringBuilder(name.Length);
            foreach (string word in name.Split('_'))
            {
                if (word.Length == 0) continue;
                id.Append(char.ToUpperInvariant(word[0])).Append(word.Substring(1).ToLowerInvariant());
            }
            return id.ToString();
        }

        static ErrorCategory CategoryOf(DefenderStatus status)
        {
            switch (status)
            {
                case DefenderStatus.InvalidArgument: return ErrorCategory.InvalidArgument;
                case DefenderStatus.NotReady: return ErrorCategory.ResourceUnavailable;
                case DefenderStatus.NotFound: return ErrorCategory.ObjectNotFound;
                case DefenderStatus.Unauthorized: return ErrorCategory.AuthenticationError;
                case DefenderStatus.Forbidden: return ErrorCategory.PermissionDenied;
                case DefenderStatus.RateLimited: return ErrorCategory.LimitsExceeded;
                case DefenderStatus.Http: return ErrorCategory.InvalidResult;
                case DefenderStatus.Network: return ErrorCategory.ConnectionError;
                case DefenderStatus.Timeout: return ErrorCategory.OperationTimeout;
                case DefenderStatus.Io: return ErrorCategory.WriteError;
                case DefenderStatus.Integrity: return ErrorCategory.InvalidData;
                case DefenderStatus.Cancelled: return ErrorCategory.OperationStopped;
                case DefenderStatus.ActionFailed: return ErrorCategory.InvalidResult;
                case DefenderStatus.Protocol: return ErrorCategory.ProtocolError;
                case DefenderStatus.Exists: return ErrorCategory.ResourceExists;
                case DefenderStatus.UnknownOption: return ErrorCategory.InvalidArgument;
                default: return ErrorCategory.NotSpecified;
            }
        }
    }
}
