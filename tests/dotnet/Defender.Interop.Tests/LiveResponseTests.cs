using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text;
using Defender;
using Xunit;

namespace Defender.Interop.Tests;

/// <summary>
/// Live Response through the binding against the simulator, whose results are in Azurite: files
/// off devices, script transcripts, failed commands, waits for a session, the library.
/// </summary>
[Collection(LiveResponseCollection.Name)]
public sealed class LiveResponseTests : IDisposable
{
    readonly LiveResponseSimulator simulator;
    readonly string folder = Directory.CreateTempSubdirectory("defender-lr-").FullName;
    // Names of this test's own devices and library files: the simulator is shared.
    readonly string prefix = "lr-" + Guid.NewGuid().ToString("N")[..8];

    public LiveResponseTests(LiveResponseSimulator simulator) => this.simulator = simulator;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    string AddMachine(string name)
    {
        string id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        simulator.Control(HttpMethod.Post, "machines", new
        {
            id,
            computer_dns_name = $"{prefix}-{name}.contoso.test",
            health_status = "Active",
            rbac_group_name = "Workstations",
            rbac_group_id = 1,
            machine_tags = Array.Empty<string>(),
            last_seen = DateTime.UtcNow.ToString("o"),
        });
        return id;
    }

    /// <summary>
    /// A client that waits for sessions as a caller of the binding sets it: up to ten simulated
    /// minutes (the clock runs 60 times faster: 10 s).
    /// </summary>
    DefenderClient Client()
    {
        DefenderClient client = simulator.Client();
        client.Set("wait_timeout_ms", "600000");
        return client;
    }

    byte[] Stored(string actionId, int index) =>
        new HttpClient().GetByteArrayAsync($"{simulator.BaseUrl}/_sim/live_response/{actionId}/{index}").Result;

    static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    string Publish(DefenderClient client, string name, string text = "Write-Output 'triage'")
    {
        string path = Path.Combine(folder, name);
        File.WriteAllText(path, text);
        client.UploadLibraryFile(path, "Pester and xunit: " + name, null, false, true);
        return name;
    }

    [Fact]
    public void A_GetFile_session_is_waited_for_and_its_file_saved_as_the_store_holds_it()
    {
        string device = AddMachine("getfile");
        using DefenderClient client = Client();
        var phases = new List<DefenderPhase>();
        client.PhaseHandler = phase => phases.Add(phase.Phase);
        var thread = Environment.CurrentManagedThreadId;
        var progressThreads = new HashSet<int>();

        MachineAction session = client.RunLiveResponse(device,
            new[] { LiveResponseCommand.GetFile(@"C:\Windows\Temp\dropper.exe") }, "xunit: getfile");
        LiveResponseResult saved = client.DownloadLiveResponseResult(session.Id, 0, folder,
            (done, total) => progressThreads.Add(Environment.CurrentManagedThreadId));

        Assert.Equal("LiveResponse", session.Type);
        Assert.Equal("Succeeded", session.Status);
        LiveResponseCommandState command = Assert.Single(session.Commands);
        Assert.Equal(0, command.Index);
        Assert.Equal("Completed", command.CommandStatus);
        Assert.Equal("GetFile", command.Type);
        Assert.Empty(command.Errors);
        Assert.Contains(new KeyValuePair<string, string>("Path", @"C:\Windows\Temp\dropper.exe"), command.Command.Parameters);

        byte[] stored = Stored(session.Id, 0);
        Assert.Equal(Path.Combine(folder, $"{session.Id}-0.exe"), saved.Path);
        Assert.Equal(stored.Length, saved.Bytes);
        Assert.Equal(Sha256(stored), saved.Sha256);
        Assert.Equal(Sha256(File.ReadAllBytes(saved.Path)), saved.Sha256);
        Assert.Equal(0, saved.ResumedFrom);
        Assert.Equal("GetFile", saved.CommandType);
        Assert.Null(saved.ContentEncoding);
        Assert.Equal(session.Id, saved.ActionId);
        Assert.Equal(new[] { thread }, progressThreads);
        Assert.Contains(DefenderPhase.Downloading, phases);
    }

    [Fact]
    public void The_result_link_is_the_stores_with_a_SAS_and_a_failure_never_shows_it()
    {
        string device = AddMachine("link");
        using DefenderClient client = Client();
        MachineAction session = client.RunLiveResponse(device, "[{\"type\":\"GetFile\",\"params\":[{\"key\":\"Path\",\"value\":\"C:\\\\x.log\"}]}]", null);

        string link = client.GetLiveResponseResultUri(session.Id, 0);

        Assert.StartsWith(simulator.BlobAccount + "/", link);
        Assert.Contains("sig=", link);
        var missing = Assert.Throws<DefenderException>(() => client.GetLiveResponseResultUri(session.Id, 5));
        Assert.DoesNotContain("sig=", missing.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => client.GetLiveResponseResultUri(session.Id, -1));
    }

    [Fact]
    public void A_RunScript_transcript_is_read_into_exit_code_output_and_errors()
    {
        string device = AddMachine("script");
        using DefenderClient client = Client();
        string good = Publish(client, $"{prefix}-triage.ps1");
        string failing = Publish(client, $"fail-{prefix}.ps1");

        MachineAction ran = client.RunLiveResponse(device, new[]
        {
            LiveResponseCommand.RunScript(good, "-Quick"),
            LiveResponseCommand.RunScript(failing, null),
        }, "xunit: scripts");
        LiveResponseResult first = client.DownloadLiveResponseResult(ran.Id, 0, folder, null);
        ScriptTranscript transcript = first.ReadTranscript();
        ScriptTranscript failed = client.DownloadLiveResponseResult(ran.Id, 1, folder, null).ReadTranscript();

        Assert.Equal("RunScript", first.CommandType);
        Assert.EndsWith($"{ran.Id}-0.json", first.Path);
        Assert.Equal(good, transcript.ScriptName);
        Assert.Equal(0, transcript.ExitCode);
        Assert.Contains("-Quick", transcript.Output);
        Assert.Equal("", transcript.Errors);
        Assert.Equal(1, failed.ExitCode);
        Assert.NotEqual("", failed.Errors);
    }

    [Fact]
    public void A_transcript_is_read_also_when_it_was_kept_gzip_compressed()
    {
        string json = "{\"script_name\":\"t.ps1\",\"exit_code\":3,\"script_output\":\"out\\n\",\"script_errors\":\"err\\n\"}";
        string path = Path.Combine(folder, "t.json.gz");
        using (var file = File.Create(path))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
            gzip.Write(Encoding.UTF8.GetBytes(json));

        ScriptTranscript transcript = ScriptTranscript.Load(path);

        Assert.Equal(("t.ps1", 3, "out\n", "err\n"), (transcript.ScriptName, transcript.ExitCode, transcript.Output, transcript.Errors));
        File.WriteAllText(path, "not a transcript");
        Assert.Equal(DefenderStatus.Protocol, Assert.Throws<DefenderException>(() => ScriptTranscript.Load(path)).Status);
    }

    [Fact]
    public void A_failed_command_is_ActionFailed_with_its_errors_in_the_message()
    {
        string device = AddMachine("missing");
        using DefenderClient client = Client();

        var failed = Assert.Throws<DefenderException>(() =>
            client.RunLiveResponse(device, new[] { LiveResponseCommand.GetFile(@"C:\missing\x.log") }, null));

        Assert.Equal(DefenderStatus.ActionFailed, failed.Status);
        Assert.Contains(@"File C:\missing\x.log was not found on the device.", failed.Message);
    }

    [Fact]
    public void Commands_are_checked_before_any_request()
    {
        using DefenderClient client = Client();
        string device = AddMachine("checked");
        int before = simulator.Requests("run_live_response").Count;

        var notAnArray = Assert.Throws<DefenderException>(() => client.RunLiveResponse(device, "{\"type\":\"GetFile\"}", null));

        Assert.Equal(DefenderStatus.InvalidArgument, notAnArray.Status);
        Assert.Equal(before, simulator.Requests("run_live_response").Count);
        Assert.Throws<ArgumentException>(() => new LiveResponseCommand(""));
        Assert.Equal("[{\"type\":\"GetFile\",\"params\":[{\"key\":\"Path\",\"value\":\"C:\\\\a b.log\"}]}]",
            LiveResponseCommand.ToJson(new[] { LiveResponseCommand.GetFile(@"C:\a b.log") }));
    }

    [Fact]
    public void A_device_busy_with_another_session_is_waited_for_and_the_wait_is_a_phase()
    {
        string device = AddMachine("busy");
        using DefenderClient client = Client();
        simulator.Control(HttpMethod.Post, "config", new { live_response_schedule = new { pending_secs = 30, in_progress_secs = 60 } });
        MachineAction first;
        try
        {
            using (DefenderClient start = Client())
            {
                start.Set("wait_timeout_ms", "0");
                first = start.RunLiveResponse(device, new[] { LiveResponseCommand.GetFile(@"C:\first.log") }, null);
            }
        }
        finally
        {
            simulator.Control(HttpMethod.Post, "config", new { live_response_schedule = new { pending_secs = 2, in_progress_secs = 10 } });
        }
        var waits = new List<PhaseEvent>();
        client.PhaseHandler = phase => { if (phase.Phase == DefenderPhase.WaitingForSession) waits.Add(phase); };

        MachineAction second = client.RunLiveResponse(device, new[] { LiveResponseCommand.GetFile(@"C:\second.log") }, null);

        Assert.NotEqual(first.Id, second.Id);
        Assert.Equal("Succeeded", second.Status);
        Assert.NotEmpty(waits);
        Assert.NotEqual("", waits[0].Detail);
        Assert.Equal("Succeeded", client.GetMachineAction(first.Id).Status);
    }

    [Fact]
    public void GetFiles_fetches_from_several_devices_and_reports_each_item_as_it_ends()
    {
        string one = AddMachine("batch-1");
        string two = AddMachine("batch-2");
        using DefenderClient client = Client();
        var requests = new[]
        {
            new FileRequest(one, @"C:\Windows\Temp\a.log"),
            new FileRequest($"{prefix}-batch-2.contoso.test", @"C:\Windows\Temp\b.dll"),
            new FileRequest(two, @"C:\missing.txt"),
        };
        var reported = new Dictionary<int, FileRetrievalResult>();
        var thread = Environment.CurrentManagedThreadId;
        var threads = new HashSet<int>();

        IList<FileRetrievalResult> results = client.GetFiles(requests, folder, null, (index, item) =>
        {
            threads.Add(Environment.CurrentManagedThreadId);
            reported.Add(index, item);
        });

        Assert.Equal(3, results.Count);
        Assert.Equal(new[] { 0, 1, 2 }, reported.Keys.Order());
        Assert.Equal(new[] { thread }, threads);
        for (int i = 0; i < 2; i++)
        {
            FileRetrievalResult saved = results[i];
            Assert.True(saved.Succeeded, saved.Message);
            Assert.Equal(requests[i].Path, saved.RemotePath);
            Assert.Equal(requests[i].Machine, saved.Machine);
            Assert.Equal(Sha256(Stored(saved.ActionId, 0)), saved.Sha256);
            Assert.Equal(Sha256(File.ReadAllBytes(saved.Path)), saved.Sha256);
            Assert.Equal(reported[i].Sha256, saved.Sha256);
        }
        Assert.EndsWith(".dll", results[1].Path);
        Assert.Equal(DefenderStatus.ActionFailed, results[2].Status);
        Assert.Contains("not found", results[2].Message);
        Assert.Null(results[2].Path);
    }

    [Fact]
    public void The_library_takes_lists_refuses_a_second_upload_without_override_and_removes()
    {
        using DefenderClient client = Client();
        string path = Path.Combine(folder, $"{prefix}-collect.ps1");
        File.WriteAllText(path, "param([switch] $Quick)");

        LibraryFile uploaded = client.UploadLibraryFile(path, "Collects things", "-Quick: less", true, false);
        var again = Assert.Throws<DefenderException>(() => client.UploadLibraryFile(path, "again", null, false, false));
        LibraryFile replaced = client.UploadLibraryFile(path, "Collects more", null, false, true);
        LibraryFile listed = client.GetLibraryFiles().Single(file => file.FileName == $"{prefix}-collect.ps1");
        client.RemoveLibraryFile($"{prefix}-collect.ps1");
        var gone = Assert.Throws<DefenderException>(() => client.RemoveLibraryFile($"{prefix}-collect.ps1"));

        Assert.Equal($"{prefix}-collect.ps1", uploaded.FileName);
        Assert.Equal("Collects things", uploaded.Description);
        Assert.True(uploaded.HasParameters);
        Assert.Equal("-Quick: less", uploaded.ParametersDescription);
        Assert.Equal(Sha256(File.ReadAllBytes(path)), uploaded.Sha256);
        Assert.Equal(DefenderStatus.Exists, again.Status);
        Assert.Equal("Collects more", replaced.Description);
        Assert.Equal("Collects more", listed.Description);
        Assert.Contains(listed.FileName, listed.Json);
        Assert.DoesNotContain(client.GetLibraryFiles(), file => file.FileName == $"{prefix}-collect.ps1");
        Assert.Equal(DefenderStatus.NotFound, gone.Status);
    }
}
