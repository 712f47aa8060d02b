// What the DefenderPackage cmdlets share beyond the binding in Defender.cs: the connection a
// command uses (-Connection, else the runspace's), a command's own clone of its client (its
// options, its cancellation), the library's log lines and phases written to the command's
// streams and progress bars, Ctrl+C turned into a cancellation, and failures turned into error
// records that name the action and its device.
//
// Conventions for every command over the API (the Live Response commands follow them too):
// derive from DefenderApiCmdlet (it brings -Connection); take devices and actions from the
// pipeline through one -InputObject parameter classified by PipelineInput; make every call through
// the command's CommandScope with a DefenderTarget, so that progress, errors and results name the
// device; return the service's objects typed (DefenderPackage.*) with a view in
// DefenderPackage.Format.ps1xml that keeps the device and the id at 80 columns.
//
// Native callbacks arrive on the pipeline thread (the library calls them on the thread that made
// the call, and DownloadPackages relays them to it), so writing to the command from them is
// safe. StopProcessing, which the engine calls on another thread, only cancels.

using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Threading;

namespace Defender.PowerShell
{
    /// <summary>
    /// The base of the module's cmdlets: a scope for the command's calls, and Ctrl+C
    /// (StopProcessing) cancelling the call in flight.
    /// </summary>
    public abstract class DefenderCmdlet : PSCmdlet, IDisposable
    {
        readonly object scopeLock = new object();
        CommandScope scope;
        bool stopping;

        /// <summary>The command's scope once opened, or null.</summary>
        internal CommandScope OpenedScope
        {
            get { return scope; }
        }

        /// <summary>
        /// Options of the library for this command's calls only (overwrite, wait_timeout_ms, ...);
        /// the connection's client and other commands (a nested command in the pipeline) keep theirs.
        /// </summary>
        internal virtual IDictionary<string, string> CallOptions
        {
            get { return null; }
        }

        /// <summary>
        /// A message of the library in this command's words: an option it sets through a parameter
        /// is named as that parameter (-Timeout, not wait_timeout_ms).
        /// </summary>
        internal virtual string Reword(string message)
        {
            return message;
        }

        /// <summary>
        /// What to do about a failure of the library with <paramref name="status"/> in this
        /// command, where it differs from the module's advice for the status; null: the module's.
        /// </summary>
        internal virtual string RecommendedAction(DefenderStatus status)
        {
            return null;
        }

        /// <summary>Opens the command's scope on a clone of <paramref name="client"/>.</summary>
        internal CommandScope Open(DefenderClient client)
        {
            CommandScope opened;
            try
            {
                opened = new CommandScope(client, this, CallOptions);
            }
            catch (DefenderException e)
            {
                // An option of the command's own that the library refuses (-FileNamePattern).
                ThrowTerminatingError(DefenderErrors.ToErrorRecord(new DefenderException(e.Status, Reword(e.Message)), null));
                throw;
            }
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

        /// <summary>Whether an error this command writes stops it (-ErrorAction Stop, or $ErrorActionPreference).</summary>
        internal bool ErrorsStop
        {
            get
            {
                object given;
                if (MyInvocation.BoundParameters.TryGetValue("ErrorAction", out given))
                    return given != null && given.ToString() == ActionPreference.Stop.ToString();
                object preference = GetVariableValue("ErrorActionPreference");
                return preference != null && preference.ToString() == ActionPreference.Stop.ToString();
            }
        }

        /// <summary>
        /// A selection that matched nothing: a warning (a runbook's log shows it), or, when
        /// <paramref name="stopsWithErrors"/> and errors stop the command (-ErrorAction Stop,
        /// $ErrorActionPreference), a Defender.NoMatch error, so that a script does not go on
        /// having done nothing.
        /// </summary>
        internal void NothingMatched(string message, object target, bool stopsWithErrors)
        {
            if (stopsWithErrors && ErrorsStop)
                WriteError(DefenderErrors.ModuleError("NoMatch", DefenderStatus.NotFound, message, ErrorCategory.ObjectNotFound, target,
                    "Check the selection: Tab completes tags, groups and platforms from the tenant; wildcards (* ?) widen it."));
            else
                WriteWarning(message);
        }
    }

    /// <summary>
    /// The base of the cmdlets that call the API: -Connection, else the runspace's connection.
    /// </summary>
    public abstract class DefenderApiCmdlet : DefenderCmdlet
    {
        /// <summary>
        /// The connection to use (Connect-DefenderApi -PassThru, Get-DefenderConnection); by
        /// default this runspace's, else the one connection of this process's runspaces.
        /// </summary>
        [Parameter]
        [ValidateNotNull]
        public DefenderConnection Connection { get; set; }

        /// <summary>
        /// The command's scope: opened at its first use, on a clone of the connection's client with
        /// <see cref="DefenderCmdlet.CallOptions"/> set on it. Terminating error Defender.NotConnected
        /// when there is no connection to use.
        /// </summary>
        internal CommandScope Scope
        {
            get
            {
                CommandScope opened = OpenedScope;
                if (opened != null) return opened;
                DefenderConnection connection = Connection ?? FindConnection();
                DefenderClient client;
                try
                {
                    client = connection.Client;
                }
                catch (DefenderException e)
                {
                    ThrowTerminatingError(DefenderErrors.ModuleError("NotConnected", e.Status, e.Message, ErrorCategory.ConnectionError,
                        connection, "Run Connect-DefenderApi, or pass a connection that is still open with -Connection."));
                    throw;
                }
                return Open(client);
            }
        }

        DefenderConnection FindConnection()
        {
            Runspace runspace = Runspace.DefaultRunspace;
            bool borrowed = false;
            int others = 0;
            DefenderConnection found = runspace == null ? null : Connections.Find(runspace, out borrowed, out others);
            if (found != null)
            {
                if (borrowed) WriteVerbose("This runspace has no connection of its own: using that of another runspace of this process, " + found + ".");
                return found;
            }
            const string passIt = "ForEach-Object -Parallel and Start-ThreadJob run in runspaces of their own: " +
                "$connection = Get-DefenderConnection, then -Connection $using:connection inside.";
            string message = others == 0
                ? "Not connected to the Defender for Endpoint API: run Connect-DefenderApi first, or pass a connection with -Connection (" + passIt + ")"
                : "Not connected in this runspace, and " + Connections.Count(others) + " of other runspaces of this process could be meant: " +
                  "pass the one to use with -Connection (" + passIt + ")";
            ThrowTerminatingError(DefenderErrors.ModuleError("NotConnected", DefenderStatus.InvalidArgument, message,
                ErrorCategory.ConnectionError, null, "Run Connect-DefenderApi, or pass -Connection."));
            return null;
        }

        /// <summary>
        /// What a pipeline object (or an -ActionId, -Id) is; null, with a non-terminating
        /// Defender.InvalidArgument error about it, for one that names nothing.
        /// </summary>
        internal DefenderTarget Classify(object input, InputKind strings)
        {
            string problem;
            DefenderTarget target = PipelineInput.Classify(input, strings, out problem);
            if (target == null)
                WriteError(DefenderErrors.ModuleError("InvalidArgument", DefenderStatus.InvalidArgument,
                    "Cannot tell which device or machine action this is: " + problem + ".", ErrorCategory.InvalidArgument, input, null));
            return target;
        }
    }

    /// <summary>
    /// One command's calls, from its creation to Dispose: a clone of the connection's client with
    /// the command's own options, whose failures are the command's non-terminating errors (naming
    /// the action and its device), whose log lines go to the command's Verbose, Warning and Debug
    /// streams and whose phases to its progress bars, and which <see cref="Stop"/> (Ctrl+C) cancels.
    /// </summary>
    sealed partial class CommandScope : IDisposable
    {
        readonly DefenderClient client;
        readonly DefenderCmdlet command;
        readonly CancellationTokenSource stop = new CancellationTokenSource();
        // The bars the phases of the call in flight go to.
        PackageProgress bars;

        internal CommandScope(DefenderClient connectionClient, DefenderCmdlet command, IDictionary<string, string> options)
        {
            this.command = command;
            client = connectionClient.Clone();
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
        // error about its target (and return null), so that the next pipeline item goes on.

        /// <summary>
        /// Signs in now (when the client holds no token) and tells <paramref name="connection"/>
        /// what it is connected to; a failure is thrown (Connect-DefenderApi makes it terminating).
        /// </summary>
        internal void SignIn(DefenderConnection connection)
        {
            connection.Refresh(client.GetConnectionInfo(stop.Token));
        }

        internal PSObject GetMachineAction(DefenderTarget action)
        {
            return ToMachineAction(WithBar("Looking up {0}", action,
                delegate { return client.GetMachineAction(action.ActionId, stop.Token); }));
        }

        internal PSObject WaitForAction(DefenderTarget action)
        {
            return ToMachineAction(WithBar("Waiting for {0}", action,
                delegate { return client.WaitForAction(action.ActionId, stop.Token); }));
        }

        internal PSObject CollectInvestigationPackage(DefenderTarget device, string comment)
        {
            return ToMachineAction(WithBar("Starting a collection on {0}", device,
                delegate { return client.CollectInvestigationPackage(device.MachineId, comment, stop.Token); }));
        }

        /// <summary>A device by its id, else its computer name (see DefenderClient.GetMachine).</summary>
        internal PSObject GetMachine(DefenderTarget device)
        {
            Machine machine = WithBar("Looking up {0}", device,
                delegate { return client.GetMachine(device.MachineId ?? device.ComputerDnsName, stop.Token); });
            return machine == null ? null : ConvertJson(new[] { machine.Json }, PipelineInput.MachineType)[0];
        }

        /// <summary>The devices <paramref name="filter"/> selects (null: all); null when the call failed.</summary>
        internal IList<PSObject> ListMachines(string filter)
        {
            return ToObjects(WithBar("Listing devices: {0}", filter ?? AllItems,
                delegate { return client.ListMachines(filter, 0, stop.Token); }), delegate(Machine machine) { return machine.Json; },
                PipelineInput.MachineType);
        }

        /// <summary>The machine actions <paramref name="filter"/> selects (null: all); null when the call failed (an error about <paramref name="about"/>).</summary>
        internal IList<PSObject> ListMachineActions(string filter, object about)
        {
            return ToObjects(WithBar("Listing machine actions: {0}", filter ?? AllItems,
                delegate { return client.ListMachineActions(filter, 0, stop.Token); }, about), delegate(MachineAction action) { return action.Json; },
                PipelineInput.MachineActionType);
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

        internal PSObject CancelMachineAction(DefenderTarget action, string comment)
        {
            return ToMachineAction(WithBar("Cancelling {0}", action,
                delegate { return client.CancelMachineAction(action.ActionId, comment, stop.Token); }));
        }

        internal PSObject GetPackageUri(DefenderTarget action)
        {
            string uri = WithBar("Getting the download link of {0}", action,
                delegate { return client.GetPackageUri(action.ActionId, stop.Token); });
            if (uri == null) return null;
            PSObject link = new PSObject();
            link.TypeNames.Insert(0, PipelineInput.PackageUriType);
            link.Properties.Add(new PSNoteProperty("ActionId", action.ActionId));
            link.Properties.Add(new PSNoteProperty("MachineId", action.MachineId));
            link.Properties.Add(new PSNoteProperty("ComputerDnsName", action.ComputerDnsName));
            link.Properties.Add(new PSNoteProperty("Uri", uri));
            return link;
        }

        /// <summary>
        /// <paramref name="action"/> with its device, looked up; null when the look-up failed (an
        /// error was written: Defender.NotFound for an action that does not exist).
        /// </summary>
        internal DefenderTarget WithDevice(DefenderTarget action)
        {
            PSObject found = GetMachineAction(action);
            return found == null ? null : action.WithDeviceOf(found, false);
        }

        /// <summary>
        /// The device of <paramref name="target"/> (an action or a device) with its id: as known,
        /// else looked up (the action, or the device by name); null when that failed (an error was written).
        /// </summary>
        internal DefenderTarget DeviceOf(DefenderTarget target)
        {
            if (target.MachineId != null) return new DefenderTarget(null, target.MachineId, target.ComputerDnsName);
            if (target.IsAction)
            {
                PSObject action = GetMachineAction(target);
                if (action == null) return null;
                DefenderTarget device = new DefenderTarget(null, null, null).WithDeviceOf(action, false);
                return device.MachineId == null ? null : device;
            }
            PSObject machine = GetMachine(target);
            return machine == null ? null : new DefenderTarget(null, null, null).WithDeviceOf(machine, true);
        }

        /// <summary>
        /// The newest investigation package collection on <paramref name="device"/>; null, with a
        /// Defender.NotFound error saying so, when it has none.
        /// </summary>
        internal DefenderTarget LatestCollection(DefenderTarget device)
        {
            DefenderTarget known = DeviceOf(device);
            if (known == null) return null;
            string filter = "machineId eq " + DefenderClient.ODataString(known.MachineId) + " and type eq 'CollectInvestigationPackage'";
            IList<PSObject> collections = ListMachineActions(filter, known);
            if (collections == null) return null;
            PSObject newest = null;
            string newestTime = null;
            foreach (PSObject collection in collections)
            {
                // ISO 8601 times in one format sort as text.
                string created = DefenderTarget.Text(collection, "creationDateTimeUtc") ?? "";
                if (newest == null || string.CompareOrdinal(created, newestTime) > 0)
                {
                    newest = collection;
                    newestTime = created;
                }
            }
            if (newest == null)
            {
                command.WriteError(DefenderErrors.ModuleError("NotFound", DefenderStatus.NotFound,
                    "Device " + known.Device + " has no investigation package collection.", ErrorCategory.ObjectNotFound, known,
                    "Start one with Start-DefenderInvestigationPackageCollection, then wait for it or save it with -Wait."));
                return null;
            }
            return known.ForAction(DefenderTarget.Text(newest, "id")).WithDeviceOf(newest, false);
        }

        /// <summary>
        /// Downloads one package to <paramref name="destination"/> (a file, or a folder where the
        /// option file_name_pattern names it) with a progress bar; with <paramref name="passThru"/>
        /// writes it to the command's output.
        /// </summary>
        internal void SavePackage(DefenderTarget action, string destination, bool passThru)
        {
            bars = new PackageProgress(command, new[] { action.ToString() }, SavingActivity);
            try
            {
                DownloadedPackage saved = Run(action, delegate
                {
                    return client.DownloadPackage(action.ActionId, destination, null, stop.Token);
                });
                bars.Finish(0);
                if (saved != null && passThru)
                    command.WriteObject(ToInvestigationPackage(action.WithDevice(saved.MachineId, saved.ComputerDnsName),
                        saved.Path, saved.Bytes, saved.ResumedFrom, saved.Sha256, saved.Elapsed));
            }
            finally
            {
                bars.Close();
                bars = null;
            }
        }

        /// <summary>
        /// Downloads the packages of <paramref name="actions"/> into <paramref name="folder"/>,
        /// several at once, with a progress bar per package under one for the whole batch. Each
        /// package is reported as soon as it is finished: with <paramref name="passThru"/> written
        /// to the command's output when saved, and as a non-terminating error about it when not.
        /// An error the command's -ErrorAction turns into a stop (Stop) cancels the packages still
        /// running.
        /// </summary>
        internal void SavePackages(IList<DefenderTarget> actions, string folder, bool passThru)
        {
            List<string> ids = new List<string>();
            List<string> shown = new List<string>();
            foreach (DefenderTarget action in actions)
            {
                ids.Add(action.ActionId);
                shown.Add(action.ToString());
            }
            bars = new PackageProgress(command, shown, SavingActivity);
            try
            {
                Run(folder, delegate
                {
                    return client.DownloadPackages(ids, folder, null, delegate(int index, PackageDownloadResult item)
                    {
                        bars.Finish(index);
                        DefenderTarget action = actions[index].WithDevice(item.MachineId, item.ComputerDnsName);
                        if (!item.Succeeded)
                            WriteFailure(new DefenderException(item.Status, item.Message), action);
                        else if (passThru)
                            command.WriteObject(ToInvestigationPackage(action, item.Path, item.Bytes, item.ResumedFrom, item.Sha256, item.Elapsed));
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

        const string SavingActivity = "Saving the investigation package of {0}";

        // A call about one target, whose phases (a wait, a queue, a retry) show in a bar of its
        // own (activity: {0} is the target; awaited: what a wait is for, the collection by
        // default); a failure is an error about it.
        T WithBar<T>(string activity, DefenderTarget target, Func<T> call, string awaited = null) where T : class
        {
            return WithBar(activity, target.ToString(), call, target, awaited);
        }

        T WithBar<T>(string activity, string shown, Func<T> call, object errorTarget = null, string awaited = null) where T : class
        {
            bars = new PackageProgress(command, new[] { shown }, activity);
            if (awaited != null) bars.Awaited = awaited;
            try
            {
                return Run(errorTarget ?? shown, call);
            }
            finally
            {
                bars.Close();
                bars = null;
            }
        }

        T Run<T>(object target, Func<T> call) where T : class
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
            string message = command.Reword(failure.Message);
            DefenderTarget about = target as DefenderTarget;
            // The library names the action; the device is the module's to add.
            if (about != null && about.KnowsDevice && about.IsAction && message.IndexOf(about.ComputerDnsName ?? about.MachineId, StringComparison.OrdinalIgnoreCase) < 0)
                message = about.Device + ": " + message;
            command.WriteError(DefenderErrors.ToErrorRecord(new DefenderException(failure.Status, message), target,
                command.RecommendedAction(failure.Status)));
        }

        void ReportPhase(PhaseEvent phase)
        {
            if (bars != null) bars.Report(phase);
        }

        // A MachineAction as the service sent it (every field, the API's names), as
        // ConvertFrom-Json makes it, typed for the module's format view and for pipeline binding.
        PSObject ToMachineAction(MachineAction action)
        {
            if (action == null) return null;
            return ConvertJson(new[] { action.Json }, PipelineInput.MachineActionType)[0];
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

        // What -PassThru returns for a saved package: the action and its device as far as known.
        // ResumedFrom: the bytes an interrupted download to the same path left and this one kept
        // (0 when it downloaded from byte 0).
        static PSObject ToInvestigationPackage(DefenderTarget action, string path, long size, long resumedFrom, string sha256, TimeSpan elapsed)
        {
            PSObject package = new PSObject();
            package.TypeNames.Insert(0, PipelineInput.InvestigationPackageType);
            package.Properties.Add(new PSNoteProperty("ActionId", action.ActionId));
            package.Properties.Add(new PSNoteProperty("MachineId", action.MachineId));
            package.Properties.Add(new PSNoteProperty("ComputerDnsName", action.ComputerDnsName));
            package.Properties.Add(new PSNoteProperty("Path", path));
            package.Properties.Add(new PSNoteProperty("Size", size));
            package.Properties.Add(new PSNoteProperty("ResumedFrom", resumedFrom));
            package.Properties.Add(new PSNoteProperty("Sha256", sha256));
            package.Properties.Add(new PSNoteProperty("Elapsed", elapsed));
            return package;
        }

        void WriteLog(DefenderLogLevel level, string message)
        {
            switch (level)
            {
                case DefenderLogLevel.Warn:
                    command.WriteWarning(command.Reword(message));
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
}
