"""TCK CN_C scenarios: contract negotiation with the node under test as consumer.

Each negotiation is started through the TCK's negotiation-initiate hook; the node's behaviour is scripted
by the dataset id (CNC0101 … CNC0306, default: accept an equal offer, verify a matching agreement). The
test plays the provider: it receives the node's requests, events, verifications and terminations, and
sends offers, agreements, events and terminations to the node's callback address.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.conformance.tck.conftest import CTX, Tck, new_pid

CN = "ContractNegotiation"
CN_ERROR = "ContractNegotiationError"


class Provider:
    """One provider-side negotiation the node opened through the hook."""

    def __init__(self, tck: Tck, dataset: str) -> None:
        self.tck = tck
        self.dataset = dataset
        self.offer_id = f"CD123:{dataset}:456"
        started = tck.hook(
            "/tck/negotiations/requests",
            {
                "datasetId": dataset,
                "offerId": self.offer_id,
                "providerId": tck.party.did,
                "connectorAddress": tck.party.dsp,
            },
        )
        self.cpid: str = started["consumerPid"]
        request = tck.party.wait_for(self.cpid, "ContractRequestMessage")
        assert request.path == "/negotiations/request"
        assert not request.errors, request.errors
        assert "providerPid" not in request.body
        assert request.body["offer"]["@id"] == self.offer_id
        assert request.body["offer"]["target"] == dataset
        self.callback: str = request.body["callbackAddress"].rstrip("/")
        self.ppid = tck.party.provider_pids[self.cpid]

    def _msg(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"@context": CTX, "@type": kind, "providerPid": self.ppid, "consumerPid": self.cpid, **fields}

    def send(self, path: str, body: dict[str, Any]) -> Any:
        return self.tck.post(f"/negotiations/{self.cpid}{path}", body, base=self.callback)

    def offer(self) -> Any:
        offer = {
            "@id": self.offer_id,
            "@type": "Offer",
            "target": self.dataset,
            "permission": [{"action": "use"}],
        }
        return self.send("/offers", self._msg("ContractOfferMessage", offer=offer))

    def agree(self) -> Any:
        agreement = {
            "@id": new_pid(),
            "@type": "Agreement",
            "target": self.dataset,
            "assigner": self.tck.party.did,
            "assignee": self.tck.node.did,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permission": [{"action": "use"}],
        }
        return self.send("/agreement", self._msg("ContractAgreementMessage", agreement=agreement))

    def finalize(self) -> Any:
        return self.send("/events", self._msg("ContractNegotiationEventMessage", eventType="FINALIZED"))

    def terminate(self, reason: list[Any] | None = None) -> Any:
        reason = reason if reason is not None else [{"message": "the provider ends this negotiation"}]
        return self.send("/termination", self._msg("ContractNegotiationTerminationMessage", reason=reason))

    def ok(self, resp: Any, state: str) -> dict[str, Any]:
        ack = self.tck.expect_ok(resp, 200, CN)
        assert ack["state"] == state, ack
        return ack

    def refused(self, resp: Any) -> dict[str, Any]:
        error = self.tck.expect_error(resp, CN_ERROR)
        assert error["consumerPid"] == self.cpid
        return error

    def arrives(self, kind: str, suffix: str, count: int = 1) -> dict[str, Any]:
        """Wait for the node's ``kind`` at our provider endpoint /negotiations/<providerPid><suffix>."""
        got = self.tck.party.wait_for(self.cpid, kind, count)
        assert got.path == f"/negotiations/{self.ppid}{suffix}"
        assert not got.errors, got.errors
        assert got.body["providerPid"] == self.ppid
        return got.body

    def accepted(self) -> None:
        assert self.arrives("ContractNegotiationEventMessage", "/events")["eventType"] == "ACCEPTED"

    def verified(self) -> None:
        self.arrives("ContractAgreementVerificationMessage", "/agreement/verification")

    def countered(self) -> None:
        body = self.arrives("ContractRequestMessage", "/request", count=2)
        assert body["offer"]["@id"] == self.offer_id

    def terminated_by_node(self) -> None:
        self.arrives("ContractNegotiationTerminationMessage", "/termination")

    def state(self, want: str) -> dict[str, Any]:
        body = self.tck.state(f"/negotiations/{self.cpid}", want, base=self.callback)
        assert body["consumerPid"] == self.cpid and body["providerPid"] == self.ppid
        return body

    def done(self) -> None:
        self.tck.assert_all_valid(self.cpid)


def test_CN_C_01_01(tck: Tck) -> None:
    p = Provider(tck, "CNC0101")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.accepted()
    p.state("ACCEPTED")
    p.ok(p.agree(), "AGREED")
    p.verified()
    p.state("VERIFIED")
    p.ok(p.finalize(), "FINALIZED")
    p.state("FINALIZED")
    p.done()


def test_CN_C_01_02(tck: Tck) -> None:
    p = Provider(tck, "CNC0102")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.countered()
    p.state("REQUESTED")
    p.ok(p.terminate(), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_CN_C_01_03(tck: Tck) -> None:
    p = Provider(tck, "CNC0103")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.terminated_by_node()
    p.state("TERMINATED")
    p.done()


def test_CN_C_01_04(tck: Tck) -> None:
    p = Provider(tck, "CNC0104")
    p.state("REQUESTED")
    p.ok(p.agree(), "AGREED")
    p.verified()
    p.state("VERIFIED")
    p.ok(p.finalize(), "FINALIZED")
    p.state("FINALIZED")
    p.done()


def test_CN_C_02_01(tck: Tck) -> None:
    p = Provider(tck, "CNC0201")
    p.state("REQUESTED")
    p.ok(p.terminate(), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_CN_C_02_02(tck: Tck) -> None:
    p = Provider(tck, "CNC0202")
    p.terminated_by_node()
    p.state("TERMINATED")
    p.done()


def test_CN_C_02_03(tck: Tck) -> None:
    p = Provider(tck, "CNC0203")
    p.state("REQUESTED")
    p.ok(p.agree(), "AGREED")
    p.terminated_by_node()
    p.state("TERMINATED")
    p.done()


def test_CN_C_02_04(tck: Tck) -> None:
    p = Provider(tck, "CNC0204")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.state("OFFERED")
    # reason as plain strings (the spec examples) as well as objects (the TCK)
    p.ok(p.terminate(["offer withdrawn"]), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_CN_C_02_05(tck: Tck) -> None:
    p = Provider(tck, "CNC0205")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.accepted()
    p.state("ACCEPTED")
    p.ok(p.terminate(), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_CN_C_02_06(tck: Tck) -> None:
    p = Provider(tck, "CNC0206")
    p.state("REQUESTED")
    p.ok(p.agree(), "AGREED")
    p.verified()
    p.state("VERIFIED")
    p.ok(p.terminate(), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_CN_C_03_01(tck: Tck) -> None:
    p = Provider(tck, "CNC0301")
    p.state("REQUESTED")
    p.refused(p.finalize())
    p.state("REQUESTED")
    p.done()


def test_CN_C_03_02(tck: Tck) -> None:
    p = Provider(tck, "CNC0302")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.refused(p.agree())
    p.state("OFFERED")
    p.done()


def test_CN_C_03_03(tck: Tck) -> None:
    p = Provider(tck, "CNC0303")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.refused(p.finalize())
    p.state("OFFERED")
    p.done()


def test_CN_C_03_04(tck: Tck) -> None:
    p = Provider(tck, "CNC0304")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.accepted()
    p.state("ACCEPTED")
    p.refused(p.finalize())
    p.state("ACCEPTED")
    p.done()


def test_CN_C_03_05(tck: Tck) -> None:
    p = Provider(tck, "CNC0305")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.accepted()
    p.state("ACCEPTED")
    p.refused(p.offer())
    p.state("ACCEPTED")
    p.done()


def test_CN_C_03_06(tck: Tck) -> None:
    p = Provider(tck, "CNC0306")
    p.state("REQUESTED")
    p.ok(p.offer(), "OFFERED")
    p.accepted()
    p.state("ACCEPTED")
    p.ok(p.agree(), "AGREED")
    p.state("AGREED")
    p.refused(p.finalize())
    p.state("AGREED")
    p.done()
