using System;
using System.Collections.Generic;
using System.Linq;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text;
using Defender;
using Xunit;

namespace Defender.Interop.Tests;

/// <summary>Devices, action lists and cancel through the binding, against the simulator.</summary>
[Collection(SimulatorCollection.Name)]
public sealed class FleetTests
{
    readonly Simulator simulator;
    // Names of this test run's own devices: the simulator is shared by every test.
    readonly string prefix = "fleet-" + Guid.NewGuid().ToString("N")[..8];

    public FleetTests(Simulator simulator) => this.simulator = simulator;

    static string NewMachineId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));

    string AddMachine(string name, string health = "Active", string[] tags = null, string lastSeen = null, string group = "Workstations")
    {
        string id = NewMachineId();
        simulator.Control(HttpMethod.Post, "machines", new
        {
            id,
            computer_dns_name = name,
            health_status = health,
            rbac_group_name = group,
            rbac_group_id = 1,
            machine_tags = tags ?? Array.Empty<string>(),
            last_seen = lastSeen ?? DateTime.UtcNow.ToString("o"),
        });
        return id;
    }

    [Fact]
    public void GetMachine_finds_a_device_by_id_by_name_and_by_host_name_with_typed_fields()
    {
        string id = AddMachine($"{prefix}-ws.contoso.test", tags: new[] { "Incident4711", "Finance" });
        using DefenderClient client = simulator.Client();

        Machine byId = client.GetMachine(id);
        Machine byName = client.GetMachine($"{prefix}-ws.contoso.test");
        Machine byHost = client.GetMachine($"{prefix}-ws");

        Assert.Equal(id, byId.Id);
        Assert.Equal(id, byName.Id);
        Assert.Equal(id, byHost.Id);
        Assert.Equal($"{prefix}-ws.contoso.test", byId.ComputerDnsName);
        Assert.Equal("Active", byId.HealthStatus);
        Assert.Equal("Workstations", byId.RbacGroupName);
        Assert.Equal(1, byId.RbacGroupId);
        Assert.Equal(new[] { "Incident4711", "Finance" }, byId.MachineTags);
        Assert.NotNull(byId.LastSeen);
        Assert.Contains($"\"id\":\"{id}\"", byId.Json.Replace(" ", ""));
    }

    [Fact]
    public void GetMachine_of_a_duplicated_name_picks_the_device_seen_last_and_warns_of_the_other()
    {
        string old = AddMachine($"{prefix}-dup", health: "Inactive", lastSeen: DateTime.UtcNow.AddDays(-40).ToString("o"));
        string current = AddMachine($"{prefix}-dup");
        using DefenderClient client = simulator.Client();
        var warnings = new List<string>();
        client.LogHandler = (level, line) => { if (level == DefenderLogLevel.Warn) warnings.Add(line); };

        Assert.Equal(current, client.GetMachine($"{prefix}-dup").Id);
        Assert.Contains(warnings, line => line.Contains(old));
    }

    [Fact]
    public void GetMachine_of_an_unknown_name_is_NotFound_and_a_quote_cannot_change_the_filter()
    {
        AddMachine($"{prefix}-a");
        using DefenderClient client = simulator.Client();

        var unknown = Assert.Throws<DefenderException>(() => client.GetMachine($"{prefix}-nowhere"));
        Assert.Equal(DefenderStatus.NotFound, unknown.Status);
        // Were the quote not doubled, this would match every device.
        var crafted = Assert.Throws<DefenderException>(() => client.GetMachine("x' or computerDnsName ne 'x"));
        Assert.Equal(DefenderStatus.NotFound, crafted.Status);
    }

    [Fact]
    public void ListMachines_passes_the_filter_and_follows_pages_up_to_maxItems()
    {
        string[] tagged = Enumerable.Range(0, 5).Select(i => AddMachine($"{prefix}-t{i}", tags: new[] { prefix })).ToArray();
        AddMachine($"{prefix}-untagged");
        using DefenderClient client = simulator.Client();
        simulator.Control(HttpMethod.Post, "config", new { page_size = 2 });
        try
        {
            string filter = $"machineTags/any(t: t eq {DefenderClient.ODataString(prefix)})";
            IList<Machine> all = client.ListMachines(filter);
            IList<Machine> three = client.ListMachines(filter, 3);

            Assert.Equal(tagged.OrderBy(id => id), all.Select(m => m.Id).OrderBy(id => id));
            Assert.Equal(3, three.Count);
            Assert.All(all, m => Assert.Contains(prefix, m.MachineTags));
            var starting = client.ListMachines($"startswith(computerDnsName, {DefenderClient.ODataString(prefix + "-t")})");
            Assert.Equal(5, starting.Count);
        }
        finally
        {
            simulator.Control(HttpMethod.Post, "config", new { page_size = 10000 });
        }
    }

    [Fact]
    public void ListMachines_with_a_filter_the_service_refuses_is_Http_with_its_message()
    {
        using DefenderClient client = simulator.Client();

        var refused = Assert.Throws<DefenderException>(() => client.ListMachines("rbacGroupName eq 'Servers'"));
        Assert.Equal(DefenderStatus.Http, refused.Status);
        Assert.Contains("filter", refused.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Throws<ArgumentOutOfRangeException>(() => client.ListMachines(null, -1));
    }

    [Fact]
    public void ListMachineActions_filters_on_requestor_and_type_with_each_action_whole()
    {
        string requestor = prefix + "@contoso.test";
        string first = simulator.CreateAction(new { requestor, age_secs = 120 });
        string second = simulator.CreateAction(new { requestor });
        simulator.CreateAction(new { requestor, type = "RunAntiVirusScan" });
        using DefenderClient client = simulator.Client();

        IList<MachineAction> actions = client.ListMachineActions(
            $"requestor eq {DefenderClient.ODataString(requestor)} and type eq 'CollectInvestigationPackage'");

        Assert.Equal(new[] { first, second }.OrderBy(id => id), actions.Select(a => a.Id).OrderBy(id => id));
        Assert.All(actions, a => Assert.Equal("Succeeded", a.Status));
        Assert.All(actions, a => Assert.Contains(a.Id, a.Json));
        Assert.Single(client.ListMachineActions($"requestor eq {DefenderClient.ODataString(requestor)}", 1));
    }

    [Fact]
    public void CancelMachineAction_cancels_a_running_action_and_refuses_a_finished_one()
    {
        string running = simulator.CreateAction(new { schedule = new { pending_secs = 3600, in_progress_secs = 3600 } });
        string finished = simulator.CreateAction();
        using DefenderClient client = simulator.Client();

        MachineAction cancelled = client.CancelMachineAction(running, "Wrong device");

        Assert.Equal("Cancelled", cancelled.Status);
        Assert.Contains("Wrong device", cancelled.Json);
        Assert.Equal("Cancelled", client.GetMachineAction(running).Status);
        var refused = Assert.Throws<DefenderException>(() => client.CancelMachineAction(finished, null));
        Assert.Equal(DefenderStatus.Http, refused.Status);
        Assert.Contains("final state", refused.Message);
    }

    [Fact]
    public void StatusName_names_every_status_as_the_library_does()
    {
        Assert.Equal("OK", DefenderClient.StatusName(DefenderStatus.Ok));
        Assert.Equal("NOT_FOUND", DefenderClient.StatusName(DefenderStatus.NotFound));
        Assert.Equal("RATE_LIMITED", DefenderClient.StatusName(DefenderStatus.RateLimited));
        Assert.Equal("UNKNOWN", DefenderClient.StatusName((DefenderStatus)42));
        Assert.All(Enum.GetValues<DefenderStatus>(), status => Assert.NotEqual("UNKNOWN", DefenderClient.StatusName(status)));
        Assert.Equal("'O''Brien'", DefenderClient.ODataString("O'Brien"));
    }
}
