// The C# binding of the defender native library (include/defender.h): P/Invoke declarations, a
// SafeHandle for the client, UTF-8 strings both ways, statuses turned into exceptions carrying
// the library's message.
//
// One file, namespace Defender: drop it into a C# program, or reference the Defender.Interop
// class library built from it (dotnet/Defender.Interop); the DefenderPackage PowerShell module
// compiles it into its own assembly (powershell/src). It targets netstandard2.0 (Windows
// PowerShell 5.1 on .NET Framework 4.7.2+, PowerShell 7, .NET 8+) and uses no API newer than
// that: .NET's NativeLibrary is reached by reflection where it exists. It must not depend on
// System.Management.Automation.
//
// What it covers: investigation packages (collect, wait, download, several at once), devices and
// machine actions, and Live Response (sessions of commands on a device, their results, files off
// many devices at once, the tenant's library of scripts and files).
//
// Threading: one DefenderClient may be used from many threads at once. Its callbacks (download
// progress, log lines, finished items) run on the thread that made the call, only while that
// call runs.

using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Globalization;
using System.IO;
using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace Defender
{
    /// <summary>
    /// The library's status codes (DefenderStatus in defender.h); the numbers are fixed, and a newer
    /// library may return a number without a member here (<see cref="DefenderException.StatusName"/>
    /// names it).
    /// </summary>
    public enum DefenderStatus
    {
        Ok = 0,
        InvalidArgument = 1,
        NotReady = 2,
        NotFound = 3,
        Unauthorized = 4,
        Forbidden = 5,
        RateLimited = 6,
        Http = 7,
        Network = 8,
        Timeout = 9,
        Io = 10,
        Integrity = 11,
        Cancelled = 12,
        ActionFailed = 13,
        Protocol = 14,
        Exists = 15,
        UnknownOption = 16,
        Internal = 99,
    }

    /// <summary>How important a log line is (DefenderLogLevel in defender.h).</summary>
    public enum DefenderLogLevel
    {
        Error = 1,
        Warn = 2,
        Info = 3,
        Debug = 4,
    }

    /// <summary>What an item of a call is doing (DefenderPhase in defender.h); the numbers are fixed.</summary>
    public enum DefenderPhase
    {
        /// <summary>The collection is not finished: Detail is its status, Elapsed the wait so far, Remaining the time to the next look.</summary>
        WaitingForCollection = 1,
        /// <summary>Queued for the API's rate limit: QueuePosition (1: next), Remaining about how long (null: until calls in flight are answered).</summary>
        QueuedForRateLimit = 2,
        /// <summary>A batch item whose package is ready waits for a download slot (max_concurrent_downloads).</summary>
        WaitingForDownloadSlot = 3,
        /// <summary>Bytes arriving: BytesDone, BytesTotal (0 while unknown), BytesPerSecond.</summary>
        Downloading = 4,
        /// <summary>The whole package is on disk and being checked.</summary>
        Verifying = 5,
        /// <summary>A request or transfer failed and is tried again after Remaining: Detail says what failed, Attempt counts the retries.</summary>
        Retrying = 6,
        /// <summary>
        /// A live response session could not start yet (25 sessions run in the tenant, or the device
        /// runs one): Detail says which, Remaining the pause before the next try.
        /// </summary>
        WaitingForSession = 7,
    }

    /// <summary>
    /// What an item of a call is doing (DefenderPhaseEvent in defender.h), for a progress bar.
    /// Fields that do not apply to its phase are 0 (Detail: empty).
    /// </summary>
    public sealed class PhaseEvent
    {
        internal PhaseEvent(ref NativeMethods.PhaseEventData data)
        {
            Phase = (DefenderPhase)data.Phase;
            Index = Utf8.Index(data.Index);
            Elapsed = TimeSpan.FromMilliseconds(data.ElapsedMilliseconds);
            if (data.RemainingMilliseconds > 0) Remaining = TimeSpan.FromMilliseconds(data.RemainingMilliseconds);
            BytesDone = (long)data.BytesDone;
            BytesTotal = (long)data.BytesTotal;
            BytesPerSecond = (long)data.BytesPerSecond;
            QueuePosition = (int)data.QueuePosition;
            Attempt = (int)data.Attempt;
            Detail = Utf8.FromNative(data.Detail) ?? "";
        }

        public DefenderPhase Phase { get; private set; }

        /// <summary>The item: its position in the ids of DownloadPackages or the requests of GetFiles; 0 for other calls.</summary>
        public int Index { get; private set; }

        /// <summary>How long the item has been in this phase.</summary>
        public TimeSpan Elapsed { get; private set; }

        /// <summary>About how long until the item moves on; null when unknown.</summary>
        public TimeSpan? Remaining { get; private set; }

        public long BytesDone { get; private set; }

        public long BytesTotal { get; private set; }

        public long BytesPerSecond { get; private set; }

        /// <summary>The place in the rate limit's queue, 1 being next.</summary>
        public int QueuePosition { get; private set; }

        /// <summary>The retries so far.</summary>
        public int Attempt { get; private set; }

        /// <summary>The collection's status (WaitingForCollection), what failed (Retrying) or why no session starts yet (WaitingForSession); never a secret.</summary>
        public string Detail { get; private set; }
    }

    /// <summary>A call that failed: the library's status and its message (never a secret).</summary>
    public class DefenderException : Exception
    {
        public DefenderException(DefenderStatus status, string message)
            : base(message)
        {
            Status = status;
        }

        public DefenderStatus Status { get; private set; }

        /// <summary>
        /// The library's name of <see cref="Status"/>, as the C API and the command line spell it
        /// ("NOT_FOUND", "UNKNOWN_OPTION"; "UNKNOWN" for a number the library does not have).
        /// </summary>
        public string StatusName { get { return DefenderClient.StatusName(Status); } }
    }

    /// <summary>Finds and loads the native library (defender.dll, libdefender.so, libdefender.dylib).</summary>
    /// <remarks>
    /// Call <see cref="Load"/> with the file's full path before the first call into the library
    /// when it is not where the runtime looks by itself (beside the program, or in
    /// runtimes/&lt;rid&gt;/native/ of a .NET application's dependencies).
    /// </remarks>
    public static class DefenderLibrary
    {
        internal const string Name = "defender";

        static readonly object loadLock = new object();
        static IntPtr loadedHandle;
        static string loadedPath;

        /// <summary>The library's file name on this operating system.</summary>
        public static string FileName
        {
            get
            {
                if (IsWindows) return Name + ".dll";
                return IsMacOS ? "lib" + Name + ".dylib" : "lib" + Name + ".so";
            }
        }

        /// <summary>The .NET runtime identifier of this process, e.g. win-x64, linux-arm64, osx-arm64.</summary>
        public static string RuntimeIdentifier
        {
            get
            {
                string os = IsWindows ? "win" : IsMacOS ? "osx" : "linux";
                return os + "-" + ProcessArchitecture;
            }
        }

        /// <summary>The path <see cref="Load"/> loaded the library from, or null.</summary>
        public static string LoadedPath
        {
            get { lock (loadLock) return loadedPath; }
        }

        /// <summary>The native library's version, e.g. "0.1.0".</summary>
        public static string Version
        {
            get { return Utf8.FromNative(NativeMethods.defender_version()); }
        }

        /// <summary>
        /// Loads the native library from <paramref name="path"/> so that every later call into it
        /// uses that file. Loading the same file again does nothing; another file cannot replace it.
        /// </summary>
        public static void Load(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            string fullPath = Path.GetFullPath(path);
            lock (loadLock)
            {
                if (loadedPath != null)
                {
                    if (string.Equals(loadedPath, fullPath, IsWindows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
                        return;
                    throw new InvalidOperationException(string.Format(CultureInfo.InvariantCulture,
                        "The defender library is already loaded from '{0}'; a process can load it only once, so '{1}' cannot replace it.",
                        loadedPath, fullPath));
                }
                if (!File.Exists(fullPath))
                    throw new FileNotFoundException("The defender library is not at '" + fullPath + "'.", fullPath);

                Type nativeLibrary = Type.GetType("System.Runtime.InteropServices.NativeLibrary");
                if (nativeLibrary != null)
                    loadedHandle = LoadWithResolver(nativeLibrary, fullPath);
                else if (IsWindows)
                    loadedHandle = LoadWithKernel32(fullPath);
                else
                    throw new PlatformNotSupportedException(
                        "Loading the defender library from a chosen path needs .NET Core 3.0 or later on this operating system.");
                loadedPath = fullPath;
            }
        }

        // .NET (Core): load the file, and answer the runtime's lookups of "defender" from this
        // assembly with it. Both through reflection, as .NET Framework has neither API.
        static IntPtr LoadWithResolver(Type nativeLibrary, string fullPath)
        {
            MethodInfo load = nativeLibrary.GetMethod("Load", new[] { typeof(string) });
            IntPtr handle;
            try
            {
                handle = (IntPtr)load.Invoke(null, new object[] { fullPath });
            }
            catch (TargetInvocationException e)
            {
                throw new DllNotFoundException("The defender library at '" + fullPath + "' could not be loaded: " + e.InnerException.Message, e.InnerException);
            }
            Type resolverType = Type.GetType("System.Runtime.InteropServices.DllImportResolver", true);
            Delegate resolver = Delegate.CreateDelegate(resolverType,
                typeof(DefenderLibrary).GetMethod("Resolve", BindingFlags.NonPublic | BindingFlags.Static));
            nativeLibrary.GetMethod("SetDllImportResolver").Invoke(null, new object[] { typeof(NativeMethods).Assembly, resolver });
            return handle;
        }

        // The DllImportResolver registered by LoadWithResolver.
        static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
        {
            return libraryName == Name ? loadedHandle : IntPtr.Zero;
        }

        // Windows (.NET Framework): once a DLL is loaded, Windows resolves a load of the same base
        // name ("defender.dll", as DllImport asks for it) to the module already loaded.
        static IntPtr LoadWithKernel32(string fullPath)
        {
            IntPtr handle = NativeMethods.LoadLibraryW(fullPath);
            if (handle == IntPtr.Zero)
            {
                string reason = new Win32Exception(Marshal.GetLastWin32Error()).Message;
                throw new DllNotFoundException("The defender library at '" + fullPath + "' could not be loaded: " + reason);
            }
            return handle;
        }

        static bool IsWindows
        {
            get { return Environment.OSVersion.Platform == PlatformID.Win32NT; }
        }

        static bool IsMacOS
        {
            get
            {
                if (IsWindows) return false;
                Type runtimeInformation = Type.GetType("System.Runtime.InteropServices.RuntimeInformation");
                Type osPlatform = Type.GetType("System.Runtime.InteropServices.OSPlatform");
                if (runtimeInformation == null || osPlatform == null) return false;
                object osx = osPlatform.GetProperty("OSX").GetValue(null, null);
                return (bool)runtimeInformation.GetMethod("IsOSPlatform").Invoke(null, new[] { osx });
            }
        }

        // x64, x86, arm64, arm, ... as in runtime identifiers. RuntimeInformation is missing on
        // .NET Framework before 4.7.1, which runs only on x86 and x64.
        static string ProcessArchitecture
        {
            get
            {
                Type runtimeInformation = Type.GetType("System.Runtime.InteropServices.RuntimeInformation");
                if (runtimeInformation == null) return IntPtr.Size == 8 ? "x64" : "x86";
                object architecture = runtimeInformation.GetProperty("ProcessArchitecture").GetValue(null, null);
                return architecture.ToString().ToLowerInvariant();
            }
        }
    }

    // The fields of the two classes below are set by DataContractJsonSerializer.
#pragma warning disable 649

    /// <summary>A downloaded investigation package.</summary>
    [DataContract]
    public sealed class DownloadedPackage
    {
        [DataMember(Name = "action_id")] string actionId;
        [DataMember(Name = "machine_id")] string machineId;
        [DataMember(Name = "computer_dns_name")] string computerDnsName;
        [DataMember(Name = "path")] string path;
        [DataMember(Name = "bytes")] long bytes;
        [DataMember(Name = "resumed_from")] long resumedFrom;
        [DataMember(Name = "sha256")] string sha256;
        [DataMember(Name = "elapsed_ms")] long elapsedMilliseconds;

        public string ActionId { get { return actionId; } }

        /// <summary>
        /// The device's id, when the download looked the action up (it waited for the collection,
        /// or the option file_name_pattern names the file after the device); otherwise null.
        /// </summary>
        public string MachineId { get { return machineId; } }

        /// <summary>The device's name, when known (see <see cref="MachineId"/>); otherwise null.</summary>
        public string ComputerDnsName { get { return computerDnsName; } }

        /// <summary>The file's absolute path.</summary>
        public string Path { get { return path; } }

        public long Bytes { get { return bytes; } }

        /// <summary>
        /// The bytes an earlier, interrupted download to the same destination (a process killed
        /// mid-download) left and this one kept and completed; 0 when it downloaded from byte 0.
        /// </summary>
        public long ResumedFrom { get { return resumedFrom; } }

        /// <summary>The SHA-256 of the file, as lower-case hex.</summary>
        public string Sha256 { get { return sha256; } }

        public TimeSpan Elapsed { get { return TimeSpan.FromMilliseconds(elapsedMilliseconds); } }

        internal static DownloadedPackage FromJson(string json)
        {
            return Json.Parse<DownloadedPackage>(json);
        }
    }

    /// <summary>
    /// A MachineAction as the service sent it: the fields most callers want, and the whole object
    /// as JSON in <see cref="Json"/> (every field optional, names as the API has them).
    /// </summary>
    [DataContract]
    public sealed class MachineAction
    {
        [DataMember(Name = "id")] string id;
        [DataMember(Name = "type")] string type;
        [DataMember(Name = "status")] string status;
        [DataMember(Name = "machineId")] string machineId;
        [DataMember(Name = "computerDnsName")] string computerDnsName;
        [DataMember(Name = "requestor")] string requestor;
        [DataMember(Name = "requestorComment")] string requestorComment;
        [DataMember(Name = "creationDateTimeUtc")] string creationDateTimeUtc;
        [DataMember(Name = "lastUpdateDateTimeUtc")] string lastUpdateDateTimeUtc;
        [DataMember(Name = "commands")] LiveResponseCommandState[] commands;
        string json;

        public string Id { get { return id; } }

        /// <summary>E.g. CollectInvestigationPackage.</summary>
        public string Type { get { return type; } }

        /// <summary>Pending, InProgress, Succeeded, Failed, TimeOut or Cancelled.</summary>
        public string Status { get { return status; } }

        public string MachineId { get { return machineId; } }

        public string ComputerDnsName { get { return computerDnsName; } }

        public string Requestor { get { return requestor; } }

        public string RequestorComment { get { return requestorComment; } }

        public DateTime? CreationDateTimeUtc { get { return ParseTime(creationDateTimeUtc); } }

        public DateTime? LastUpdateDateTimeUtc { get { return ParseTime(lastUpdateDateTimeUtc); } }

        /// <summary>A live response session's commands, each with its status and errors (never null; empty for other actions).</summary>
        public IList<LiveResponseCommandState> Commands { get { return commands ?? new LiveResponseCommandState[0]; } }

        /// <summary>The whole MachineAction object, as the service sent it.</summary>
        public string Json { get { return json; } }

        internal static MachineAction FromJson(string text)
        {
            MachineAction action = Defender.Json.Parse<MachineAction>(text);
            action.json = text;
            return action;
        }

        internal static DateTime? ParseTime(string text)
        {
            DateTime time;
            if (text != null && DateTime.TryParse(text, CultureInfo.InvariantCulture,
                    DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out time))
                return time;
            return null;
        }
    }

    /// <summary>
    /// A Machine (a device) as the service sent it: the fields most callers want, and the whole
    /// object as JSON in <see cref="Json"/> (every field optional, names as the API has them).
    /// </summary>
    [DataContract]
    public sealed class Machine
    {
        [DataMember(Name = "id")] string id;
        [DataMember(Name = "computerDnsName")] string computerDnsName;
        [DataMember(Name = "osPlatform")] string osPlatform;
        [DataMember(Name = "healthStatus")] string healthStatus;
        [DataMember(Name = "rbacGroupId")] long? rbacGroupId;
        [DataMember(Name = "rbacGroupName")] string rbacGroupName;
        [DataMember(Name = "machineTags")] string[] machineTags;
        [DataMember(Name = "lastSeen")] string lastSeen;
        [DataMember(Name = "lastIpAddress")] string lastIpAddress;
        string json;

        /// <summary>The device id: 40 hexadecimal characters.</summary>
        public string Id { get { return id; } }

        public string ComputerDnsName { get { return computerDnsName; } }

        /// <summary>E.g. Windows11, WindowsServer2022, Linux.</summary>
        public string OsPlatform { get { return osPlatform; } }

        /// <summary>Active, Inactive, ImpairedCommunication, NoSensorData, ...</summary>
        public string HealthStatus { get { return healthStatus; } }

        public long? RbacGroupId { get { return rbacGroupId; } }

        public string RbacGroupName { get { return rbacGroupName; } }

        /// <summary>The device's tags (never null).</summary>
        public IList<string> MachineTags { get { return machineTags ?? new string[0]; } }

        public DateTime? LastSeen { get { return MachineAction.ParseTime(lastSeen); } }

        public string LastIpAddress { get { return lastIpAddress; } }

        /// <summary>The whole Machine object, as the service sent it.</summary>
        public string Json { get { return json; } }

        internal static Machine FromJson(string text)
        {
            Machine machine = Defender.Json.Parse<Machine>(text);
            machine.json = text;
            return machine;
        }
    }

    /// <summary>
    /// The outcome of one item of <see cref="DefenderClient.DownloadPackages"/>: the package saved
    /// (Path, Bytes, Sha256), or why not (Status and Message).
    /// </summary>
    [DataContract]
    public sealed class PackageDownloadResult
    {
        [DataMember(Name = "action_id")] string actionId;
        [DataMember(Name = "machine_id")] string machineId;
        [DataMember(Name = "computer_dns_name")] string computerDnsName;
        [DataMember(Name = "code")] int code;
        [DataMember(Name = "message")] string message;
        [DataMember(Name = "path")] string path;
        [DataMember(Name = "bytes")] long bytes;
        [DataMember(Name = "resumed_from")] long resumedFrom;
        [DataMember(Name = "sha256")] string sha256;
        [DataMember(Name = "elapsed_ms")] long elapsedMilliseconds;

        public string ActionId { get { return actionId; } }

        /// <summary>The device's id, for a saved package whose download looked the action up (see <see cref="DownloadedPackage.MachineId"/>); otherwise null.</summary>
        public string MachineId { get { return machineId; } }

        /// <summary>The device's name, when known (see <see cref="MachineId"/>); otherwise null.</summary>
        public string ComputerDnsName { get { return computerDnsName; } }

        /// <summary>Ok when the package was saved; otherwise why not (NotReady, NotFound, ActionFailed, Exists, ...).</summary>
        public DefenderStatus Status { get { return (DefenderStatus)code; } }

        public bool Succeeded { get { return Status == DefenderStatus.Ok; } }

        /// <summary>The library's message for a failed item (never a secret); null for a saved one.</summary>
        public string Message { get { return message; } }

        /// <summary>The file's absolute path; null for a failed item.</summary>
        public string Path { get { return path; } }

        public long Bytes { get { return bytes; } }

        /// <summary>
        /// The bytes an earlier, interrupted download to the same destination (a process killed
        /// mid-download) left and this one kept and completed; 0 when it downloaded from byte 0.
        /// </summary>
        public long ResumedFrom { get { return resumedFrom; } }

        /// <summary>The SHA-256 of the file, as lower-case hex; null for a failed item.</summary>
        public string Sha256 { get { return sha256; } }

        /// <summary>How long the item took, from its start to its success or failure.</summary>
        public TimeSpan Elapsed { get { return TimeSpan.FromMilliseconds(elapsedMilliseconds); } }

        internal static PackageDownloadResult FromJson(string json)
        {
            return Json.Parse<PackageDownloadResult>(json);
        }
    }

    /// <summary>What a client is connected to and how it signs in (see <see cref="DefenderClient.GetConnectionInfo"/>).</summary>
    [DataContract]
    public sealed class ConnectionInfo
    {
        [DataMember(Name = "api_root")] string apiRoot;
        [DataMember(Name = "authority")] string authority;
        [DataMember(Name = "sign_in")] string signIn;
        [DataMember(Name = "proof")] string proof;
        [DataMember(Name = "tenant_id")] string tenantId;
        [DataMember(Name = "client_id")] string clientId;
        [DataMember(Name = "token_expires_at")] long? tokenExpiresAt;

        /// <summary>The API root its calls go to.</summary>
        public string ApiRoot { get { return apiRoot; } }

        /// <summary>The sign-in host; null for a managed identity or a bearer token.</summary>
        public string Authority { get { return authority; } }

        /// <summary>
        /// The option that signs in: client_secret, client_certificate_path, client_assertion,
        /// assertion_callback, managed_identity, environment or access_token.
        /// </summary>
        public string SignIn { get { return signIn; } }

        /// <summary>With environment: which of those the environment holds (client_secret, client_certificate_path); otherwise null.</summary>
        public string Proof { get { return proof; } }

        /// <summary>The app's tenant; null for a managed identity or a bearer token.</summary>
        public string TenantId { get { return tenantId; } }

        /// <summary>The app's client id, or a user-assigned managed identity's; otherwise null.</summary>
        public string ClientId { get { return clientId; } }

        /// <summary>When the token in use expires (UTC; it is renewed by itself before then); null for a bearer token.</summary>
        public DateTime? TokenExpiresAt
        {
            get
            {
                if (!tokenExpiresAt.HasValue) return null;
                return new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddSeconds(tokenExpiresAt.Value);
            }
        }

        internal static ConnectionInfo FromJson(string json)
        {
            return Json.Parse<ConnectionInfo>(json);
        }
    }

    /// <summary>
    /// One command of a live response session, as <see cref="DefenderClient.RunLiveResponse(string, IList{LiveResponseCommand}, string, CancellationToken)"/>
    /// sends it: its type (GetFile, RunScript, PutFile, ...) and its parameters, in the service's form
    /// <c>{"type": "GetFile", "params": [{"key": "Path", "value": "C:\\Windows\\Temp\\x.exe"}]}</c>.
    /// </summary>
    [DataContract]
    public sealed class LiveResponseCommand
    {
        [DataMember(Name = "type", Order = 1)] string type;
        [DataMember(Name = "params", Order = 2)] List<LiveResponseParameter> parameters = new List<LiveResponseParameter>();

        /// <summary>A command of <paramref name="type"/>; add its parameters with <see cref="Add"/>.</summary>
        public LiveResponseCommand(string type)
        {
            if (string.IsNullOrEmpty(type)) throw new ArgumentException("A live response command needs a type (GetFile, RunScript, PutFile, ...).", "type");
            this.type = type;
        }

        /// <summary>GetFile: the file at <paramref name="path"/> on the device.</summary>
        public static LiveResponseCommand GetFile(string path)
        {
            return new LiveResponseCommand("GetFile").Add("Path", path);
        }

        /// <summary>RunScript: a script of the tenant's library, with its arguments (null: none).</summary>
        public static LiveResponseCommand RunScript(string scriptName, string arguments)
        {
            LiveResponseCommand command = new LiveResponseCommand("RunScript").Add("ScriptName", scriptName);
            return arguments == null ? command : command.Add("Args", arguments);
        }

        /// <summary>PutFile: a file of the tenant's library, put on the device.</summary>
        public static LiveResponseCommand PutFile(string fileName)
        {
            return new LiveResponseCommand("PutFile").Add("FileName", fileName);
        }

        public string Type { get { return type; } }

        /// <summary>The parameters, in order: (key, value).</summary>
        public IList<KeyValuePair<string, string>> Parameters
        {
            get
            {
                // Null when the service's copy of a command has no params.
                if (parameters == null) return new KeyValuePair<string, string>[0];
                return parameters.ConvertAll(p => new KeyValuePair<string, string>(p.Key, p.Value)).AsReadOnly();
            }
        }

        /// <summary>Adds a parameter; returns this command.</summary>
        public LiveResponseCommand Add(string key, string value)
        {
            if (string.IsNullOrEmpty(key)) throw new ArgumentException("A parameter of a live response command needs a key.", "key");
            if (value == null) throw new ArgumentNullException("value", "Parameter " + key + " of " + type + " has no value.");
            if (parameters == null) parameters = new List<LiveResponseParameter>();
            parameters.Add(new LiveResponseParameter { Key = key, Value = value });
            return this;
        }

        /// <summary>Commands as the JSON array the service (and defender_run_live_response) takes.</summary>
        public static string ToJson(IList<LiveResponseCommand> commands)
        {
            if (commands == null) throw new ArgumentNullException("commands");
            LiveResponseCommand[] array = new LiveResponseCommand[commands.Count];
            commands.CopyTo(array, 0);
            return Encoding.UTF8.GetString(Defender.Json.Write(array));
        }
    }

    /// <summary>A parameter of a live response command: {"key": ..., "value": ...}.</summary>
    [DataContract]
    public sealed class LiveResponseParameter
    {
        [DataMember(Name = "key", Order = 1)] public string Key { get; set; }
        [DataMember(Name = "value", Order = 2)] public string Value { get; set; }
    }

    /// <summary>A command of a live response action as the service reports it: its place, status and errors.</summary>
    [DataContract]
    public sealed class LiveResponseCommandState
    {
        [DataMember(Name = "index")] int index;
        [DataMember(Name = "commandStatus")] string commandStatus;
        [DataMember(Name = "errors")] string[] errors;
        [DataMember(Name = "command")] LiveResponseCommand command;

        /// <summary>Its position in the session's commands: the index its result is asked for by.</summary>
        public int Index { get { return index; } }

        /// <summary>Created, InProgress, Completed, Failed, Canceled, ...</summary>
        public string CommandStatus { get { return commandStatus; } }

        /// <summary>What went wrong (never null).</summary>
        public IList<string> Errors { get { return errors ?? new string[0]; } }

        /// <summary>The command's type (GetFile, RunScript, ...), or null when the service left it out.</summary>
        public string Type { get { return command == null ? null : command.Type; } }

        /// <summary>The command as sent, or null when the service left it out.</summary>
        public LiveResponseCommand Command { get { return command; } }
    }

    /// <summary>A live response result saved to disk (<see cref="DefenderClient.DownloadLiveResponseResult"/>).</summary>
    [DataContract]
    public sealed class LiveResponseResult
    {
        [DataMember(Name = "action_id")] string actionId;
        [DataMember(Name = "index")] int index;
        [DataMember(Name = "path")] string path;
        [DataMember(Name = "bytes")] long bytes;
        [DataMember(Name = "resumed_from")] long resumedFrom;
        [DataMember(Name = "sha256")] string sha256;
        [DataMember(Name = "command_type")] string commandType;
        [DataMember(Name = "content_encoding")] string contentEncoding;
        [DataMember(Name = "elapsed_ms")] long elapsedMilliseconds;

        public string ActionId { get { return actionId; } }

        /// <summary>The command's index in the session.</summary>
        public int Index { get { return index; } }

        /// <summary>The file's absolute path.</summary>
        public string Path { get { return path; } }

        public long Bytes { get { return bytes; } }

        /// <summary>
        /// The bytes an earlier, interrupted download to the same destination (a process killed
        /// mid-download) left and this one kept and completed; 0 when it downloaded from byte 0.
        /// </summary>
        public long ResumedFrom { get { return resumedFrom; } }

        /// <summary>The SHA-256 of the file as saved (of its gzip bytes when <see cref="ContentEncoding"/> is gzip), lower-case hex.</summary>
        public string Sha256 { get { return sha256; } }

        /// <summary>The command's type: GetFile, RunScript, ...</summary>
        public string CommandType { get { return commandType; } }

        /// <summary>"gzip" when the store sent the result compressed (the file keeps those bytes and ends in .gz); otherwise null.</summary>
        public string ContentEncoding { get { return contentEncoding; } }

        public TimeSpan Elapsed { get { return TimeSpan.FromMilliseconds(elapsedMilliseconds); } }

        /// <summary>The transcript of a RunScript result (see <see cref="ScriptTranscript.Load"/>).</summary>
        public ScriptTranscript ReadTranscript()
        {
            return ScriptTranscript.Load(path);
        }

        internal static LiveResponseResult FromJson(string json)
        {
            return Json.Parse<LiveResponseResult>(json);
        }
    }

    /// <summary>
    /// What a RunScript command left: the JSON transcript its result holds
    /// (<c>script_name</c>, <c>exit_code</c>, <c>script_output</c>, <c>script_errors</c>).
    /// </summary>
    [DataContract]
    public sealed class ScriptTranscript
    {
        [DataMember(Name = "script_name")] string scriptName;
        [DataMember(Name = "exit_code")] int? exitCode;
        [DataMember(Name = "script_output")] string output;
        [DataMember(Name = "script_errors")] string errors;

        public string ScriptName { get { return scriptName; } }

        /// <summary>The script's exit code; null when the transcript has none.</summary>
        public int? ExitCode { get { return exitCode; } }

        /// <summary>What the script wrote to its output (never null).</summary>
        public string Output { get { return output ?? ""; } }

        /// <summary>What the script wrote to its error stream (never null).</summary>
        public string Errors { get { return errors ?? ""; } }

        /// <summary>
        /// The transcript in a downloaded RunScript result (gzip-compressed or not). A file that is
        /// not such a transcript throws a DefenderException with status Protocol.
        /// </summary>
        public static ScriptTranscript Load(string path)
        {
            if (path == null) throw new ArgumentNullException("path");
            byte[] bytes;
            try
            {
                bytes = File.ReadAllBytes(path);
                // gzip's magic number: the store sent the transcript compressed and it was kept so.
                if (bytes.Length > 2 && bytes[0] == 0x1f && bytes[1] == 0x8b)
                {
                    using (MemoryStream plain = new MemoryStream())
                    using (System.IO.Compression.GZipStream gzip = new System.IO.Compression.GZipStream(
                        new MemoryStream(bytes), System.IO.Compression.CompressionMode.Decompress))
                    {
                        gzip.CopyTo(plain);
                        bytes = plain.ToArray();
                    }
                }
            }
            catch (InvalidDataException e)
            {
                throw new DefenderException(DefenderStatus.Protocol, "The script transcript '" + path + "' is not valid gzip: " + e.Message);
            }
            catch (IOException e)
            {
                throw new DefenderException(DefenderStatus.Io, "The script transcript '" + path + "' cannot be read: " + e.Message);
            }
            catch (UnauthorizedAccessException e)
            {
                throw new DefenderException(DefenderStatus.Io, "The script transcript '" + path + "' cannot be read: " + e.Message);
            }
            return Parse(Encoding.UTF8.GetString(bytes));
        }

        /// <summary>A transcript from its JSON text.</summary>
        public static ScriptTranscript Parse(string json)
        {
            if (json == null) throw new ArgumentNullException("json");
            try
            {
                using (MemoryStream stream = new MemoryStream(Encoding.UTF8.GetBytes(json.TrimStart('\uFEFF'))))
                    return (ScriptTranscript)new DataContractJsonSerializer(typeof(ScriptTranscript)).ReadObject(stream);
            }
            catch (SerializationException e)
            {
                throw new DefenderException(DefenderStatus.Protocol, "The RunScript result is not a script transcript (JSON with script_name, exit_code, script_output, script_errors): " + e.Message);
            }
        }
    }

    /// <summary>A file to fetch from a device with <see cref="DefenderClient.GetFiles"/>.</summary>
    public sealed class FileRequest
    {
        /// <param name="machine">The device: its id or computer name.</param>
        /// <param name="path">The file's path on the device, e.g. C:\Windows\Temp\x.exe.</param>
        public FileRequest(string machine, string path)
        {
            if (string.IsNullOrEmpty(machine)) throw new ArgumentException("A file request needs a device id or computer name.", "machine");
            if (string.IsNullOrEmpty(path)) throw new ArgumentException("A file request needs the file's path on the device.", "path");
            Machine = machine;
            Path = path;
        }

        public string Machine { get; private set; }

        public string Path { get; private set; }
    }

    /// <summary>
    /// The outcome of one item of <see cref="DefenderClient.GetFiles"/>: the file saved (Path,
    /// Bytes, Sha256), or why not (Status and Message).
    /// </summary>
    [DataContract]
    public sealed class FileRetrievalResult
    {
        [DataMember(Name = "machine")] string machine;
        [DataMember(Name = "machine_id")] string machineId;
        [DataMember(Name = "computer_dns_name")] string computerDnsName;
        [DataMember(Name = "remote_path")] string remotePath;
        [DataMember(Name = "action_id")] string actionId;
        [DataMember(Name = "code")] int code;
        [DataMember(Name = "message")] string message;
        [DataMember(Name = "path")] string path;
        [DataMember(Name = "bytes")] long bytes;
        [DataMember(Name = "resumed_from")] long resumedFrom;
        [DataMember(Name = "sha256")] string sha256;
        [DataMember(Name = "content_encoding")] string contentEncoding;
        [DataMember(Name = "elapsed_ms")] long elapsedMilliseconds;

        /// <summary>The device as the request named it (id or computer name).</summary>
        public string Machine { get { return machine; } }

        /// <summary>The device's id, when the library found it; otherwise null.</summary>
        public string MachineId { get { return machineId; } }

        /// <summary>The device's name, when the library found it; otherwise null.</summary>
        public string ComputerDnsName { get { return computerDnsName; } }

        /// <summary>The file's path on the device.</summary>
        public string RemotePath { get { return remotePath; } }

        /// <summary>The live response session's machine action id; null when none was started.</summary>
        public string ActionId { get { return actionId; } }

        /// <summary>Ok when the file was saved; otherwise why not (NotFound, ActionFailed, Exists, ...).</summary>
        public DefenderStatus Status { get { return (DefenderStatus)code; } }

        public bool Succeeded { get { return Status == DefenderStatus.Ok; } }

        /// <summary>The library's message for a failed item (never a secret); null for a saved one.</summary>
        public string Message { get { return message; } }

        /// <summary>The saved file's absolute path; null for a failed item.</summary>
        public string Path { get { return path; } }

        public long Bytes { get { return bytes; } }

        /// <summary>
        /// The bytes an earlier, interrupted download to the same destination (a process killed
        /// mid-download) left and this one kept and completed; 0 when it downloaded from byte 0.
        /// </summary>
        public long ResumedFrom { get { return resumedFrom; } }

        /// <summary>The SHA-256 of the saved file, lower-case hex; null for a failed item.</summary>
        public string Sha256 { get { return sha256; } }

        /// <summary>"gzip" when the file was sent (and kept) compressed; otherwise null.</summary>
        public string ContentEncoding { get { return contentEncoding; } }

        public TimeSpan Elapsed { get { return TimeSpan.FromMilliseconds(elapsedMilliseconds); } }

        internal static FileRetrievalResult FromJson(string json)
        {
            return Json.Parse<FileRetrievalResult>(json);
        }
    }

    /// <summary>
    /// A file of the tenant's live response library (scripts for RunScript, files for PutFile): the
    /// fields most callers want, and the whole object as JSON in <see cref="Json"/>.
    /// </summary>
    [DataContract]
    public sealed class LibraryFile
    {
        [DataMember(Name = "fileName")] string fileName;
        [DataMember(Name = "description")] string description;
        [DataMember(Name = "parametersDescription")] string parametersDescription;
        [DataMember(Name = "hasParameters")] bool? hasParameters;
        [DataMember(Name = "sha256")] string sha256;
        [DataMember(Name = "createdBy")] string createdBy;
        [DataMember(Name = "creationTime")] string creationTime;
        [DataMember(Name = "lastUpdatedTime")] string lastUpdatedTime;
        string json;

        public string FileName { get { return fileName; } }

        public string Description { get { return description; } }

        public string ParametersDescription { get { return parametersDescription; } }

        public bool HasParameters { get { return hasParameters ?? false; } }

        public string Sha256 { get { return sha256; } }

        public string CreatedBy { get { return createdBy; } }

        public DateTime? CreationTime { get { return MachineAction.ParseTime(creationTime); } }

        public DateTime? LastUpdatedTime { get { return MachineAction.ParseTime(lastUpdatedTime); } }

        /// <summary>The whole library file object, as the service sent it.</summary>
        public string Json { get { return json; } }

        internal static LibraryFile FromJson(string text)
        {
            LibraryFile file = Defender.Json.Parse<LibraryFile>(text);
            file.json = text;
            return file;
        }
    }

#pragma warning restore 649

    /// <summary>
    /// A client of the Defender for Endpoint API: options, sign-in, connection pool. Reuse one:
    /// it caches its access token. Thread-safe.
    /// </summary>
    public sealed class DefenderClient : IDisposable
    {
        // Set while a call runs on this thread: the first exception a callback threw (it is
        // rethrown once the native call has returned, as no exception may cross native frames),
        // and the call's cancellation token.
        [ThreadStatic] static Exception callbackFailure;
        [ThreadStatic] static CancellationToken callCancellation;

        readonly ClientHandle handle;
        // Kept in fields: the native side holds these delegates for as long as the client lives.
        readonly NativeMethods.LogCallback logCallback;
        readonly NativeMethods.PhaseCallback phaseCallback;
        readonly NativeMethods.AssertionCallback assertionCallback;
        volatile Action<DefenderLogLevel, string> logHandler;
        volatile Action<PhaseEvent> phaseHandler;
        volatile Func<string, string, string> assertionSigner;

        public DefenderClient()
        {
            DefenderStatus status = NativeMethods.defender_client_new(out handle);
            if (status != DefenderStatus.Ok) throw LastError(status);
            logCallback = OnLog;
            phaseCallback = OnPhase;
            assertionCallback = OnSignAssertion;
            RegisterCallbacks();
        }

        // A clone (see Clone): the native clone starts with this object's native callbacks,
        // which are replaced at once by the clone's own.
        DefenderClient(ClientHandle handle, DefenderClient original)
        {
            this.handle = handle;
            logCallback = OnLog;
            phaseCallback = OnPhase;
            assertionCallback = OnSignAssertion;
            logHandler = original.logHandler;
            phaseHandler = original.phaseHandler;
            assertionSigner = original.assertionSigner;
            RegisterCallbacks();
        }

        void RegisterCallbacks()
        {
            Check(NativeMethods.defender_client_set_log_callback(handle, logCallback, IntPtr.Zero));
            Check(NativeMethods.defender_client_set_phase_callback(handle, phaseCallback, IntPtr.Zero));
            if (assertionSigner != null)
                Check(NativeMethods.defender_client_set_assertion_callback(handle, assertionCallback, IntPtr.Zero));
        }

        /// <summary>
        /// A client for calls of their own (defender_client_clone): it starts with this client's
        /// options and handlers as they are now, and shares its signed-in token, connection pool
        /// and rate limiters. Options set on either afterwards apply to that one only, and
        /// <see cref="Cancel"/> cancels only the calls of the client it is called on. Cheap: make
        /// one per operation that needs options of its own (overwrite, wait_timeout_ms). Dispose
        /// it when done; the two may be disposed in any order.
        /// </summary>
        public DefenderClient Clone()
        {
            ClientHandle clone;
            DefenderStatus status = NativeMethods.defender_client_clone(handle, out clone);
            if (status != DefenderStatus.Ok) throw LastError(status);
            try
            {
                return new DefenderClient(clone, this);
            }
            catch
            {
                clone.Dispose();
                throw;
            }
        }

        /// <summary>
        /// Receives what each item of a call is doing (waiting for the collection, queued for the
        /// rate limit, downloading, verifying, retrying) on the thread that made the call, while it
        /// runs, as the handlers of that call do. An exception it throws cancels that call and is
        /// rethrown by it.
        /// </summary>
        public Action<PhaseEvent> PhaseHandler
        {
            get { return phaseHandler; }
            set { phaseHandler = value; }
        }

        /// <summary>
        /// Signs in with client assertions that <paramref name="signer"/> signs, given the aud
        /// (the token endpoint) and the client id to sign for (see <see cref="ClientAssertion"/>):
        /// for a key that stays in a certificate store. It is asked whenever a token is needed,
        /// also in the middle of a long call, on the thread that made the call. It counts as the
        /// client's one way to sign in, with the options tenant_id and client_id. What it throws
        /// fails the call with status Unauthorized. Null removes it.
        /// </summary>
        public void SetAssertionSigner(Func<string, string, string> signer)
        {
            assertionSigner = signer;
            Check(NativeMethods.defender_client_set_assertion_callback(handle,
                signer == null ? null : assertionCallback, IntPtr.Zero));
        }

        /// <summary>
        /// Receives the library's log lines (waits, retries, throttling, each request; never a
        /// secret) on the thread that made the call, while it runs. An exception it throws cancels
        /// that call and is rethrown by it.
        /// </summary>
        public Action<DefenderLogLevel, string> LogHandler
        {
            get { return logHandler; }
            set { logHandler = value; }
        }

        /// <summary>
        /// Sets option <paramref name="key"/> (one of <see cref="OptionNames"/>); a null value
        /// restores its default. A key the library does not have throws status UnknownOption
        /// (its message lists the keys), a malformed value InvalidArgument.
        /// </summary>
        public void Set(string key, string value)
        {
            Check(NativeMethods.defender_client_set(handle, Utf8.ToNative(key), Utf8.ToNative(value)));
        }

        /// <summary>
        /// Sets a secret option (client_secret, access_token, client_assertion) from a
        /// SecureString. Its plain text exists only in an unmanaged buffer, wiped right after.
        /// </summary>
        public void SetSecret(string key, SecureString value)
        {
            if (value == null)
            {
                Set(key, null);
                return;
            }
            IntPtr utf16 = IntPtr.Zero;
            IntPtr utf8 = IntPtr.Zero;
            int utf8Length = 0;
            try
            {
                utf16 = Marshal.SecureStringToGlobalAllocUnicode(value);
                utf8 = Utf8.FromUtf16Unmanaged(utf16, value.Length, out utf8Length);
                Check(NativeMethods.defender_client_set(handle, Utf8.ToNative(key), utf8));
            }
            finally
            {
                if (utf8 != IntPtr.Zero)
                {
                    Utf8.Wipe(utf8, utf8Length);
                    Marshal.FreeHGlobal(utf8);
                }
                if (utf16 != IntPtr.Zero) Marshal.ZeroFreeGlobalAllocUnicode(utf16);
            }
        }

        /// <summary>
        /// Signs in now (or finds the cached token still good), so that wrong credentials show at
        /// once rather than at the first call. Never required: every call signs in when it needs to.
        /// A bearer token set as access_token is not checked (only the API can tell).
        /// </summary>
        public void SignIn(CancellationToken cancellationToken = default(CancellationToken))
        {
            Call(cancellationToken, delegate(out IntPtr result)
            {
                result = IntPtr.Zero;
                return NativeMethods.defender_client_sign_in(handle);
            });
        }

        /// <summary>
        /// What this client is connected to, and how it signs in (defender_client_connection_info):
        /// signs in first when it holds no token yet. No secret is in it.
        /// </summary>
        public ConnectionInfo GetConnectionInfo(CancellationToken cancellationToken = default(CancellationToken))
        {
            return ConnectionInfo.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_client_connection_info(handle, out result);
            }));
        }

        /// <summary>
        /// The aud claim a client assertion for this client must carry: its token endpoint, from
        /// the options tenant_id, cloud and authority_url as they are now (see <see cref="ClientAssertion"/>).
        /// </summary>
        public string GetAssertionAudience()
        {
            IntPtr audience;
            DefenderStatus status = NativeMethods.defender_client_assertion_audience(handle, out audience);
            if (status != DefenderStatus.Ok) throw LastError(status);
            return Utf8.TakeNative(audience);
        }

        /// <summary>
        /// Cancels every call running on this client, from any thread: each throws a
        /// DefenderException with status Cancelled promptly, leaving no partial file.
        /// </summary>
        public void Cancel()
        {
            Check(NativeMethods.defender_client_cancel(handle));
        }

        /// <summary>A fresh, short-lived download link for the action's package. Use it at once.</summary>
        /// <remarks>
        /// A cancellation token cancels every call running on this client (the library cancels per client).
        /// </remarks>
        public string GetPackageUri(string actionId, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            return Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_get_package_uri(handle, id, out result);
            });
        }

        /// <summary>
        /// Downloads the action's package to <paramref name="destination"/> (a file, or a folder
        /// that gets the name the option file_name_pattern gives it, &lt;action id&gt;.zip by
        /// default), atomically: on failure or cancellation no file is left.
        /// </summary>
        /// <param name="progress">Called with (bytes done, bytes total; 0 while unknown) on this thread; may be null.</param>
        public DownloadedPackage DownloadPackage(string actionId, string destination, Action<long, long> progress,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            byte[] path = Utf8.ToNative(destination);
            NativeMethods.ProgressCallback onProgress = ProgressCallbackOf(progress);
            string json = Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_download_package(handle, id, path, onProgress, IntPtr.Zero, out result);
            });
            GC.KeepAlive(onProgress);
            return DownloadedPackage.FromJson(json);
        }

        // The native progress callback of a single download: the handler on this thread, a
        // non-zero answer when it threw or the call is cancelled.
        static NativeMethods.ProgressCallback ProgressCallbackOf(Action<long, long> progress)
        {
            if (progress == null) return null;
            return delegate(IntPtr userData, ulong done, ulong total)
            {
                try
                {
                    progress((long)done, (long)total);
                }
                catch (Exception e)
                {
                    if (callbackFailure == null) callbackFailure = e;
                }
                return callbackFailure != null || callCancellation.IsCancellationRequested ? 1 : 0;
            };
        }

        /// <summary>
        /// Downloads the packages of <paramref name="actionIds"/> into <paramref name="folder"/>
        /// (which must exist), each under the name the option file_name_pattern gives it
        /// (&lt;action id&gt;.zip by default), up to the option
        /// max_concurrent_downloads (default 4) at once. Each item is what
        /// <see cref="DownloadPackage"/> does for it, and one item's failure does not stop the
        /// others: it is in that item's result. An id given twice is downloaded once; its repeat
        /// fails with InvalidArgument.
        /// </summary>
        /// <param name="progress">Called with (index, bytes done, bytes total; 0 while unknown) as an item's bytes arrive; may be null.</param>
        /// <param name="itemDone">Called with (index, result) as soon as an item is finished, in the order they finish; may be null.</param>
        /// <returns>One result per id, in the order of <paramref name="actionIds"/>.</returns>
        /// <remarks>
        /// The handlers (and <see cref="LogHandler"/>, as it was when the call started) run on
        /// this thread, one at a time, in the order the library reported. Unlike the handlers of
        /// the other calls they run outside the native call, which goes on meanwhile on a helper
        /// thread: so they may call this library themselves (a PowerShell pipeline may run the
        /// next command of the pipeline from them). An exception a handler throws cancels the
        /// batch (every call running on this client, as cancellation tokens do) and is rethrown
        /// by this method; handlers are not called again after it. On cancellation, items still
        /// running stop and leave no file; packages already reported saved stay.
        /// </remarks>
        public IList<PackageDownloadResult> DownloadPackages(IList<string> actionIds, string folder,
            Action<int, long, long> progress, Action<int, PackageDownloadResult> itemDone,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (actionIds == null) throw new ArgumentNullException("actionIds");
            byte[] path = Utf8.ToNative(folder);
            IntPtr[] ids = new IntPtr[actionIds.Count];
            try
            {
                for (int i = 0; i < ids.Length; i++) ids[i] = Utf8.ToUnmanaged(actionIds[i]);
                return RunBatch(progress, itemDone, PackageDownloadResult.FromJson,
                    delegate(NativeMethods.BatchProgressCallback onProgress, NativeMethods.BatchItemCallback onItemDone, out IntPtr result)
                    {
                        return NativeMethods.defender_download_packages(handle, ids, new UIntPtr((uint)ids.Length), path,
                            onProgress, onItemDone, IntPtr.Zero, out result);
                    }, cancellationToken);
            }
            finally
            {
                foreach (IntPtr id in ids) Marshal.FreeHGlobal(id);
            }
        }

        delegate DefenderStatus BatchCall(NativeMethods.BatchProgressCallback progress, NativeMethods.BatchItemCallback itemDone,
            out IntPtr result);

        // A batch call (DownloadPackages, GetFiles) on a helper thread, its handlers relayed to this
        // one (see HandlerRelay); returns its items' results.
        IList<T> RunBatch<T>(Action<int, long, long> progress, Action<int, T> itemDone, Func<string, T> parseItem, BatchCall call,
            CancellationToken cancellationToken)
        {
            HandlerRelay relay = new HandlerRelay(logHandler, CancelQuietly);
            // Both run on the helper thread, inside the native call: they only copy what the
            // library said and post the handler, which the relay runs on this thread.
            NativeMethods.BatchProgressCallback onProgress = delegate(IntPtr userData, UIntPtr index, ulong done, ulong total)
            {
                try
                {
                    int item = Utf8.Index(index);
                    if (progress != null) relay.Post(delegate { progress(item, (long)done, (long)total); });
                }
                catch (Exception e)
                {
                    relay.Fail(e);
                }
                return relay.Failed || cancellationToken.IsCancellationRequested ? 1 : 0;
            };
            NativeMethods.BatchItemCallback onItemDone = delegate(IntPtr userData, UIntPtr index, DefenderStatus status, IntPtr itemJson)
            {
                try
                {
                    int item = Utf8.Index(index);
                    string json = Utf8.FromNative(itemJson);
                    if (itemDone != null) relay.Post(delegate { itemDone(item, parseItem(json)); });
                }
                catch (Exception e)
                {
                    relay.Fail(e);
                }
            };
            try
            {
                string json = relay.Run(delegate
                {
                    return Call(cancellationToken, delegate(out IntPtr result)
                    {
                        return call(onProgress, onItemDone, out result);
                    });
                });
                return Json.SplitArray(json).ConvertAll(item => parseItem(item));
            }
            finally
            {
                GC.KeepAlive(onProgress);
                GC.KeepAlive(onItemDone);
            }
        }

        /// <summary>Looks up a machine action.</summary>
        public MachineAction GetMachineAction(string actionId, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            return MachineAction.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_get_machine_action(handle, id, out result);
            }));
        }

        /// <summary>
        /// Starts collecting an investigation package on a machine (or returns the collection
        /// already running there). A null comment gives the library's default.
        /// </summary>
        public MachineAction CollectInvestigationPackage(string machineId, string comment,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] machine = Utf8.ToNative(machineId);
            byte[] text = Utf8.ToNative(comment);
            return MachineAction.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_collect_investigation_package(handle, machine, text, out result);
            }));
        }

        /// <summary>
        /// Waits for a machine action to succeed (status ActionFailed when it ends otherwise,
        /// Timeout after the option wait_timeout_ms, default one hour).
        /// </summary>
        public MachineAction WaitForAction(string actionId, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            return MachineAction.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_wait_for_action(handle, id, out result);
            }));
        }

        /// <summary>
        /// Looks up one device by its id (40 hexadecimal characters) or its computer name (quoted
        /// by the library; a host name without a dot also finds its fully qualified name). Of
        /// several devices with one name, the one seen last (the others are logged as a warning).
        /// </summary>
        public Machine GetMachine(string machineIdOrName, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] key = Utf8.ToNative(machineIdOrName);
            return Machine.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_get_machine(handle, key, out result);
            }));
        }

        /// <summary>
        /// Lists devices: <paramref name="odataFilter"/> is the service's $filter, passed verbatim
        /// (null: every device; quote values from users with <see cref="ODataString"/>). Every
        /// page is followed; <paramref name="maxItems"/> above 0 stops after that many.
        /// </summary>
        public IList<Machine> ListMachines(string odataFilter, int maxItems = 0,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] filter = Utf8.ToNative(odataFilter);
            uint max = CheckMaxItems(maxItems);
            string text = Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_list_machines(handle, filter, max, out result);
            });
            return Json.SplitArray(text).ConvertAll(Machine.FromJson);
        }

        /// <summary>
        /// Lists machine actions, newest first: <paramref name="odataFilter"/> is the service's
        /// $filter, passed verbatim (null: every action; the service filters on id, status,
        /// machineId, type, requestor and creationDateTimeUtc). Every page is followed;
        /// <paramref name="maxItems"/> above 0 stops after that many.
        /// </summary>
        public IList<MachineAction> ListMachineActions(string odataFilter, int maxItems = 0,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] filter = Utf8.ToNative(odataFilter);
            uint max = CheckMaxItems(maxItems);
            string text = Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_list_machine_actions(handle, filter, max, out result);
            });
            return Json.SplitArray(text).ConvertAll(MachineAction.FromJson);
        }

        /// <summary>
        /// Cancels a machine action that has not ended (Pending, InProgress) and returns it as it
        /// is afterwards; one in a final state is refused by the service (status Http, its
        /// message). A null comment gives the library's default.
        /// </summary>
        public MachineAction CancelMachineAction(string actionId, string comment,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            byte[] text = Utf8.ToNative(comment);
            return MachineAction.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_cancel_machine_action(handle, id, text, out result);
            }));
        }

        /// <summary>
        /// Starts a live response session on a device (its id or computer name) with
        /// <paramref name="commands"/> (GetFile, RunScript, PutFile, ...; see <see cref="LiveResponseCommand"/>);
        /// a null comment gives the library's default. A session refused because 25 run in the
        /// tenant or the device runs one is tried again (phase WaitingForSession) within the option
        /// wait_timeout_ms; with wait_timeout_ms above 0 the call also waits until the session ends,
        /// and one that ends Failed, TimeOut or Cancelled throws status ActionFailed with each failed
        /// command's errors. Returns the machine action with its <see cref="MachineAction.Commands"/>.
        /// </summary>
        public MachineAction RunLiveResponse(string machineIdOrName, IList<LiveResponseCommand> commands, string comment,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            return RunLiveResponse(machineIdOrName, LiveResponseCommand.ToJson(commands), comment, cancellationToken);
        }

        /// <summary>
        /// <see cref="RunLiveResponse(string, IList{LiveResponseCommand}, string, CancellationToken)"/> with
        /// the commands as the service's JSON array, e.g.
        /// <c>[{"type":"GetFile","params":[{"key":"Path","value":"C:\\x.log"}]}]</c> (checked by the library before any request).
        /// </summary>
        public MachineAction RunLiveResponse(string machineIdOrName, string commandsJson, string comment,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] machine = Utf8.ToNative(machineIdOrName);
            byte[] commands = Utf8.ToNative(commandsJson);
            byte[] text = Utf8.ToNative(comment);
            return MachineAction.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_run_live_response(handle, machine, commands, text, out result);
            }));
        }

        /// <summary>
        /// A fresh, short-lived link (Azure Blob storage, a SAS valid 30 minutes) to the result of
        /// command <paramref name="index"/> of a live response action; status NotReady while the
        /// command runs. Use it at once: it is a credential.
        /// </summary>
        public string GetLiveResponseResultUri(string actionId, int index, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            uint at = CheckIndex(index);
            return Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_get_live_response_result_uri(handle, id, at, out result);
            });
        }

        /// <summary>
        /// Downloads the result of command <paramref name="index"/> of a live response action to
        /// <paramref name="destination"/> (a file, or an existing folder, where it is named
        /// &lt;action id&gt;-&lt;index&gt; with the extension of the remote file, .json for a script
        /// transcript, and .gz added when the store sends it compressed), as atomically and checked as
        /// a package: on failure or cancellation no file is left.
        /// </summary>
        /// <param name="progress">Called with (bytes done, bytes total; 0 while unknown) on this thread; may be null.</param>
        public LiveResponseResult DownloadLiveResponseResult(string actionId, int index, string destination, Action<long, long> progress,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] id = Utf8.ToNative(actionId);
            uint at = CheckIndex(index);
            byte[] path = Utf8.ToNative(destination);
            NativeMethods.ProgressCallback onProgress = ProgressCallbackOf(progress);
            string json = Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_download_live_response_result(handle, id, at, path, onProgress, IntPtr.Zero, out result);
            });
            GC.KeepAlive(onProgress);
            return LiveResponseResult.FromJson(json);
        }

        /// <summary>
        /// Fetches files from devices into <paramref name="folder"/> (which must exist): for each
        /// request, a GetFile session on its device, a wait for it (within the option
        /// wait_timeout_ms), and its result downloaded, several at once. One item's failure does not
        /// stop the others: it is in that item's result. Handlers and cancellation as for
        /// <see cref="DownloadPackages"/>.
        /// </summary>
        /// <param name="progress">Called with (index, bytes done, bytes total; 0 while unknown) as an item's bytes arrive; may be null.</param>
        /// <param name="itemDone">Called with (index, result) as soon as an item is finished, in the order they finish; may be null.</param>
        /// <returns>One result per request, in the order of <paramref name="requests"/>.</returns>
        public IList<FileRetrievalResult> GetFiles(IList<FileRequest> requests, string folder, Action<int, long, long> progress,
            Action<int, FileRetrievalResult> itemDone, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (requests == null) throw new ArgumentNullException("requests");
            FileRequestJson[] items = new FileRequestJson[requests.Count];
            for (int i = 0; i < items.Length; i++)
            {
                if (requests[i] == null) throw new ArgumentException("Request " + i + " is null.", "requests");
                items[i] = new FileRequestJson { Machine = requests[i].Machine, Path = requests[i].Path };
            }
            byte[] json = Utf8.ToNative(Encoding.UTF8.GetString(Json.Write(items)));
            byte[] path = Utf8.ToNative(folder);
            return RunBatch(progress, itemDone, FileRetrievalResult.FromJson,
                delegate(NativeMethods.BatchProgressCallback onProgress, NativeMethods.BatchItemCallback onItemDone, out IntPtr result)
                {
                    return NativeMethods.defender_get_files(handle, json, path, onProgress, onItemDone, IntPtr.Zero, out result);
                }, cancellationToken);
        }

        [DataContract]
        sealed class FileRequestJson
        {
            [DataMember(Name = "machine", Order = 1)] public string Machine;
            [DataMember(Name = "path", Order = 2)] public string Path;
        }

        /// <summary>
        /// Puts the file at <paramref name="path"/> in the tenant's live response library, under its
        /// file name: a script for RunScript or a file for PutFile. <paramref name="description"/> is
        /// required; <paramref name="parametersDescription"/> may be null. A file of that name already
        /// there throws status Exists unless <paramref name="overrideIfExists"/>.
        /// </summary>
        public LibraryFile UploadLibraryFile(string path, string description, string parametersDescription, bool hasParameters,
            bool overrideIfExists, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] file = Utf8.ToNative(path);
            byte[] text = Utf8.ToNative(description);
            byte[] parameters = Utf8.ToNative(parametersDescription);
            return LibraryFile.FromJson(Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_upload_library_file(handle, file, text, parameters, hasParameters ? 1 : 0,
                    overrideIfExists ? 1 : 0, out result);
            }));
        }

        /// <summary>The files of the tenant's live response library.</summary>
        public IList<LibraryFile> GetLibraryFiles(CancellationToken cancellationToken = default(CancellationToken))
        {
            string text = Call(cancellationToken, delegate(out IntPtr result)
            {
                return NativeMethods.defender_list_library_files(handle, out result);
            });
            return Json.SplitArray(text).ConvertAll(LibraryFile.FromJson);
        }

        /// <summary>Removes a file from the tenant's live response library (status NotFound when it is not there).</summary>
        public void RemoveLibraryFile(string fileName, CancellationToken cancellationToken = default(CancellationToken))
        {
            byte[] name = Utf8.ToNative(fileName);
            Call(cancellationToken, delegate(out IntPtr result)
            {
                result = IntPtr.Zero;
                return NativeMethods.defender_delete_library_file(handle, name);
            });
        }

        static uint CheckIndex(int index)
        {
            if (index < 0) throw new ArgumentOutOfRangeException("index", index, "A command's index is 0 or more.");
            return (uint)index;
        }

        /// <summary>
        /// The keys <see cref="Set"/> takes, in the library's order (defender_option_name), for
        /// completion and help; <see cref="OptionDescription"/> says what each does.
        /// </summary>
        public static IList<string> OptionNames
        {
            get
            {
                List<string> names = new List<string>();
                foreach (KeyValuePair<string, string> option in Options()) names.Add(option.Key);
                return names.AsReadOnly();
            }
        }

        /// <summary>
        /// One line about option <paramref name="key"/>: what it does, what it takes and its
        /// default (defender_option_doc); null for a key the library does not have.
        /// </summary>
        public static string OptionDescription(string key)
        {
            foreach (KeyValuePair<string, string> option in Options())
                if (option.Key == key) return option.Value;
            return null;
        }

        // Each option's key and description, from the library.
        static IEnumerable<KeyValuePair<string, string>> Options()
        {
            for (uint i = 0; ; i++)
            {
                string name = Utf8.FromNative(NativeMethods.defender_option_name(new UIntPtr(i)));
                if (name == null) yield break;
                yield return new KeyValuePair<string, string>(name,
                    Utf8.FromNative(NativeMethods.defender_option_doc(new UIntPtr(i))));
            }
        }

        /// <summary>
        /// The library's name of a status ("NOT_FOUND", "RATE_LIMITED"; "UNKNOWN" for a number it
        /// does not have), as the C API and the command line name it.
        /// </summary>
        public static string StatusName(DefenderStatus status)
        {
            return Utf8.FromNative(NativeMethods.defender_status_name((int)status)) ?? "UNKNOWN";
        }

        /// <summary>
        /// <paramref name="value"/> as an OData string literal: in single quotes, each quote in it
        /// doubled, so that no value can change the filter it is put in.
        /// </summary>
        public static string ODataString(string value)
        {
            if (value == null) throw new ArgumentNullException("value");
            return "'" + value.Replace("'", "''") + "'";
        }

        static uint CheckMaxItems(int maxItems)
        {
            if (maxItems < 0) throw new ArgumentOutOfRangeException("maxItems", maxItems, "maxItems is 0 (no limit) or more.");
            return (uint)maxItems;
        }

        public void Dispose()
        {
            handle.Dispose();
        }

        delegate DefenderStatus NativeCall(out IntPtr result);

        // Runs one native call on this thread: cancellation, callback failures, the returned
        // string taken and freed, the status turned into an exception.
        string Call(CancellationToken cancellationToken, NativeCall call)
        {
            // The library cancels the calls in flight only: a token cancelled before the call
            // starts would otherwise be noticed only at its first callback.
            cancellationToken.ThrowIfCancellationRequested();
            IntPtr result = IntPtr.Zero;
            DefenderStatus status;
            callbackFailure = null;
            callCancellation = cancellationToken;
            CancellationTokenRegistration registration = cancellationToken.Register(CancelQuietly);
            try
            {
                status = call(out result);
            }
            finally
            {
                registration.Dispose();
                callCancellation = CancellationToken.None;
            }
            // The message belongs to this thread's last call: read it before anything else.
            DefenderException failure = status == DefenderStatus.Ok ? null : LastError(status);
            string text = Utf8.TakeNative(result);
            Exception thrownByCallback = callbackFailure;
            callbackFailure = null;
            if (thrownByCallback != null) ExceptionDispatchInfo.Capture(thrownByCallback).Throw();
            if (failure != null)
            {
                if (failure.Status == DefenderStatus.Cancelled && cancellationToken.IsCancellationRequested)
                    throw new OperationCanceledException(failure.Message, failure, cancellationToken);
                throw failure;
            }
            return text;
        }

        void CancelQuietly()
        {
            NativeMethods.defender_client_cancel(handle);
        }

        int OnPhase(IntPtr userData, ref NativeMethods.PhaseEventData data)
        {
            try
            {
                Action<PhaseEvent> handler = phaseHandler;
                if (handler == null) return callCancellation.IsCancellationRequested ? 1 : 0;
                PhaseEvent phase = new PhaseEvent(ref data);
                HandlerRelay relay = HandlerRelay.Current;
                if (relay != null)
                {
                    relay.Post(delegate { handler(phase); });
                    return relay.Failed ? 1 : 0;
                }
                handler(phase);
            }
            catch (Exception e)
            {
                if (callbackFailure == null) callbackFailure = e;
            }
            return callbackFailure != null || callCancellation.IsCancellationRequested ? 1 : 0;
        }

        // Runs on the thread that made the call (for DownloadPackages, its helper thread: the
        // signer is .NET code that may run on any thread, never a script block).
        int OnSignAssertion(IntPtr userData, IntPtr audience, IntPtr clientId, IntPtr buffer, UIntPtr capacity)
        {
            try
            {
                Func<string, string, string> signer = assertionSigner;
                if (signer == null) return 1;
                byte[] assertion = Utf8.ToNative(signer(Utf8.FromNative(audience), Utf8.FromNative(clientId)));
                if (assertion == null || (ulong)assertion.Length > capacity.ToUInt64()) return 2;
                Marshal.Copy(assertion, 0, buffer, assertion.Length);
                Array.Clear(assertion, 0, assertion.Length);
                return 0;
            }
            catch (Exception e)
            {
                if (callbackFailure == null)
                    callbackFailure = new DefenderException(DefenderStatus.Unauthorized,
                        "Signing a client assertion failed: " + e.Message);
                return 1;
            }
        }

        void OnLog(IntPtr userData, DefenderLogLevel level, IntPtr message)
        {
            try
            {
                HandlerRelay relay = HandlerRelay.Current;
                if (relay != null)
                {
                    relay.PostLog(level, Utf8.FromNative(message));
                    return;
                }
                if (callCancellation.IsCancellationRequested) CancelQuietly();
                Action<DefenderLogLevel, string> handler = logHandler;
                if (handler != null) handler(level, Utf8.FromNative(message));
            }
            catch (Exception e)
            {
                if (callbackFailure == null) callbackFailure = e;
                CancelQuietly();
            }
        }

        static void Check(DefenderStatus status)
        {
            if (status != DefenderStatus.Ok) throw LastError(status);
        }

        static DefenderException LastError(DefenderStatus status)
        {
            int length = (int)NativeMethods.defender_last_error_message(null, UIntPtr.Zero);
            byte[] buffer = new byte[length + 1];
            NativeMethods.defender_last_error_message(buffer, new UIntPtr((uint)buffer.Length));
            string message = Encoding.UTF8.GetString(buffer, 0, length);
            if (message.Length == 0) message = "The defender library failed with status " + StatusName(status) + ".";
            return new DefenderException(status, message);
        }
    }

    /// <summary>
    /// Runs a native call on a helper thread while the calling thread runs, one at a time and in
    /// order, the handlers that the call's callbacks post. So the handlers run on the caller's
    /// thread (which PowerShell requires) but outside the native call: they may call the
    /// library (a callback may not), and what they throw never meets native frames.
    /// </summary>
    sealed class HandlerRelay
    {
        // The relay whose native call runs on this (helper) thread, for the client's log callback.
        [ThreadStatic] internal static HandlerRelay Current;

        readonly Queue<Action> pending = new Queue<Action>();
        readonly Action<DefenderLogLevel, string> logHandler;
        readonly Action cancel;
        bool workDone;
        Exception failure;
        volatile bool failed;

        /// <param name="logHandler">Receives the call's log lines on the calling thread; may be null.</param>
        /// <param name="cancel">Cancels the native call (from any thread) when a handler or callback fails.</param>
        internal HandlerRelay(Action<DefenderLogLevel, string> logHandler, Action cancel)
        {
            this.logHandler = logHandler;
            this.cancel = cancel;
        }

        /// <summary>A handler or callback failed: the call is being cancelled and no handler runs any more.</summary>
        internal bool Failed
        {
            get { return failed; }
        }

        /// <summary>
        /// From either thread: <paramref name="exception"/> ends the call. The first one is rethrown
        /// by <see cref="Run"/>; the call is cancelled.
        /// </summary>
        internal void Fail(Exception exception)
        {
            lock (pending)
            {
                if (failure == null) failure = exception;
            }
            failed = true;
            try
            {
                cancel();
            }
            catch (ObjectDisposedException)
            {
                // The client was disposed during its call: nothing is left to cancel.
            }
        }

        /// <summary>From the helper thread: runs <paramref name="handler"/> on the calling thread.</summary>
        internal void Post(Action handler)
        {
            lock (pending)
            {
                pending.Enqueue(handler);
                Monitor.Pulse(pending);
            }
        }

        internal void PostLog(DefenderLogLevel level, string message)
        {
            Action<DefenderLogLevel, string> handler = logHandler;
            if (handler != null) Post(delegate { handler(level, message); });
        }

        /// <summary>
        /// Runs <paramref name="work"/> on a helper thread and the handlers it posts on this one,
        /// until it has returned and every handler has run; then rethrows the first exception a
        /// handler or callback failed with, else the one <paramref name="work"/> threw, else
        /// returns its result.
        /// </summary>
        internal T Run<T>(Func<T> work)
        {
            T result = default(T);
            ExceptionDispatchInfo workFailure = null;
            Thread helper = new Thread(delegate()
            {
                Current = this;
                try
                {
                    result = work();
                }
                catch (Exception e)
                {
                    workFailure = ExceptionDispatchInfo.Capture(e);
                }
                finally
                {
                    Current = null;
                    lock (pending)
                    {
                        workDone = true;
                        Monitor.Pulse(pending);
                    }
                }
            });
            helper.IsBackground = true;
            helper.Name = "defender call";
            helper.Start();
            for (Action handler = Next(); handler != null; handler = Next())
            {
                if (failed) continue;
                try
                {
                    handler();
                }
                catch (Exception e)
                {
                    Fail(e);
                }
            }
            helper.Join();
            if (failure != null) ExceptionDispatchInfo.Capture(failure).Throw();
            if (workFailure != null) workFailure.Throw();
            return result;
        }

        // The next handler, or null once the work is done and every handler has been taken.
        Action Next()
        {
            lock (pending)
            {
                while (pending.Count == 0 && !workDone) Monitor.Wait(pending);
                return pending.Count > 0 ? pending.Dequeue() : null;
            }
        }
    }

    /// <summary>
    /// A signed client assertion (RFC 7523 JWT, RS256) for signing in with a certificate whose
    /// private key stays where it is (a certificate store, a smart card): pass it as the
    /// client_assertion option.
    /// </summary>
    public static class ClientAssertion
    {
        [DataContract]
        sealed class Header
        {
            [DataMember(Name = "alg", Order = 1)] public string Algorithm = "RS256";
            [DataMember(Name = "typ", Order = 2)] public string Type = "JWT";
            [DataMember(Name = "x5t", Order = 3)] public string Thumbprint;
        }

        [DataContract]
        sealed class Claims
        {
            [DataMember(Name = "aud", Order = 1)] public string Audience;
            [DataMember(Name = "iss", Order = 2)] public string Issuer;
            [DataMember(Name = "sub", Order = 3)] public string Subject;
            [DataMember(Name = "jti", Order = 4)] public string Id;
            [DataMember(Name = "nbf", Order = 5)] public long NotBefore;
            [DataMember(Name = "exp", Order = 6)] public long Expires;
        }

        /// <summary>
        /// An assertion for app <paramref name="clientId"/>, for the token endpoint
        /// <paramref name="audience"/> (DefenderClient.GetAssertionAudience), valid from now for
        /// <paramref name="lifetime"/>.
        /// </summary>
        public static string Create(X509Certificate2 certificate, string audience, string clientId, TimeSpan lifetime)
        {
            if (certificate == null) throw new ArgumentNullException("certificate");
            if (audience == null) throw new ArgumentNullException("audience");
            if (clientId == null) throw new ArgumentNullException("clientId");
            using (RSA key = certificate.GetRSAPrivateKey())
            {
                if (key == null)
                    throw new ArgumentException("Certificate " + certificate.Thumbprint +
                        " has no RSA private key that this process can use.", "certificate");
                long now = (long)(DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
                Header header = new Header { Thumbprint = Base64Url(certificate.GetCertHash()) };
                Claims claims = new Claims
                {
                    Audience = audience,
                    Issuer = clientId,
                    Subject = clientId,
                    Id = Guid.NewGuid().ToString(),
                    NotBefore = now,
                    Expires = now + (long)lifetime.TotalSeconds,
                };
                string signed = Base64Url(Json.Write(header)) + "." + Base64Url(Json.Write(claims));
                byte[] signature = key.SignData(Encoding.ASCII.GetBytes(signed), HashAlgorithmName.SHA256,
                    RSASignaturePadding.Pkcs1);
                return signed + "." + Base64Url(signature);
            }
        }

        static string Base64Url(byte[] bytes)
        {
            return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        }
    }

    static class Json
    {
        internal static T Parse<T>(string text)
        {
            try
            {
                using (MemoryStream stream = new MemoryStream(Encoding.UTF8.GetBytes(text)))
                    return (T)new DataContractJsonSerializer(typeof(T)).ReadObject(stream);
            }
            catch (SerializationException e)
            {
                throw new DefenderException(DefenderStatus.Protocol,
                    "The defender library returned JSON that is not a " + typeof(T).Name + ": " + e.Message);
            }
        }

        // The elements of a JSON array, each as its own text (the library returns lists as one
        // array; each element keeps its whole JSON, as a single object does).
        internal static List<string> SplitArray(string text)
        {
            List<string> items = new List<string>();
            int i = SkipSpace(text, 0);
            if (i >= text.Length || text[i] != '[')
                throw new DefenderException(DefenderStatus.Protocol, "The defender library returned a list that is not a JSON array.");
            int depth = 0, start = -1;
            bool inString = false;
            for (i++; i < text.Length; i++)
            {
                char c = text[i];
                if (inString)
                {
                    if (c == '\\') i++;
                    else if (c == '"') inString = false;
                    continue;
                }
                if (start < 0 && !char.IsWhiteSpace(c) && c != ',' && c != ']') start = i;
                switch (c)
                {
                    case '"': inString = true; break;
                    case '{': case '[': depth++; break;
                    case '}': depth--; break;
                    case ']':
                        if (depth-- > 0) break;
                        if (start >= 0) items.Add(text.Substring(start, i - start).TrimEnd());
                        return items;
                    case ',':
                        if (depth > 0) break;
                        items.Add(text.Substring(start, i - start).TrimEnd());
                        start = -1;
                        break;
                }
            }
            throw new DefenderException(DefenderStatus.Protocol, "The defender library returned a JSON array that does not end.");
        }

        static int SkipSpace(string text, int i)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i])) i++;
            return i;
        }

        internal static byte[] Write<T>(T value)
        {
            using (MemoryStream stream = new MemoryStream())
            {
                new DataContractJsonSerializer(typeof(T)).WriteObject(stream, value);
                return stream.ToArray();
            }
        }
    }

    // NUL-terminated UTF-8 strings to and from the library.
    static class Utf8
    {
        internal static byte[] ToNative(string text)
        {
            if (text == null) return null;
            byte[] bytes = new byte[Encoding.UTF8.GetByteCount(text) + 1];
            Encoding.UTF8.GetBytes(text, 0, text.Length, bytes, 0);
            return bytes;
        }

        internal static string FromNative(IntPtr text)
        {
            if (text == IntPtr.Zero) return null;
            int length = 0;
            while (Marshal.ReadByte(text, length) != 0) length++;
            byte[] bytes = new byte[length];
            Marshal.Copy(text, bytes, 0, length);
            return Encoding.UTF8.GetString(bytes);
        }

        // A NUL-terminated UTF-8 copy of `text` in unmanaged memory (free it with FreeHGlobal), or
        // IntPtr.Zero for null: for strings inside arrays, which the marshaller does not convert.
        internal static IntPtr ToUnmanaged(string text)
        {
            byte[] bytes = ToNative(text);
            if (bytes == null) return IntPtr.Zero;
            IntPtr copy = Marshal.AllocHGlobal(bytes.Length);
            Marshal.Copy(bytes, 0, copy, bytes.Length);
            return copy;
        }

        // A size_t index from the library as an index into a .NET list (which has fewer than 2^31 items).
        internal static int Index(UIntPtr index)
        {
            return (int)index.ToUInt64();
        }

        // A string the library returned, copied and freed with defender_string_free.
        internal static string TakeNative(IntPtr text)
        {
            try
            {
                return FromNative(text);
            }
            finally
            {
                NativeMethods.defender_string_free(text);
            }
        }

        // Encodes `length` UTF-16 units at `utf16` into a new NUL-terminated UTF-8 buffer
        // (AllocHGlobal), without a managed copy of the text that would outlive the call.
        internal static IntPtr FromUtf16Unmanaged(IntPtr utf16, int length, out int utf8Length)
        {
            Encoder encoder = Encoding.UTF8.GetEncoder();
            char[] chars = new char[length];
            byte[] bytes = null;
            GCHandle pinnedChars = GCHandle.Alloc(chars, GCHandleType.Pinned);
            GCHandle pinnedBytes = default(GCHandle);
            try
            {
                Marshal.Copy(utf16, chars, 0, length);
                utf8Length = encoder.GetByteCount(chars, 0, length, true) + 1;
                bytes = new byte[utf8Length];
                pinnedBytes = GCHandle.Alloc(bytes, GCHandleType.Pinned);
                encoder.GetBytes(chars, 0, length, bytes, 0, true);
                IntPtr utf8 = Marshal.AllocHGlobal(utf8Length);
                Marshal.Copy(bytes, 0, utf8, utf8Length);
                return utf8;
            }
            finally
            {
                Array.Clear(chars, 0, chars.Length);
                pinnedChars.Free();
                if (bytes != null) Array.Clear(bytes, 0, bytes.Length);
                if (pinnedBytes.IsAllocated) pinnedBytes.Free();
            }
        }

        internal static void Wipe(IntPtr buffer, int length)
        {
            for (int i = 0; i < length; i++) Marshal.WriteByte(buffer, i, 0);
        }
    }

    /// <summary>Owns a DefenderClient pointer and frees it with defender_client_free.</summary>
    public sealed class ClientHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public ClientHandle()
            : base(true)
        {
        }

        protected override bool ReleaseHandle()
        {
            NativeMethods.defender_client_free(handle);
            return true;
        }
    }

    static class NativeMethods
    {
        const CallingConvention Cdecl = CallingConvention.Cdecl;

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int ProgressCallback(IntPtr userData, ulong bytesDone, ulong bytesTotal);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void LogCallback(IntPtr userData, DefenderLogLevel level, IntPtr message);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int BatchProgressCallback(IntPtr userData, UIntPtr index, ulong bytesDone, ulong bytesTotal);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate void BatchItemCallback(IntPtr userData, UIntPtr index, DefenderStatus status, IntPtr itemJson);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int PhaseCallback(IntPtr userData, ref PhaseEventData phaseEvent);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int AssertionCallback(IntPtr userData, IntPtr audience, IntPtr clientId, IntPtr assertionOut,
            UIntPtr assertionCapacity);

        // DefenderPhaseEvent, field for field.
        [StructLayout(LayoutKind.Sequential)]
        internal struct PhaseEventData
        {
            internal int Phase;
            internal UIntPtr Index;
            internal ulong ElapsedMilliseconds;
            internal ulong RemainingMilliseconds;
            internal ulong BytesDone;
            internal ulong BytesTotal;
            internal ulong BytesPerSecond;
            internal uint QueuePosition;
            internal uint Attempt;
            internal IntPtr Detail;
        }

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern IntPtr defender_version();

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern void defender_string_free(IntPtr text);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern UIntPtr defender_last_error_message(byte[] buffer, UIntPtr bufferLength);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_new(out ClientHandle client);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern void defender_client_free(IntPtr client);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_clone(ClientHandle client, out ClientHandle clone);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_set_phase_callback(ClientHandle client, PhaseCallback callback,
            IntPtr userData);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_set_assertion_callback(ClientHandle client,
            AssertionCallback callback, IntPtr userData);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_set(ClientHandle client, byte[] key, byte[] value);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_set(ClientHandle client, byte[] key, IntPtr value);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_assertion_audience(ClientHandle client, out IntPtr audience);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_set_log_callback(ClientHandle client, LogCallback callback,
            IntPtr userData);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_cancel(ClientHandle client);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_sign_in(ClientHandle client);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_client_connection_info(ClientHandle client, out IntPtr infoJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_get_package_uri(ClientHandle client, byte[] actionId, out IntPtr uri);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_download_package(ClientHandle client, byte[] actionId,
            byte[] destination, ProgressCallback progress, IntPtr userData, out IntPtr resultJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_download_packages(ClientHandle client, IntPtr[] actionIds,
            UIntPtr count, byte[] destinationFolder, BatchProgressCallback progress, BatchItemCallback itemDone,
            IntPtr userData, out IntPtr resultsJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_get_machine_action(ClientHandle client, byte[] actionId,
            out IntPtr actionJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_collect_investigation_package(ClientHandle client,
            byte[] machineId, byte[] comment, out IntPtr actionJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_wait_for_action(ClientHandle client, byte[] actionId,
            out IntPtr actionJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_get_machine(ClientHandle client, byte[] machineIdOrName,
            out IntPtr machineJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_list_machines(ClientHandle client, byte[] odataFilter,
            uint maxItems, out IntPtr machinesJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_list_machine_actions(ClientHandle client, byte[] odataFilter,
            uint maxItems, out IntPtr actionsJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_cancel_machine_action(ClientHandle client, byte[] actionId,
            byte[] comment, out IntPtr actionJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_run_live_response(ClientHandle client, byte[] machineIdOrName,
            byte[] commandsJson, byte[] comment, out IntPtr actionJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_get_live_response_result_uri(ClientHandle client, byte[] actionId,
            uint index, out IntPtr uri);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_download_live_response_result(ClientHandle client, byte[] actionId,
            uint index, byte[] destination, ProgressCallback progress, IntPtr userData, out IntPtr resultJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_get_files(ClientHandle client, byte[] requestsJson,
            byte[] destinationFolder, BatchProgressCallback progress, BatchItemCallback itemDone, IntPtr userData,
            out IntPtr resultsJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_upload_library_file(ClientHandle client, byte[] path, byte[] description,
            byte[] parametersDescription, int hasParameters, int overrideIfExists, out IntPtr libraryFileJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_list_library_files(ClientHandle client, out IntPtr libraryFilesJson);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern DefenderStatus defender_delete_library_file(ClientHandle client, byte[] fileName);

        // A static string: never freed.
        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern IntPtr defender_status_name(int status);

        // Static strings, NULL past the last option: never freed.
        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern IntPtr defender_option_name(UIntPtr index);

        [DllImport(DefenderLibrary.Name, CallingConvention = Cdecl)]
        internal static extern IntPtr defender_option_doc(UIntPtr index);

        [DllImport("kernel32", CharSet = CharSet.Unicode, SetLastError = true)]
        internal static extern IntPtr LoadLibraryW(string path);
    }
}
