using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Defender;
using Xunit;

namespace Defender.Interop.Tests;

/// <summary>
/// A defender-simulator process on loopback (target/debug, built by cargo before the tests), with
/// the native library loaded from the same build output. Shared by every test; stopped at the end.
/// </summary>
public class Simulator : IDisposable
{
    public const double ClockScale = 60;
    public const int PackageSize = 1024 * 1024;
    public const string Secret = "simulator-secret";

    readonly Process process;
    readonly HttpClient http = new();

    public Simulator()
        : this(Array.Empty<string>())
    {
    }

    /// <param name="arguments">More of the simulator's arguments, after those every test uses.</param>
    protected Simulator(IEnumerable<string> arguments)
    {
        string target = Environment.GetEnvironmentVariable("CARGO_TARGET_DIR") is { Length: > 0 } dir
            ? Path.GetFullPath(dir)
            : Path.Combine(RepositoryRoot(), "target");
        DefenderLibrary.Load(Path.Combine(target, "debug", DefenderLibrary.FileName));

        string executable = Path.Combine(target, "debug", OperatingSystem.IsWindows() ? "defender-simulator.exe" : "defender-simulator");
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            UseShellExecute = false,
            ArgumentList = { "--rate-limit", "off", "--clock-scale", ClockScale.ToString(), "--package-size", PackageSize.ToString() },
        };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["RUST_LOG"] = "warn";
        process = Process.Start(start)!;
        string ready = process.StandardOutput.ReadLine()
            ?? throw new InvalidOperationException($"defender-simulator exited without its ready line (see its messages above)");
        JsonNode info = JsonNode.Parse(ready)!;
        BaseUrl = (string)info["base_url"]!;
        DownloadUrl = (string)info["download_url"]!;
        TenantId = (string)info["tenant_id"]!;
        ClientId = (string)info["client_id"]!;
    }

    public string BaseUrl { get; }
    public string DownloadUrl { get; }
    public string TenantId { get; }
    public string ClientId { get; }

    /// <summary>A client signed in to the simulator as its app with its secret, clocks matched.</summary>
    public DefenderClient Client()
    {
        var client = new DefenderClient();
        client.Set("base_url", BaseUrl);
        client.Set("authority_url", BaseUrl);
        client.Set("tenant_id", TenantId);
        client.Set("client_id", ClientId);
        client.Set("client_secret", Secret);
        client.Set("rate_limit", "off");
        client.Set("clock_scale", ClockScale.ToString());
        return client;
    }

    /// <summary>A call of the control API (/_sim/...): JSON both ways.</summary>
    public JsonNode Control(HttpMethod method, string path, object body = null)
    {
        using var request = new HttpRequestMessage(method, $"{BaseUrl}/_sim/{path}");
        if (body != null)
            request.Content = new StringContent(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");
        using HttpResponseMessage response = http.Send(request);
        string text = response.Content.ReadAsStringAsync().Result;
        Assert.True(response.IsSuccessStatusCode, $"{method} /_sim/{path}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? null : JsonNode.Parse(text);
    }

    /// <summary>Creates a machine action (spec as for POST /_sim/actions) and returns its id.</summary>
    public string CreateAction(object spec = null) => (string)Control(HttpMethod.Post, "actions", spec ?? new { })!["id"]!;

    public void AddFault(object rule) => Control(HttpMethod.Post, "faults", rule);

    /// <summary>The action's package exactly as the download host serves it.</summary>
    public byte[] Package(string actionId) => http.GetByteArrayAsync($"{BaseUrl}/_sim/actions/{actionId}/package").Result;

    public JsonArray Requests(string endpoint) => Control(HttpMethod.Get, $"requests?endpoint={endpoint}")!.AsArray();

    public virtual void Dispose()
    {
        if (!process.HasExited)
        {
            process.Kill();
            process.WaitForExit();
        }
        process.Dispose();
        http.Dispose();
        GC.SuppressFinalize(this);
    }

    public static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder != null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "Cargo.toml")) && Directory.Exists(Path.Combine(folder.FullName, "powershell")))
                return folder.FullName;
        }
        throw new InvalidOperationException($"no repository root above {AppContext.BaseDirectory}");
    }
}

[CollectionDefinition(Name)]
public sealed class SimulatorCollection : ICollectionFixture<Simulator>
{
    public const string Name = "simulator";
}
