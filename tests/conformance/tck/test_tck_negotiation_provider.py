"""TCK CN scenarios: contract negotiation with the node under test as provider (scripted per dataset id).

The test plays the consumer: it sends requests, counter-offers, events, verifications and terminations
to the node with DCP tokens, and receives the node's offers, agreements, events and terminations on its
callback server. Every response and every message the node sent must satisfy the official schemas.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.tck.conftest import CTX, Tck, TckCounterParty, new_pid

CN = "ContractNegotiation"
CN_ERROR = "ContractNegotiationError"


class Consumer:
    """One consumer-side negotiation against the node: remembers both pids and the offer."""

    def __init__(self, tck: Tck, dataset: str) -> None:
        self.tck = tck
        self.dataset = dataset
        self.cpid = new_pid()
        self.ppid = ""
        catalog_dataset = tck.expect_ok(tck.get(f"/catalog/datasets/{dataset}"), 200, "Dataset")
        self.offer: dict[str, Any] = {**catalog_dataset["hasPolicy"][0], "target": dataset}

    def _msg(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"@context": CTX, "@type": kind, "providerPid": self.ppid, "consumerPid": self.cpid, **fields}

    def request(self) -> dict[str, Any]:
        """Initial ContractRequestMessage: 201 with the ContractNegotiation ACK in REQUESTED."""
        assert self.offer["@id"] == f"CD123:{self.dataset}:456", "TCK seed: offer id CD123:<dataset>:456"
        body = {
            "@context": CTX,
            "@type": "ContractRequestMessage",
            "consumerPid": self.cpid,
            "offer": self.offer,
            "callbackAddress": self.tck.party.dsp,
        }
        ack = self.tck.expect_ok(self.tck.post("/negotiations/request", body), 201, CN)
        assert ack["consumerPid"] == self.cpid
        assert ack["state"] == "REQUESTED"
        self.ppid = ack["providerPid"]
        return ack

    def send(self, path: str, body: dict[str, Any]) -> Any:
        return self.tck.post(f"/negotiations/{self.ppid}{path}", body)

    def counter(self) -> Any:
        return self.send("/request", self._msg("ContractRequestMessage", offer=self.offer))

    def accept(self) -> Any:
        return self.send("/events", self._msg("ContractNegotiationEventMessage", eventType="ACCEPTED"))

    def verify(self) -> Any:
        return self.send("/agreement/verification", self._msg("ContractAgreementVerificationMessage"))

    def terminate(self, reason: list[Any] | None = None) -> Any:
        reason = reason if reason is not None else [{"message": "the consumer ends this negotiation"}]
        body = self._msg("ContractNegotiationTerminationMessage", code="tck", reason=reason)
        return self.send("/termination", body)

    def ok(self, resp: Any, state: str) -> dict[str, Any]:
        """200 with a ContractNegotiation ACK in ``state``."""
        ack = self.tck.expect_ok(resp, 200, CN)
        assert ack["state"] == state, ack
        return ack

    def refused(self, resp: Any) -> dict[str, Any]:
        """400 with a typed ContractNegotiationError naming the pids."""
        error = self.tck.expect_error(resp, CN_ERROR)
        assert error["providerPid"] == self.ppid and error["consumerPid"] == self.cpid
        return error

    def arrives(self, kind: str, suffix: str, count: int = 1) -> dict[str, Any]:
        """Wait for the node's ``kind`` message on our callback, sent to /negotiations/<consumerPid><suffix>."""
        got = self.tck.party.wait_for(self.cpid, kind, count)
        assert got.path == f"/negotiations/{self.cpid}{suffix}"
        assert not got.errors, got.errors
        assert got.body["providerPid"] == self.ppid
        return got.body

    def offered(self) -> dict[str, Any]:
        body = self.arrives("ContractOfferMessage", "/offers")
        assert body["offer"]["@id"] == self.offer["@id"]
        assert body["offer"]["target"] == self.dataset
        return body

    def agreed(self) -> dict[str, Any]:
        body = self.arrives("ContractAgreementMessage", "/agreement")
        agreement = body["agreement"]
        assert agreement["target"] == self.dataset
        assert agreement["assignee"] == self.tck.party.did
        assert agreement["assigner"] == self.tck.node.did
        return body

    def finalized(self) -> dict[str, Any]:
        body = self.arrives("ContractNegotiationEventMessage", "/events")
        assert body["eventType"] == "FINALIZED"
        return body

    def terminated_by_node(self) -> dict[str, Any]:
        return self.arrives("ContractNegotiationTerminationMessage", "/termination")

    def state(self, want: str) -> dict[str, Any]:
        body = self.tck.state(f"/negotiations/{self.ppid}", want)
        assert body["providerPid"] == self.ppid and body["consumerPid"] == self.cpid
        return body

    def done(self) -> None:
        self.tck.assert_all_valid(self.cpid)


def test_CN_01_01(tck: Tck) -> None:
    c = Consumer(tck, "ACN0101")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.terminate(), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_CN_01_02(tck: Tck) -> None:
    c = Consumer(tck, "ACN0102")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.counter(), "REQUESTED")
    c.terminated_by_node()
    c.state("TERMINATED")
    c.done()


def test_CN_01_03(tck: Tck) -> None:
    c = Consumer(tck, "ACN0103")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.accept(), "ACCEPTED")
    c.agreed()
    c.state("AGREED")
    c.ok(c.verify(), "VERIFIED")
    c.finalized()
    c.state("FINALIZED")
    c.done()


def test_CN_01_04(tck: Tck) -> None:
    c = Consumer(tck, "ACN0104")
    c.request()
    c.agreed()
    c.state("AGREED")
    c.ok(c.verify(), "VERIFIED")
    c.finalized()
    c.state("FINALIZED")
    c.done()


def test_CN_02_01(tck: Tck) -> None:
    c = Consumer(tck, "ACN0201")
    c.request()
    c.terminated_by_node()
    c.state("TERMINATED")
    c.done()


def test_CN_02_02(tck: Tck) -> None:
    c = Consumer(tck, "ACN0202")
    c.request()
    c.state("REQUESTED")
    # reason as plain strings (the spec examples) is accepted as well as objects (the TCK)
    c.ok(c.terminate(["no longer needed"]), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_CN_02_03(tck: Tck) -> None:
    c = Consumer(tck, "ACN0203")
    c.request()
    c.agreed()
    c.state("AGREED")
    c.ok(c.terminate(), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_CN_02_04(tck: Tck) -> None:
    c = Consumer(tck, "ACN0204")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.terminate(), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_CN_02_05(tck: Tck) -> None:
    c = Consumer(tck, "ACN0205")
    c.request()
    c.offered()
    c.terminated_by_node()
    c.state("TERMINATED")
    c.done()


def test_CN_02_06(tck: Tck) -> None:
    c = Consumer(tck, "ACN0206")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.accept(), "ACCEPTED")
    c.terminated_by_node()
    c.state("TERMINATED")
    c.done()


def test_CN_02_07(tck: Tck) -> None:
    c = Consumer(tck, "ACN0207")
    c.request()
    c.agreed()
    c.state("AGREED")
    c.ok(c.verify(), "VERIFIED")
    c.terminated_by_node()
    c.state("TERMINATED")
    c.done()


def test_CN_03_01(tck: Tck) -> None:
    c = Consumer(tck, "ACN0301")
    c.request()
    c.agreed()
    c.state("AGREED")
    c.ok(c.verify(), "VERIFIED")
    c.finalized()
    c.state("FINALIZED")
    c.refused(c.terminate())
    c.state("FINALIZED")  # terminal states are final
    c.done()


def test_CN_03_02(tck: Tck) -> None:
    c = Consumer(tck, "ACN0302")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.refused(c.verify())
    c.state("OFFERED")
    c.done()


def test_CN_03_03(tck: Tck) -> None:
    c = Consumer(tck, "ACN0303")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.accept(), "ACCEPTED")
    c.refused(c.verify())
    c.state("ACCEPTED")
    c.done()


def test_CN_03_04(tck: Tck) -> None:
    c = Consumer(tck, "ACN0304")
    c.request()
    c.offered()
    c.state("OFFERED")
    c.ok(c.counter(), "REQUESTED")
    # a second counter-offer without a provider answer in between is not a legal transition
    c.refused(c.counter())
    c.terminated_by_node()
    c.state("TERMINATED")
    c.done()


def test_negotiation_request_is_idempotent_when_consumer_pid_repeats(tck: Tck) -> None:
    c = Consumer(tck, "ACN0202")
    first = c.request()
    body = {
        "@context": CTX,
        "@type": "ContractRequestMessage",
        "consumerPid": c.cpid,
        "offer": c.offer,
        "callbackAddress": tck.party.dsp,
    }
    again = tck.expect_ok(tck.post("/negotiations/request", body), 200, CN)
    assert again["providerPid"] == first["providerPid"]


def test_unknown_negotiation_answers_404_when_pid_is_not_known(tck: Tck) -> None:
    resp = tck.get(f"/negotiations/{new_pid()}")
    tck.expect_error(resp, CN_ERROR, status=404)


def test_negotiation_answers_404_when_caller_is_another_member(tck: Tck, stranger: TckCounterParty) -> None:
    c = Consumer(tck, "ACN0202")
    c.request()
    tck.expect_error(stranger.call("GET", f"{tck.dsp}/negotiations/{c.ppid}"), CN_ERROR, status=404)
    body = c._msg("ContractNegotiationTerminationMessage", reason=["not yours"])
    resp = stranger.call("POST", f"{tck.dsp}/negotiations/{c.ppid}/termination", body)
    tck.expect_error(resp, CN_ERROR, status=404)
    c.state("REQUESTED")
