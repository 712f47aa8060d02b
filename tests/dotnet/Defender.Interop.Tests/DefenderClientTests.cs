using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Http;
using System.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Linq;
using System.Threading;
using Defender;
using Xunit;

namespace Defender.Interop.Tests;

/// <summary>The C# binding, driving the real native library against the simulator over loopback HTTP.</summary>
[Collection(SimulatorCollection.Name)]
public sealed class DefenderClientTests : IDisposable
{
    readonly Simulator simulator;
    readonly string folder = Directory.CreateTempSubdirectory("defender-csharp-").FullName;

    public DefenderClientTests(Simulator simulator) => this.simulator = simulator;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void The_library_is_loaded_once_from_the_build_output()
    {
        Assert.EndsWith(Path.Combine("debug", DefenderLibrary.FileName), DefenderLibrary.LoadedPath);
        Assert.Matches(@"^\d+\.\d+\.\d+", DefenderLibrary.Version);
        Assert.Matches(@"^(win|linux|osx)-(x64|x86|arm64|arm)$", DefenderLibrary.RuntimeIdentifier);

        DefenderLibrary.Load(DefenderLibrary.LoadedPath);
        var other = Path.Combine(folder, DefenderLibrary.FileName);
        var refused = Assert.Throws<InvalidOperationException>(() => DefenderLibrary.Load(other));
        Assert.Contains(DefenderLibrary.LoadedPath, refused.Message);
        Assert.Contains(other, refused.Message);
    }

    [Fact]
    public void DownloadPackage_saves_the_package_as_the_host_serves_it_with_progress_on_the_calling_thread()
    {
        string id = simulator.CreateAction();
        using DefenderClient client = simulator.Client();
        int caller = Environment.CurrentManagedThreadId;
        var progress = new List<(long Done, long Total, int Thread)>();

        DownloadedPackage package = client.DownloadPackage(id, folder, (done, total) => progress.Add((done, total, Environment.CurrentManagedThreadId)));

        byte[] expected = simulator.Package(id);
        string path = Path.Combine(folder, id + ".zip");
        Assert.Equal(expected, File.ReadAllBytes(path));
        Assert.Equal(path, package.Path);
        Assert.Equal(id, package.ActionId);
        Assert.Equal(Simulator.PackageSize, package.Bytes);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(expected)), package.Sha256);
        Assert.True(package.Elapsed >= TimeSpan.Zero);
        Assert.NotEmpty(progress);
        Assert.All(progress, report => Assert.Equal(caller, report.Thread));
        Assert.Equal((Simulator.PackageSize, Simulator.PackageSize), (progress[^1].Done, progress[^1].Total));
        Assert.Equal(new[] { id + ".zip" }, Directory.GetFiles(folder).Select(Path.GetFileName));
    }

    [Fact]
    public void A_download_resumed_from_what_a_killed_one_left_says_so_in_ResumedFrom()
    {
        string id = simulator.CreateAction();
        using DefenderClient client = simulator.Client();
        byte[] expected = simulator.Package(id);
        // What a process killed mid-download leaves beside the destination (docs/downloads.md):
        // the first bytes in ".<name>.part", and the record of the package they belong to.
        string etag;
        using (var http = new HttpClient())
        using (var request = new HttpRequestMessage(HttpMethod.Head, client.GetPackageUri(id)))
        {
            etag = http.Send(request).Headers.ETag!.ToString();
        }
        const int kept = 300_000;
        File.WriteAllBytes(Path.Combine(folder, "." + id + ".zip.part"), expected[..kept]);
        File.WriteAllText(Path.Combine(folder, "." + id + ".zip.part.json"),
            System.Text.Json.JsonSerializer.Serialize(new { format = 1, action_id = id, length = expected.Length, etag, last_modified = (string)null, md5 = (string)null }));

        DownloadedPackage package = client.DownloadPackage(id, folder, null);

        Assert.Equal(kept, package.ResumedFrom);
        Assert.Equal(expected, File.ReadAllBytes(package.Path));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(expected)), package.Sha256);
        Assert.Equal(new[] { id + ".zip" }, Directory.GetFiles(folder).Select(Path.GetFileName));
        Assert.Equal("bytes=300000-", (string)simulator.Requests("download").Last()!["range"]);
        // A download from byte 0 says 0.
        string other = simulator.CreateAction();
        Assert.Equal(0, client.DownloadPackages(new[] { other }, folder, null, null)[0].ResumedFrom);
    }

    [Fact]
    public void A_file_name_pattern_names_each_package_after_its_device_and_the_result_names_the_device()
    {
        const string machine = "5eed00000000000000000000000000000000000b";
        string[] ids = { simulator.CreateAction(new { machine_id = machine }), simulator.CreateAction(new { machine_id = machine }) };
        using DefenderClient client = simulator.Client();
        client.Set("file_name_pattern", "{ComputerDnsName}_{ActionId}.zip");

        DownloadedPackage package = client.DownloadPackage(ids[0], folder, null);
        IList<PackageDownloadResult> results = client.DownloadPackages(new[] { ids[1] }, folder, null, null);

        string name = package.ComputerDnsName;
        Assert.StartsWith("desktop-", name);
        Assert.Equal(machine, package.MachineId);
        Assert.Equal(Path.Combine(folder, name + "_" + ids[0] + ".zip"), package.Path);
        Assert.Equal((machine, name), (results[0].MachineId, results[0].ComputerDnsName));
        Assert.Equal(Path.Combine(folder, name + "_" + ids[1] + ".zip"), results[0].Path);
        Assert.Equal(simulator.Package(ids[1]), File.ReadAllBytes(results[0].Path));
        var refused = Assert.Throws<DefenderException>(() => client.Set("file_name_pattern", "{computer_name}.zip"));
        Assert.Equal(DefenderStatus.InvalidArgument, refused.Status);
        Assert.Contains("{action_id}", refused.Message);
    }

    [Fact]
    public void GetPackageUri_returns_a_fresh_link_to_the_download_host()
    {
        string id = simulator.CreateAction();
        using DefenderClient client = simulator.Client();

        string link = client.GetPackageUri(id);

        Assert.StartsWith(simulator.DownloadUrl + "/safedownload/", link);
        Assert.Contains("token=", link);
    }

    [Fact]
    public void GetMachineAction_has_typed_fields_and_the_whole_object_as_json()
    {
        string id = simulator.CreateAction();
        using DefenderClient client = simulator.Client();

        MachineAction action = client.GetMachineAction(id);

        Assert.Equal(id, action.Id);
        Assert.Equal("CollectInvestigationPackage", action.Type);
        Assert.Equal("Succeeded", action.Status);
        Assert.Equal("1e5bc9d7e413ddd7902c2932e418702b84d0cc07", action.MachineId);
        Assert.NotNull(action.CreationDateTimeUtc);
        Assert.Equal(DateTimeKind.Utc, action.CreationDateTimeUtc.Value.Kind);
        Assert.Contains("\"requestSource\"", action.Json);
    }

    [Fact]
    public void Failures_are_DefenderExceptions_with_the_status_and_the_library_message()
    {
        using DefenderClient client = simulator.Client();
        string unknown = "00000000-0000-4000-8000-00000000dead";
        string pending = simulator.CreateAction(new { schedule = new { pending_secs = 36000, in_progress_secs = 0 } });
        string failed = simulator.CreateAction(new { outcome = "Failed" });

        var notFound = Assert.Throws<DefenderException>(() => client.GetPackageUri(unknown));
        var notReady = Assert.Throws<DefenderException>(() => client.GetPackageUri(pending));
        var actionFailed = Assert.Throws<DefenderException>(() => client.DownloadPackage(failed, folder, null));

        Assert.Equal(DefenderStatus.NotFound, notFound.Status);
        Assert.Contains(unknown, notFound.Message);
        Assert.Equal(DefenderStatus.NotReady, notReady.Status);
        Assert.Contains("Pending", notReady.Message);
        Assert.Equal(DefenderStatus.ActionFailed, actionFailed.Status);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void Text_from_a_hostile_service_reaches_the_exception_with_control_characters_escaped_and_capped()
    {
        using DefenderClient client = simulator.Client();
        string id = simulator.CreateAction(new { });
        string message = "\u001b]0;pwned\u0007\u001b[2J\r\n[Error] forged line " + new string('x', 50000);
        string body = System.Text.Json.JsonSerializer.Serialize(new { error = new { code = "Bad\u001b[31m", message, target = "id" } });
        simulator.AddFault(new { endpoint = "get_package_uri", action_id = id, times = 0, fault = new { kind = "answer", status = 400, body } });

        var failure = Assert.Throws<DefenderException>(() => client.GetPackageUri(id));

        Assert.Equal(DefenderStatus.Http, failure.Status);
        Assert.DoesNotContain(failure.Message, char.IsControl);
        Assert.Contains("\\u001b]0;pwned\\u0007", failure.Message);
        Assert.True(failure.Message.Length < 5000, $"{failure.Message.Length} characters");
    }

    [Fact]
    public void An_unknown_option_is_UnknownOption_naming_it_and_null_restores_the_default()
    {
        using var client = new DefenderClient();

        var failure = Assert.Throws<DefenderException>(() => client.Set("time_out", "5"));

        Assert.Equal(DefenderStatus.UnknownOption, failure.Status);
        Assert.Equal("UNKNOWN_OPTION", failure.StatusName);
        Assert.Contains("'time_out'", failure.Message);
        Assert.Contains("timeout_ms", failure.Message);
        client.Set("timeout_ms", "5000");
        client.Set("timeout_ms", null);
    }

    [Fact]
    public void OptionNames_lists_every_key_Set_takes_each_with_a_description()
    {
        using var client = new DefenderClient();

        IList<string> names = DefenderClient.OptionNames;

        Assert.True(names.Count >= 22, string.Join(", ", names));
        Assert.Contains("max_concurrent_downloads", names);
        Assert.Equal(names.Count, names.Distinct().Count());
        foreach (string name in names)
        {
            client.Set(name, null);
            Assert.False(string.IsNullOrWhiteSpace(DefenderClient.OptionDescription(name)), name);
        }
        Assert.Contains("(default 60000)", DefenderClient.OptionDescription("timeout_ms"));
        Assert.Null(DefenderClient.OptionDescription("time_out"));
        Assert.Throws<NotSupportedException>(() => names.Add("time_out"));
        var invalid = Assert.Throws<DefenderException>(() => client.Set("timeout_ms", "soon"));
        Assert.Equal(DefenderStatus.InvalidArgument, invalid.Status);
    }

    [Fact]
    public void SetSecret_signs_in_from_a_SecureString_and_a_wrong_secret_is_Unauthorized_without_showing_it()
    {
        string id = simulator.CreateAction();
        using DefenderClient client = simulator.Client();

        client.SetSecret("client_secret", Secure(Simulator.Secret));
        Assert.Equal(id, client.GetMachineAction(id).Id);

        const string wrong = "wrong-Sécret-✓-4711";
        using DefenderClient wrongClient = simulator.Client();
        wrongClient.SetSecret("client_secret", Secure(wrong));
        var failure = Assert.Throws<DefenderException>(() => wrongClient.GetMachineAction(id));
        Assert.Equal(DefenderStatus.Unauthorized, failure.Status);
        Assert.Contains("AADSTS7000215", failure.Message);
        Assert.DoesNotContain(wrong, failure.Message);
    }

    [Fact]
    public void GetConnectionInfo_signs_in_and_says_where_as_whom_and_until_when()
    {
        using DefenderClient client = simulator.Client();
        DateTime before = DateTime.UtcNow;
        ConnectionInfo info = client.GetConnectionInfo();
        Assert.Equal(simulator.BaseUrl + "/", info.ApiRoot);
        Assert.Equal("client_secret", info.SignIn);
        Assert.Null(info.Proof);
        Assert.NotNull(info.TenantId);
        Assert.NotNull(info.ClientId);
        Assert.NotNull(info.TokenExpiresAt);
        Assert.Equal(DateTimeKind.Utc, info.TokenExpiresAt.Value.Kind);
        Assert.InRange(info.TokenExpiresAt.Value, before.AddMinutes(5), before.AddDays(1).AddSeconds(1));
        using DefenderClient bearer = new DefenderClient();
        bearer.Set("base_url", simulator.BaseUrl);
        bearer.Set("access_token", "a-token-from-elsewhere");
        ConnectionInfo given = bearer.GetConnectionInfo();
        Assert.Equal(("access_token", (DateTime?)null), (given.SignIn, given.TokenExpiresAt));
    }

    [Fact]
    public void Strings_are_UTF8_both_ways()
    {
        using DefenderClient client = simulator.Client();
        const string comment = "Vorfall 4711: Größe, 事件, ✓";

        MachineAction action = client.CollectInvestigationPackage("5a5bc9d7e413ddd7902c2932e418702b84d0cc07", comment);

        Assert.Equal(comment, action.RequestorComment);
    }

    [Fact]
    public void Collect_and_wait_give_a_succeeded_action_and_log_lines_arrive_on_the_calling_thread()
    {
        using DefenderClient client = simulator.Client();
        int caller = Environment.CurrentManagedThreadId;
        var lines = new List<(DefenderLogLevel Level, string Message, int Thread)>();
        client.LogHandler = (level, message) => lines.Add((level, message, Environment.CurrentManagedThreadId));

        MachineAction started = client.CollectInvestigationPackage("6a5bc9d7e413ddd7902c2932e418702b84d0cc07", null);
        MachineAction done = client.WaitForAction(started.Id);

        Assert.Contains(started.Status, new[] { "Pending", "InProgress" });
        Assert.Equal(started.Id, done.Id);
        Assert.Equal("Succeeded", done.Status);
        Assert.Contains(lines, line => line.Level == DefenderLogLevel.Info && line.Message.Contains(started.Id));
        Assert.All(lines, line => Assert.Equal(caller, line.Thread));
    }

    [Fact]
    public void An_exception_from_the_progress_handler_cancels_the_download_and_is_rethrown_as_it_was()
    {
        string id = simulator.CreateAction();
        simulator.AddFault(new { endpoint = "download", action_id = id, fault = new { kind = "slow_body", bytes_per_sec = 262144 } });
        using DefenderClient client = simulator.Client();
        var thrown = new InvalidOperationException("the handler gave up");

        var caught = Assert.Throws<InvalidOperationException>(() => client.DownloadPackage(id, folder, (done, total) =>
        {
            if (done > 0) throw thrown;
        }));

        Assert.Same(thrown, caught);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void A_cancellation_token_stops_a_slow_download_promptly_and_leaves_no_file()
    {
        string id = simulator.CreateAction();
        simulator.AddFault(new { endpoint = "download", action_id = id, fault = new { kind = "slow_body", bytes_per_sec = 16384 } });
        using DefenderClient client = simulator.Client();
        using var cancellation = new CancellationTokenSource();
        var clock = new Stopwatch();

        Assert.ThrowsAny<OperationCanceledException>(() => client.DownloadPackage(id, folder, (done, total) =>
        {
            if (done > 0 && !clock.IsRunning)
            {
                clock.Start();
                cancellation.CancelAfter(200);
            }
        }, cancellation.Token));

        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void A_cancellation_token_stops_a_call_that_reports_nothing_while_it_waits()
    {
        string id = simulator.CreateAction();
        simulator.AddFault(new { endpoint = "get_package_uri", action_id = id, fault = new { kind = "delay", ms = 60000 } });
        using DefenderClient client = simulator.Client();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        var clock = Stopwatch.StartNew();

        var stopped = Assert.ThrowsAny<OperationCanceledException>(() => client.GetPackageUri(id, cancellation.Token));

        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        Assert.Equal(cancellation.Token, stopped.CancellationToken);
        Assert.Equal(DefenderStatus.Cancelled, Assert.IsType<DefenderException>(stopped.InnerException).Status);
    }

    [Fact]
    public void DownloadPackages_saves_each_package_reports_each_item_once_on_the_calling_thread_and_returns_results_in_input_order()
    {
        string[] good = { simulator.CreateAction(), simulator.CreateAction(), simulator.CreateAction() };
        string failed = simulator.CreateAction(new { outcome = "Failed" });
        string unknown = "00000000-0000-4000-8000-00000000dead";
        string[] ids = { good[0], unknown, good[1], failed, good[2] };
        using DefenderClient client = simulator.Client();
        int caller = Environment.CurrentManagedThreadId;
        var threads = new List<int>();
        var lastProgress = new Dictionary<int, (long Done, long Total)>();
        var finished = new List<(int Index, PackageDownloadResult Result)>();
        var logLines = new List<string>();
        client.LogHandler = (level, message) =>
        {
            threads.Add(Environment.CurrentManagedThreadId);
            logLines.Add(message);
        };

        IList<PackageDownloadResult> results = client.DownloadPackages(ids, folder,
            (index, done, total) =>
            {
                threads.Add(Environment.CurrentManagedThreadId);
                lastProgress[index] = (done, total);
            },
            (index, result) =>
            {
                threads.Add(Environment.CurrentManagedThreadId);
                finished.Add((index, result));
            });

        Assert.Equal(ids, results.Select(result => result.ActionId));
        Assert.Equal(
            new[] { DefenderStatus.Ok, DefenderStatus.NotFound, DefenderStatus.Ok, DefenderStatus.ActionFailed, DefenderStatus.Ok },
            results.Select(result => result.Status));
        foreach (int index in new[] { 0, 2, 4 })
        {
            PackageDownloadResult saved = results[index];
            byte[] expected = simulator.Package(ids[index]);
            Assert.True(saved.Succeeded);
            Assert.Equal(Path.Combine(folder, ids[index] + ".zip"), saved.Path);
            Assert.Equal(expected, File.ReadAllBytes(saved.Path));
            Assert.Equal(Simulator.PackageSize, saved.Bytes);
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(expected)), saved.Sha256);
            Assert.Null(saved.Message);
            Assert.Equal((Simulator.PackageSize, Simulator.PackageSize), lastProgress[index]);
        }
        foreach (int index in new[] { 1, 3 })
        {
            PackageDownloadResult failure = results[index];
            Assert.False(failure.Succeeded);
            Assert.Contains(ids[index], failure.Message);
            Assert.Null(failure.Path);
            Assert.Null(failure.Sha256);
            Assert.True(failure.Elapsed >= TimeSpan.Zero);
        }
        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, finished.Select(item => item.Index).Order());
        Assert.All(finished, item => Assert.Equal(
            (results[item.Index].ActionId, results[item.Index].Status, results[item.Index].Path, results[item.Index].Sha256),
            (item.Result.ActionId, item.Result.Status, item.Result.Path, item.Result.Sha256)));
        Assert.Contains(logLines, line => line.Contains("downloaded 3 of 5 packages"));
        Assert.All(threads, thread => Assert.Equal(caller, thread));
        Assert.Equal(good.Select(id => id + ".zip").Order(), Directory.GetFiles(folder).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void DownloadPackages_handlers_run_outside_the_native_call_so_they_may_call_the_library()
    {
        string[] ids = { simulator.CreateAction(), simulator.CreateAction() };
        using DefenderClient client = simulator.Client();
        var statuses = new List<string>();

        client.DownloadPackages(ids, folder, null, (index, result) => statuses.Add(client.GetMachineAction(result.ActionId).Status));

        Assert.Equal(new[] { "Succeeded", "Succeeded" }, statuses);
    }

    [Fact]
    public void DownloadPackages_with_no_ids_returns_no_results_and_a_missing_folder_is_Io()
    {
        using DefenderClient client = simulator.Client();

        Assert.Empty(client.DownloadPackages(new string[0], folder, null, null));
        var missing = Assert.Throws<DefenderException>(() =>
            client.DownloadPackages(new[] { simulator.CreateAction() }, Path.Combine(folder, "missing"), null, null));
        Assert.Equal(DefenderStatus.Io, missing.Status);
        Assert.Throws<ArgumentNullException>(() => client.DownloadPackages(null, folder, null, null));
    }

    [Fact]
    public void A_cancellation_token_stops_a_batch_promptly_and_leaves_only_the_packages_already_saved()
    {
        string quick = simulator.CreateAction(new { package_size = 50_000 });
        string[] slow = { simulator.CreateAction(), simulator.CreateAction() };
        foreach (string id in slow)
            simulator.AddFault(new { endpoint = "download", action_id = id, fault = new { kind = "slow_body", bytes_per_sec = 16384 } });
        using DefenderClient client = simulator.Client();
        using var cancellation = new CancellationTokenSource();
        var started = new HashSet<int>();
        var saved = new List<string>();
        var clock = new Stopwatch();

        Assert.ThrowsAny<OperationCanceledException>(() => client.DownloadPackages(new[] { slow[0], quick, slow[1] }, folder,
            (index, done, total) =>
            {
                if (done > 0 && index != 1) started.Add(index);
                if (started.Count == 2 && saved.Count == 1 && !clock.IsRunning)
                {
                    clock.Start();
                    cancellation.Cancel();
                }
            },
            (index, result) => saved.Add(result.ActionId),
            cancellation.Token));

        Assert.True(clock.IsRunning, "both slow packages were downloading after the quick one was saved");
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { quick }, saved);
        Assert.Equal(new[] { quick + ".zip" }, Directory.GetFileSystemEntries(folder).Select(Path.GetFileName));
        Assert.Equal(simulator.Package(quick), File.ReadAllBytes(Path.Combine(folder, quick + ".zip")));
    }

    [Fact]
    public void An_exception_from_the_item_handler_cancels_the_batch_and_is_rethrown_as_it_was()
    {
        string unknown = "00000000-0000-4000-8000-00000000dead";
        string[] slow = { simulator.CreateAction(), simulator.CreateAction() };
        foreach (string id in slow)
            simulator.AddFault(new { endpoint = "download", action_id = id, fault = new { kind = "slow_body", bytes_per_sec = 16384 } });
        using DefenderClient client = simulator.Client();
        var thrown = new InvalidOperationException("stop at the first failure");
        int handlerCallsAfterThrowing = 0;
        bool threw = false;
        var clock = Stopwatch.StartNew();

        var caught = Assert.Throws<InvalidOperationException>(() => client.DownloadPackages(new[] { slow[0], unknown, slow[1] }, folder,
            (index, done, total) => { if (threw) handlerCallsAfterThrowing++; },
            (index, result) =>
            {
                if (threw) handlerCallsAfterThrowing++;
                if (!result.Succeeded)
                {
                    threw = true;
                    throw thrown;
                }
            }));

        Assert.Same(thrown, caught);
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(10));
        Assert.Equal(0, handlerCallsAfterThrowing);
        Assert.Empty(Directory.GetFileSystemEntries(folder));
        // The client is not left cancelled.
        Assert.Equal(slow[0], client.GetMachineAction(slow[0]).Id);
    }

    /// <summary>A new certificate, registered with the simulator for app <paramref name="app"/>.</summary>
    X509Certificate2 RegisterCertificateApp(string app)
    {
        using RSA key = RSA.Create(2048);
        var request = new CertificateRequest("CN=defender-package xunit " + app, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        simulator.Control(HttpMethod.Post, "apps", new { tenant_id = simulator.TenantId, client_id = app, certificate_pem = certificate.ExportCertificatePem() });
        return certificate;
    }

    /// <summary>A client for the simulator's API and sign-in as app <paramref name="app"/>, with no proof set yet.</summary>
    DefenderClient AppClient(string app)
    {
        var client = new DefenderClient();
        client.Set("base_url", simulator.BaseUrl);
        client.Set("authority_url", simulator.BaseUrl);
        client.Set("tenant_id", simulator.TenantId);
        client.Set("client_id", app);
        return client;
    }

    [Fact]
    public void A_client_assertion_signed_with_a_certificate_signs_in()
    {
        const string app = "00000000-0000-4000-8000-0000000000c3";
        using X509Certificate2 certificate = RegisterCertificateApp(app);
        string id = simulator.CreateAction();
        using DefenderClient client = AppClient(app);

        string audience = client.GetAssertionAudience();
        client.Set("client_assertion", ClientAssertion.Create(certificate, audience, app, TimeSpan.FromMinutes(10)));

        Assert.Equal($"{simulator.BaseUrl}/{simulator.TenantId}/oauth2/v2.0/token", audience);
        Assert.Equal(id, client.GetMachineAction(id).Id);
        var claims = simulator.Requests("token").Last(r => (string)r!["client_id"] == app)!["claims"]!;
        Assert.Equal(app, (string)claims["iss"]);
        Assert.Equal(app, (string)claims["sub"]);
        Assert.Equal(600, (long)claims["exp"] - (long)claims["nbf"]);
    }

    [Fact]
    public void SetAssertionSigner_signs_on_the_calling_thread_whenever_a_token_is_needed()
    {
        const string app = "00000000-0000-4000-8000-0000000000c4";
        using X509Certificate2 certificate = RegisterCertificateApp(app);
        string id = simulator.CreateAction();
        using DefenderClient client = AppClient(app);
        int caller = Environment.CurrentManagedThreadId;
        var asked = new List<(string Audience, string ClientId, int Thread)>();
        client.SetAssertionSigner((audience, clientId) =>
        {
            asked.Add((audience, clientId, Environment.CurrentManagedThreadId));
            return ClientAssertion.Create(certificate, audience, clientId, TimeSpan.FromMinutes(5));
        });

        Assert.Equal(id, client.GetMachineAction(id).Id);
        // A clone signs with the same signer, from its own thread's call.
        using (DefenderClient clone = client.Clone())
            Assert.Equal(id, clone.GetMachineAction(id).Id);

        var only = Assert.Single(asked);
        Assert.Equal(($"{simulator.BaseUrl}/{simulator.TenantId}/oauth2/v2.0/token", app, caller), only);

        // What the signer throws fails the call as Unauthorized, naming why.
        using DefenderClient failing = AppClient(app);
        failing.SetAssertionSigner((audience, clientId) => throw new CryptographicException("the key is not exportable here"));
        var refused = Assert.Throws<DefenderException>(() => failing.GetMachineAction(id));
        Assert.Equal(DefenderStatus.Unauthorized, refused.Status);
        Assert.Contains("the key is not exportable here", refused.Message);
    }

    [Fact]
    public void A_clone_has_options_of_its_own_and_shares_the_sign_in()
    {
        string id = simulator.CreateAction();
        using DefenderClient client = simulator.Client();
        client.DownloadPackage(id, folder, null);
        int signInsBefore = simulator.Requests("token").Count;

        using (DefenderClient clone = client.Clone())
        {
            clone.Set("overwrite", "true");
            clone.DownloadPackage(id, folder, null);
        }
        var exists = Assert.Throws<DefenderException>(() => client.DownloadPackage(id, folder, null));
        Assert.Equal(DefenderStatus.Exists, exists.Status);
        Assert.Equal(signInsBefore, simulator.Requests("token").Count);
    }

    [Fact]
    public void PhaseHandler_hears_the_wait_the_download_and_the_check_on_the_calling_thread()
    {
        string id = simulator.CreateAction(new { schedule = new { pending_secs = 60, in_progress_secs = 60 } });
        using DefenderClient client = simulator.Client();
        client.Set("wait_timeout_ms", "3600000");
        int caller = Environment.CurrentManagedThreadId;
        var phases = new List<(PhaseEvent Event, int Thread)>();
        client.PhaseHandler = phase => phases.Add((phase, Environment.CurrentManagedThreadId));

        client.DownloadPackage(id, folder, null);

        Assert.All(phases, phase => Assert.Equal(caller, phase.Thread));
        Assert.Contains(phases, p => p.Event.Phase == DefenderPhase.WaitingForCollection && p.Event.Detail is "Pending" or "InProgress");
        PhaseEvent last = phases.Last(p => p.Event.Phase == DefenderPhase.Downloading).Event;
        Assert.Equal(Simulator.PackageSize, last.BytesDone);
        Assert.Equal(DefenderPhase.Verifying, phases.Last().Event.Phase);

        // In a batch too, item by item, on the calling thread.
        phases.Clear();
        string[] ids = { simulator.CreateAction(), simulator.CreateAction() };
        client.DownloadPackages(ids, folder, null, null);
        Assert.All(phases, phase => Assert.Equal(caller, phase.Thread));
        Assert.Equal(new[] { 0, 1 }, phases.Where(p => p.Event.Phase == DefenderPhase.Verifying).Select(p => p.Event.Index).Order());
    }

    [Fact]
    public void A_disposed_client_cannot_be_used()
    {
        var client = simulator.Client();
        client.Dispose();
        Assert.Throws<ObjectDisposedException>(() => client.GetPackageUri("x"));
    }

    static SecureString Secure(string text)
    {
        var secure = new SecureString();
        foreach (char c in text) secure.AppendChar(c);
        secure.MakeReadOnly();
        return secure;
    }
}
