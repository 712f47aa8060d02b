// What the DefenderPackage module needs beyond the binding in Defender.cs: the library's log
// lines and progress written to a command's streams, Ctrl+C turned into a cancellation, and
// failures turned into ErrorRecords. Compiled with Defender.cs into DefenderPackage.dll.
//
// Native callbacks arrive on the pipeline thread (the library calls them on the thread that made
// the call, and DownloadPackages relays them to it), so writing to the command from them is
// safe. Nothing here ever runs a script block on another thread: the watchdog timer only reads
// the command's Stopping flag and cancels.

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;
using System.Threading;

namespace Defender.PowerShell
{
    /// <summary>
    /// One command's use of the client, from its creation to Dispose: calls whose failures are
    /// the command's non-terminating errors, the client's log lines on the command's Verbose,
    /// Warning and Debug streams, and stopping the pipeline (Ctrl+C) cancelling the native call
    /// in flight.
    /// </summary>
    /// <remarks>
    /// A script function cannot override StopProcessing, and the engine cannot interrupt a
    /// blocking native call, so a timer polls the command's Stopping flag while the scope lives.
    /// </remarks>
    public sealed class CommandScope : IDisposable
    {
        const int WatchdogPeriodMilliseconds = 100;
        const string InvestigationPackageType = "DefenderPackage.InvestigationPackage";

        readonly DefenderClient client;
        readonly PSCmdlet command;
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        readonly Timer watchdog;

        public CommandScope(DefenderClient client, PSCmdlet command)
        {
            if (client == null) throw new ArgumentNullException("client");
            if (command == null) throw new ArgumentNullException("command");
            this.client = client;
            this.command = command;
            client.LogHandler = WriteLog;
            watchdog = new Timer(CheckStopping, null, WatchdogPeriodMilliseconds, WatchdogPeriodMilliseconds);
        }

        // The calls below write a failure of the library to the command as a non-terminating
        // error about the id (and return null), so that the next pipeline item goes on. They
        // catch it here, in C#: an exception that passes through script code is also recorded
        // in the command's -ErrorVariable, once per script frame.

        /// <summary>Signs in now; a failure is thrown (Connect-DefenderApi makes it terminating).</summary>
        public void SignIn()
        {
            client.SignIn(stop.Token);
        }

        public MachineAction GetMachineAction(string actionId)
        {
            return Run(actionId, delegate { return client.GetMachineAction(actionId, stop.Token); });
        }

        public MachineAction WaitForAction(string actionId)
        {
            return Run(actionId, delegate { return client.WaitForAction(actionId, stop.Token); });
        }

        public MachineAction CollectInvestigationPackage(string machineId, string comment)
        {
            return Run(machineId, delegate { return client.CollectInvestigationPackage(machineId, comment, stop.Token); });
        }

        public string GetPackageUri(string actionId)
        {
            return Run(actionId, delegate { return client.GetPackageUri(actionId, stop.Token); });
        }

        /// <summary>
        /// Downloads one package to <paramref name="destination"/> (a file, or a folder that gets
        /// &lt;action id&gt;.zip) with a progress bar; with <paramref name="passThru"/> writes it
        /// to the command's output.
        /// </summary>
        public void SavePackage(string actionId, string destination, bool passThru)
        {
            PackageProgress bars = new PackageProgress(command, new[] { actionId });
            try
            {
                DownloadedPackage saved = Run(actionId, delegate
                {
                    return client.DownloadPackage(actionId, destination,
                        delegate(long done, long total) { bars.Report(0, done, total); }, stop.Token);
                });
                bars.Finish(0);
                if (saved != null && passThru)
                    command.WriteObject(ToInvestigationPackage(saved.ActionId, saved.Path, saved.Bytes, saved.Sha256, saved.Elapsed));
            }
            finally
            {
                bars.Close();
            }
        }

        /// <summary>
        /// Downloads the packages of <paramref name="actionIds"/> into <paramref name="folder"/>,
        /// several at once, with a progress bar per package running under one for the whole
        /// batch. Each package is reported as soon as it is finished: with
        /// <paramref name="passThru"/> written to the command's output when saved, and as a
        /// non-terminating error about its action id when not. An error the command's
        /// -ErrorAction turns into a stop (Stop) cancels the packages still running.
        /// </summary>
        public void SavePackages(IList<string> actionIds, string folder, bool passThru)
        {
            PackageProgress bars = new PackageProgress(command, actionIds);
            try
            {
                Run(folder, delegate
                {
                    return client.DownloadPackages(actionIds, folder, bars.Report, delegate(int index, PackageDownloadResult item)
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
            }
        }

        public void Dispose()
        {
            watchdog.Dispose();
            client.LogHandler = null;
            stop.Dispose();
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

        void CheckStopping(object state)
        {
            try
            {
                if (!command.Stopping) return;
                stop.Cancel();
                // Again on every tick: a cancel that lands just before a native call starts would
                // otherwise be missed by it.
                client.Cancel();
            }
            catch (Exception)
            {
                // An exception on a timer thread ends the process; the only one expected here is
                // ObjectDisposedException when the command finished meanwhile.
            }
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
    /// The progress bars of saving packages: one per package while it downloads, and, for
    /// several, one for the whole ("n of N packages") that the others are children of.
    /// </summary>
    sealed class PackageProgress
    {
        const int OverallActivityId = 1;

        readonly PSCmdlet command;
        readonly IList<string> actionIds;
        readonly bool[] shown;
        readonly string overallActivity;
        int finished;

        internal PackageProgress(PSCmdlet command, IList<string> actionIds)
        {
            this.command = command;
            this.actionIds = actionIds;
            shown = new bool[actionIds.Count];
            overallActivity = string.Format(CultureInfo.CurrentCulture, "Saving {0} investigation packages", actionIds.Count);
            if (Several) WriteOverall(ProgressRecordType.Processing);
        }

        // One package needs no bar above its own.
        bool Several
        {
            get { return actionIds.Count > 1; }
        }

        /// <summary>Item <paramref name="index"/> has <paramref name="done"/> of <paramref name="total"/> bytes (0: unknown).</summary>
        internal void Report(int index, long done, long total)
        {
            // A new record each time: a host may keep the records it was given.
            ProgressRecord progress = ItemRecord(index, DescribeBytes(done, total));
            if (total > 0) progress.PercentComplete = (int)Math.Min(100, done * 100 / total);
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
                "Saving the investigation package of machine action " + actionIds[index], status);
            if (Several) record.ParentActivityId = OverallActivityId;
            return record;
        }

        void WriteOverall(ProgressRecordType type)
        {
            string status = string.Format(CultureInfo.CurrentCulture, "{0} of {1} packages", finished, actionIds.Count);
            ProgressRecord overall = new ProgressRecord(OverallActivityId, overallActivity, status);
            overall.PercentComplete = finished * 100 / actionIds.Count;
            overall.RecordType = type;
            command.WriteProgress(overall);
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
        /// An error record with ErrorId Defender.&lt;Status&gt; (e.g. Defender.NotReady), a fitting
        /// category, the library's message, and <paramref name="target"/> (the action or machine id).
        /// </summary>
        public static ErrorRecord ToErrorRecord(DefenderException exception, object target)
        {
            if (exception == null) throw new ArgumentNullException("exception");
            return new ErrorRecord(exception, "Defender." + exception.Status, CategoryOf(exception.Status), target);
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
                default: return ErrorCategory.NotSpecified;
            }
        }
    }
}
