// Live Response through a command's scope: sessions on devices, files and script transcripts
// fetched from them, and the tenant's library of scripts and files. The calls are the binding's
// (the library starts sessions, waits within the rate and session limits, downloads from Azure
// Blob storage); this adds the bars, the typed results that name the device, and the error records.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Management.Automation;

namespace Defender.PowerShell
{
    sealed partial class CommandScope
    {
        /// <summary>
        /// Starts a live response session with <paramref name="commands"/> on <paramref name="device"/>
        /// (waiting for it to end when the command set wait_timeout_ms): the MachineAction, or null
        /// when the call failed (an error was written).
        /// </summary>
        internal PSObject RunLiveResponse(DefenderTarget device, IList<LiveResponseCommand> commands, string comment)
        {
            return ToMachineAction(WithBar("Running live response commands on {0}", device,
                delegate { return client.RunLiveResponse(DeviceKey(device), commands, comment, stop.Token); }, Session));
        }

        /// <summary>
        /// Runs a script of the library on <paramref name="device"/>, waits for it, downloads its
        /// transcript and returns it as a DefenderPackage.LiveResponseScriptResult; null when a step
        /// failed (an error about the device, or the session, was written).
        /// </summary>
        internal PSObject RunScript(DefenderTarget device, string scriptName, string arguments, string comment)
        {
            bars = new PackageProgress(command, new[] { device.ToString() }, "Running " + scriptName + " on {0}") { Awaited = Session };
            string folder = Path.Combine(Path.GetTempPath(), "defender-script-" + Guid.NewGuid().ToString("N"));
            try
            {
                MachineAction action = Run(device, delegate
                {
                    return client.RunLiveResponse(DeviceKey(device), new[] { LiveResponseCommand.RunScript(scriptName, arguments) },
                        comment, stop.Token);
                });
                if (action == null) return null;
                // The service's name of the device, rather than the name it was given by.
                DefenderTarget session = new DefenderTarget(action.Id, action.MachineId ?? device.MachineId,
                    action.ComputerDnsName ?? device.ComputerDnsName);
                Directory.CreateDirectory(folder);
                LiveResponseResult result = Run(session, delegate
                {
                    return client.DownloadLiveResponseResult(action.Id, 0, folder, null, stop.Token);
                });
                if (result == null) return null;
                ScriptTranscript transcript;
                try
                {
                    transcript = result.ReadTranscript();
                }
                catch (DefenderException e)
                {
                    WriteFailure(e, session);
                    return null;
                }
                PSObject output = new PSObject();
                output.TypeNames.Insert(0, PipelineInput.LiveResponseScriptResultType);
                output.Properties.Add(new PSNoteProperty("ComputerDnsName", session.ComputerDnsName));
                output.Properties.Add(new PSNoteProperty("MachineId", session.MachineId));
                output.Properties.Add(new PSNoteProperty("ActionId", session.ActionId));
                output.Properties.Add(new PSNoteProperty("ScriptName", transcript.ScriptName ?? scriptName));
                output.Properties.Add(new PSNoteProperty("ExitCode", transcript.ExitCode));
                output.Properties.Add(new PSNoteProperty("Output", transcript.Output));
                output.Properties.Add(new PSNoteProperty("Errors", transcript.Errors));
                return output;
            }
            finally
            {
                bars.Close();
                bars = null;
                DeleteQuietly(folder);
            }
        }

        /// <summary>
        /// Fetches the files of <paramref name="requests"/> (a device, a path on it) into
        /// <paramref name="folder"/>, several at once, with a bar per file under one for the whole.
        /// Each file is reported as soon as it is finished: with <paramref name="passThru"/> written
        /// to the command's output when saved, and as a non-terminating error about its device when not.
        /// </summary>
        internal void SaveLiveResponseFiles(IList<KeyValuePair<DefenderTarget, string>> requests, string folder, bool passThru)
        {
            List<FileRequest> native = new List<FileRequest>();
            List<string> shown = new List<string>();
            foreach (KeyValuePair<DefenderTarget, string> request in requests)
            {
                native.Add(new FileRequest(DeviceKey(request.Key), request.Value));
                shown.Add("'" + request.Value + "' from " + request.Key);
            }
            bars = new PackageProgress(command, shown, "Fetching {0}", "Fetching {0} files with live response", "files") { Awaited = Session };
            try
            {
                Run(folder, delegate
                {
                    return client.GetFiles(native, folder, null, delegate(int index, FileRetrievalResult item)
                    {
                        bars.Finish(index);
                        DefenderTarget device = requests[index].Key;
                        DefenderTarget about = new DefenderTarget(item.ActionId, item.MachineId ?? device.MachineId,
                            item.ComputerDnsName ?? device.ComputerDnsName);
                        if (!item.Succeeded)
                            WriteFailure(new DefenderException(item.Status, "'" + requests[index].Value + "': " + item.Message), about);
                        else if (passThru)
                            command.WriteObject(ToLiveResponseFile(about, item.RemotePath ?? requests[index].Value, 0, "GetFile", item.Path,
                                item.Bytes, item.ResumedFrom, item.Sha256, item.ContentEncoding, item.Elapsed));
                    }, stop.Token);
                });
            }
            finally
            {
                bars.Close();
                bars = null;
            }
        }

        /// <summary>
        /// Downloads command <paramref name="index"/>'s result of live response session
        /// <paramref name="session"/> into <paramref name="folder"/> with a progress bar: a
        /// DefenderPackage.LiveResponseFile, or null when it failed (an error about the session was written).
        /// </summary>
        internal PSObject SaveLiveResponseResult(DefenderTarget session, int index, string folder, string remotePath)
        {
            string activity = "Saving the result of command " + index.ToString(CultureInfo.InvariantCulture) + " of {0}";
            LiveResponseResult saved = WithBar(activity, session, delegate
            {
                return client.DownloadLiveResponseResult(session.ActionId, index, folder, null, stop.Token);
            }, Session);
            return saved == null ? null
                : ToLiveResponseFile(session, remotePath, index, saved.CommandType, saved.Path, saved.Bytes, saved.ResumedFrom, saved.Sha256, saved.ContentEncoding, saved.Elapsed);
        }

        /// <summary>The files of the tenant's live response library; null when the call failed.</summary>
        internal IList<PSObject> GetLibraryFiles()
        {
            return ToObjects(WithBar("Listing {0}", LibraryName, delegate { return client.GetLibraryFiles(stop.Token); }),
                delegate(LibraryFile file) { return file.Json; }, PipelineInput.LibraryFileType);
        }

        /// <summary>Puts a file in the tenant's library: the library file, or null when the call failed.</summary>
        internal PSObject UploadLibraryFile(string path, string description, string parametersDescription, bool hasParameters,
            bool overrideIfExists)
        {
            string name = Path.GetFileName(path);
            LibraryFile file = WithBar("Publishing {0} to the live response library", name, delegate
            {
                return client.UploadLibraryFile(path, description, parametersDescription, hasParameters, overrideIfExists, stop.Token);
            });
            return file == null ? null : ConvertJson(new[] { file.Json }, PipelineInput.LibraryFileType)[0];
        }

        /// <summary>Removes a file from the tenant's library; false when the call failed.</summary>
        internal bool RemoveLibraryFile(string fileName)
        {
            return WithBar("Removing {0} from the live response library", fileName, delegate
            {
                client.RemoveLibraryFile(fileName, stop.Token);
                return fileName;
            }) != null;
        }

        const string LibraryName = "the live response library";

        // What a live response call's wait is for, in its bar.
        const string Session = "the live response session";

        // What the library takes for a device: its id where known, else its computer name.
        static string DeviceKey(DefenderTarget device)
        {
            return device.MachineId ?? device.ComputerDnsName;
        }

        // A saved result: the session and its device, the command (its index, type, the path on the
        // device of a GetFile), and the file (ResumedFrom: the bytes an interrupted download to the
        // same path left and this one kept, as for packages).
        static PSObject ToLiveResponseFile(DefenderTarget about, string remotePath, int index, string commandType, string path, long size,
            long resumedFrom, string sha256, string contentEncoding, TimeSpan elapsed)
        {
            PSObject file = new PSObject();
            file.TypeNames.Insert(0, PipelineInput.LiveResponseFileType);
            file.Properties.Add(new PSNoteProperty("ComputerDnsName", about.ComputerDnsName));
            file.Properties.Add(new PSNoteProperty("MachineId", about.MachineId));
            file.Properties.Add(new PSNoteProperty("ActionId", about.ActionId));
            file.Properties.Add(new PSNoteProperty("Index", index));
            file.Properties.Add(new PSNoteProperty("CommandType", commandType));
            file.Properties.Add(new PSNoteProperty("RemotePath", remotePath));
            file.Properties.Add(new PSNoteProperty("Path", path));
            file.Properties.Add(new PSNoteProperty("Size", size));
            file.Properties.Add(new PSNoteProperty("ResumedFrom", resumedFrom));
            file.Properties.Add(new PSNoteProperty("Sha256", sha256));
            file.Properties.Add(new PSNoteProperty("ContentEncoding", contentEncoding));
            file.Properties.Add(new PSNoteProperty("Elapsed", elapsed));
            return file;
        }

        static void DeleteQuietly(string folder)
        {
            try
            {
                if (Directory.Exists(folder)) Directory.Delete(folder, true);
            }
            catch (IOException)
            {
                // A temporary folder left behind is no failure of the command.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    /// <summary>
    /// Live response commands as PowerShell users write them: the binding's LiveResponseCommand;
    /// a hashtable or object with Type and its parameters, either as Params (a hashtable of
    /// key = value, or the service's list of @{ key = ...; value = ... }) or as the other keys
    /// (@{ Type = 'GetFile'; Path = 'C:\x.log' }); or the service's JSON, one command or an array.
    /// </summary>
    static class LiveResponseCommands
    {
        /// <summary>The commands <paramref name="given"/> stand for; an ArgumentException says what is wrong with one.</summary>
        internal static List<LiveResponseCommand> From(IEnumerable<object> given)
        {
            List<LiveResponseCommand> commands = new List<LiveResponseCommand>();
            int position = 0;
            foreach (object item in given)
            {
                position++;
                object value = item is PSObject ? ((PSObject)item).BaseObject : item;
                LiveResponseCommand command = value as LiveResponseCommand;
                if (command != null)
                {
                    commands.Add(command);
                    continue;
                }
                string text = value as string;
                if (text != null)
                {
                    commands.AddRange(FromJson(text, position));
                    continue;
                }
                commands.Add(FromEntries(Entries(item, value), position));
            }
            if (commands.Count == 0) throw new ArgumentException("No live response command was given.");
            return commands;
        }

        static List<LiveResponseCommand> FromJson(string text, int position)
        {
            string trimmed = text.Trim();
            try
            {
                if (trimmed.StartsWith("[", StringComparison.Ordinal)) return new List<LiveResponseCommand>(Json.Parse<LiveResponseCommand[]>(trimmed));
                if (trimmed.StartsWith("{", StringComparison.Ordinal)) return new List<LiveResponseCommand> { Json.Parse<LiveResponseCommand>(trimmed) };
            }
            catch (DefenderException e)
            {
                throw new ArgumentException("Command " + position + " is not the service's JSON of a live response command: " + e.Message);
            }
            throw new ArgumentException("Command " + position + " is the text " + PipelineInput.Quote(text) +
                ": give a command as @{ Type = 'GetFile'; Path = 'C:\\x.log' }, or as the service's JSON.");
        }

        // The keys and values of a hashtable, or the properties of an object (ConvertFrom-Json, [pscustomobject]).
        static List<KeyValuePair<string, object>> Entries(object item, object value)
        {
            List<KeyValuePair<string, object>> entries = new List<KeyValuePair<string, object>>();
            IDictionary dictionary = value as IDictionary;
            if (dictionary != null)
            {
                foreach (DictionaryEntry entry in dictionary)
                    entries.Add(new KeyValuePair<string, object>(Convert.ToString(entry.Key, CultureInfo.InvariantCulture), entry.Value));
                return entries;
            }
            foreach (PSPropertyInfo property in PSObject.AsPSObject(item).Properties)
                if (property.IsGettable && property.MemberType == PSMemberTypes.NoteProperty)
                    entries.Add(new KeyValuePair<string, object>(property.Name, property.Value));
            return entries;
        }

        static LiveResponseCommand FromEntries(List<KeyValuePair<string, object>> entries, int position)
        {
            string type = null;
            object parameters = null;
            List<KeyValuePair<string, object>> others = new List<KeyValuePair<string, object>>();
            foreach (KeyValuePair<string, object> entry in entries)
            {
                if (string.Equals(entry.Key, "type", StringComparison.OrdinalIgnoreCase)) type = Text(entry.Value);
                else if (string.Equals(entry.Key, "params", StringComparison.OrdinalIgnoreCase)) parameters = entry.Value;
                else others.Add(entry);
            }
            if (string.IsNullOrEmpty(type))
                throw new ArgumentException("Command " + position + " has no Type: give it as @{ Type = 'GetFile'; Path = 'C:\\x.log' } (GetFile, RunScript, PutFile, ...).");
            LiveResponseCommand command = new LiveResponseCommand(type);
            if (parameters != null)
            {
                object inner = parameters is PSObject ? ((PSObject)parameters).BaseObject : parameters;
                if (inner is IDictionary)
                {
                    foreach (KeyValuePair<string, object> entry in Entries(parameters, inner)) Add(command, entry.Key, entry.Value, position);
                }
                else
                {
                    // The service's form: a list of { key, value }.
                    foreach (object pair in LanguagePrimitives.GetEnumerable(inner) ?? new[] { parameters })
                    {
                        string key = null;
                        object pairValue = null;
                        object pairInner = pair is PSObject ? ((PSObject)pair).BaseObject : pair;
                        foreach (KeyValuePair<string, object> entry in Entries(pair, pairInner))
                        {
                            if (string.Equals(entry.Key, "key", StringComparison.OrdinalIgnoreCase)) key = Text(entry.Value);
                            else if (string.Equals(entry.Key, "value", StringComparison.OrdinalIgnoreCase)) pairValue = entry.Value;
                        }
                        if (key == null)
                            throw new ArgumentException("Command " + position + " (" + type + ") has a parameter without a key: Params takes @{ Path = '...' } or @(@{ key = 'Path'; value = '...' }).");
                        Add(command, key, pairValue, position);
                    }
                }
            }
            foreach (KeyValuePair<string, object> entry in others) Add(command, entry.Key, entry.Value, position);
            return command;
        }

        static void Add(LiveResponseCommand command, string key, object value, int position)
        {
            string text = Text(value);
            if (text == null)
                throw new ArgumentException("Command " + position + " (" + command.Type + ") has no value for its parameter " + key + ".");
            command.Add(key, text);
        }

        static string Text(object value)
        {
            object inner = value is PSObject ? ((PSObject)value).BaseObject : value;
            return inner == null ? null : Convert.ToString(inner, CultureInfo.InvariantCulture);
        }
    }
}
