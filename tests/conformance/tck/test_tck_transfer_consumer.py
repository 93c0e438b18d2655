"""TCK TP_C scenarios: transfer processes with the node under test as consumer.

Each transfer is started through the TCK's transfer-initiate hook with agreement ATPC0101 … ATPC0306;
the node's behaviour is scripted by that id (default: wait for the provider). The test plays the
provider: it receives the node's request, completions, suspensions and terminations, and sends start,
suspension, completion and termination messages to the node's callback address. (TP_C:02-04 is
disabled in the TCK and so is not reproduced.)
"""

from __future__ import annotations

from typing import Any

from tests.conformance.tck.conftest import CTX, Tck

TP = "TransferProcess"
TP_ERROR = "TransferError"
FORMAT = "HttpData-PULL"


class Provider:
    """One provider-side transfer the node opened through the hook."""

    def __init__(self, tck: Tck, agreement_id: str) -> None:
        self.tck = tck
        self.agreement_id = agreement_id
        started = tck.hook(
            "/tck/transfers/requests",
            {
                "agreementId": agreement_id,
                "format": FORMAT,
                "providerId": tck.party.did,
                "connectorAddress": tck.party.dsp,
            },
        )
        self.cpid: str = started["consumerPid"]
        request = tck.party.wait_for(self.cpid, "TransferRequestMessage")
        assert request.path == "/transfers/request"
        assert not request.errors, request.errors
        assert request.body["agreementId"] == agreement_id
        assert request.body["format"] == FORMAT
        self.callback: str = request.body["callbackAddress"].rstrip("/")
        self.ppid = tck.party.provider_pids[self.cpid]
        self.tokens = 0

    def _msg(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"@context": CTX, "@type": kind, "providerPid": self.ppid, "consumerPid": self.cpid, **fields}

    def send(self, verb: str, body: dict[str, Any]) -> Any:
        return self.tck.post(f"/transfers/{self.cpid}/{verb}", body, base=self.callback)

    def start(self) -> Any:
        self.tokens += 1
        address = {
            "@type": "DataAddress",
            "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
            "endpoint": f"{self.tck.party.url}/data/{self.ppid}",
            "endpointProperties": [
                {"@type": "EndpointProperty", "name": "authorization", "value": f"token-{self.tokens}"},
                {"@type": "EndpointProperty", "name": "authType", "value": "bearer"},
            ],
        }
        return self.send("start", self._msg("TransferStartMessage", dataAddress=address))

    def complete(self) -> Any:
        return self.send("completion", self._msg("TransferCompletionMessage"))

    def suspend(self, reason: list[Any] | None = None) -> Any:
        reason = reason if reason is not None else [{"message": "paused by the provider"}]
        return self.send("suspension", self._msg("TransferSuspensionMessage", code="tck", reason=reason))

    def terminate(self, reason: list[Any] | None = None) -> Any:
        reason = reason if reason is not None else [{"message": "stopped by the provider"}]
        return self.send("termination", self._msg("TransferTerminationMessage", code="tck", reason=reason))

    def ok(self, resp: Any, state: str) -> dict[str, Any]:
        ack = self.tck.expect_ok(resp, 200, TP)
        assert ack["state"] == state, ack
        assert ack["consumerPid"] == self.cpid and ack["providerPid"] == self.ppid
        return ack

    def refused(self, resp: Any) -> dict[str, Any]:
        error = self.tck.expect_error(resp, TP_ERROR)
        assert error["consumerPid"] == self.cpid
        return error

    def arrives(self, kind: str, verb: str) -> dict[str, Any]:
        got = self.tck.party.wait_for(self.cpid, kind)
        assert got.path == f"/transfers/{self.ppid}/{verb}"
        assert not got.errors, got.errors
        assert got.body["consumerPid"] == self.cpid
        return got.body

    def state(self, want: str) -> dict[str, Any]:
        """The node's view, through GET on its side of the process (lenient: the spec has no consumer GET)."""
        body = self.tck.state(f"/transfers/{self.cpid}", want, base=self.callback)
        assert body["consumerPid"] == self.cpid and body["providerPid"] == self.ppid
        return body

    def done(self) -> None:
        self.tck.assert_all_valid(self.cpid)


def test_TP_C_01_01(tck: Tck) -> None:
    p = Provider(tck, "ATPC0101")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.terminate(), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_TP_C_01_02(tck: Tck) -> None:
    p = Provider(tck, "ATPC0102")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.complete(), "COMPLETED")
    p.state("COMPLETED")
    p.done()


def test_TP_C_01_03(tck: Tck) -> None:
    p = Provider(tck, "ATPC0103")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.suspend(), "SUSPENDED")
    # reason as plain strings (the spec examples) as well as objects (the TCK)
    p.ok(p.terminate(["agreement withdrawn"]), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_TP_C_01_04(tck: Tck) -> None:
    p = Provider(tck, "ATPC0104")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.suspend(["maintenance"]), "SUSPENDED")
    p.ok(p.start(), "STARTED")
    p.ok(p.complete(), "COMPLETED")
    p.state("COMPLETED")
    p.done()


def test_TP_C_01_05(tck: Tck) -> None:
    p = Provider(tck, "ATPC0105")
    p.state("REQUESTED")
    p.ok(p.terminate(), "TERMINATED")
    p.state("TERMINATED")
    p.done()


def test_TP_C_02_01(tck: Tck) -> None:
    p = Provider(tck, "ATPC0201")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.arrives("TransferTerminationMessage", "termination")
    p.state("TERMINATED")
    p.done()


def test_TP_C_02_02(tck: Tck) -> None:
    p = Provider(tck, "ATPC0202")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.arrives("TransferCompletionMessage", "completion")
    p.state("COMPLETED")
    p.done()


def test_TP_C_02_03(tck: Tck) -> None:
    p = Provider(tck, "ATPC0203")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.arrives("TransferSuspensionMessage", "suspension")
    p.arrives("TransferTerminationMessage", "termination")
    p.state("TERMINATED")
    p.done()


def test_TP_C_02_05(tck: Tck) -> None:
    p = Provider(tck, "ATPC0205")
    p.arrives("TransferTerminationMessage", "termination")
    p.state("TERMINATED")
    p.done()


def test_TP_C_03_01(tck: Tck) -> None:
    p = Provider(tck, "ATPC0301")
    p.state("REQUESTED")
    p.refused(p.complete())
    p.state("REQUESTED")
    p.done()


def test_TP_C_03_02(tck: Tck) -> None:
    p = Provider(tck, "ATPC0302")
    p.state("REQUESTED")
    p.refused(p.suspend())
    p.state("REQUESTED")
    p.done()


def test_TP_C_03_03(tck: Tck) -> None:
    p = Provider(tck, "ATPC0303")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.suspend(), "SUSPENDED")
    p.refused(p.complete())
    p.state("SUSPENDED")
    p.done()


def test_TP_C_03_04(tck: Tck) -> None:
    p = Provider(tck, "ATPC0304")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.terminate(), "TERMINATED")
    p.refused(p.start())
    p.state("TERMINATED")
    p.done()


def test_TP_C_03_05(tck: Tck) -> None:
    p = Provider(tck, "ATPC0305")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.terminate(), "TERMINATED")
    p.refused(p.suspend())
    p.state("TERMINATED")
    p.done()


def test_TP_C_03_06(tck: Tck) -> None:
    p = Provider(tck, "ATPC0306")
    p.state("REQUESTED")
    p.ok(p.start(), "STARTED")
    p.ok(p.terminate(), "TERMINATED")
    p.refused(p.complete())
    p.state("TERMINATED")
    p.done()
