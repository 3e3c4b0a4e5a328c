"""While every hostile check runs, the checks of healthy sites keep their schedule."""

from __future__ import annotations

from agent.config.schema import Config
from agent.demo.storefront import DemoStore
from tests.faults.certs import HostileCerts
from tests.faults.faults import FAULTS, fault_site
from tests.faults.hostile import HostileServer
from tests.faults.schedule import run_schedule

HEALTHY_SITES = 5
RUN_S = 6.0
HEALTHY_INTERVAL_S = 1.0


async def test_healthy_sites_keep_their_schedule(hostile: HostileServer,
                                                 hostile_certs: HostileCerts,
                                                 store: DemoStore) -> None:
    hostile_sites = [fault_site(f, hostile.url, hostile.tls_urls, str(hostile_certs.ca_cert),
                                interval="2s") for f in FAULTS]
    healthy = [{"name": f"healthy-{i}", "base_url": store.url, "interval": "1s",
                "timeout": "0.5s", "checks": [{"name": "home", "body_contains": ["Demo"]}]}
               for i in range(HEALTHY_SITES)]
    config = Config.model_validate({"agent": {"jitter": 0, "concurrency": 100},
                                    "sites": hostile_sites + healthy})

    run = await run_schedule(config, RUN_S)

    for i in range(HEALTHY_SITES):
        observations = run.observations[f"healthy-{i}/home"]
        assert len(observations) >= RUN_S / HEALTHY_INTERVAL_S - 2
        assert all(o.result.success for o in observations), observations[-1].result.findings
    # Not one healthy run started a whole interval late (each would have been a missed beat).
    assert run.worst_lateness("healthy-") < HEALTHY_INTERVAL_S
    for fault in FAULTS:
        observations = run.observations[f"{fault.id}/home"]
        assert observations, fault.id
        assert {tuple(f.kind.value for f in o.result.findings)
                for o in observations} == {fault.expect}, fault.id
