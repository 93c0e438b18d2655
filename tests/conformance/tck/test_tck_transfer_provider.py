"""TCK TP scenarios: transfer processes with the node under test as provider (scripted per agreement id).

The agreements ATP0101 … ATP0306 are seeded for format HttpData-PULL. The test plays the consumer: it
requests transfers and sends completions, suspensions and terminations, and receives the node's start,
suspension, completion and termination messages on its callback server. (TP:02-04 is disabled in the
TCK and so is not reproduced.)
"""

from __future__ import annotations

from typing import Any

from tests.conformance.tck.conftest import CTX, Tck, TckCounterParty, new_pid

TP = "TransferProcess"
TP_ERROR = "TransferError"
FORMAT = "HttpData-PULL"


class Consumer:
    """One consumer-side transfer against the node."""

    def __init__(self, tck: Tck, agreement_id: str) -> None:
        self.tck = tck
        self.agreement_id = agreement_id
        self.cpid = new_pid()
        self.ppid = ""

    def _msg(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"@context": CTX, "@type": kind, "providerPid": self.ppid, "consumerPid": self.cpid, **fields}

    def request_body(self) -> dict[str, Any]:
        return {
            "@context": CTX,
            "@type": "TransferRequestMessage",
            "consumerPid": self.cpid,
            "agreementId": self.agreement_id,
            "format": FORMAT,
            "callbackAddress": self.tck.party.dsp,
        }

    def request(self) -> dict[str, Any]:
        """TransferRequestMessage: 201 with the TransferProcess ACK in REQUESTED."""
        ack = self.tck.expect_ok(self.tck.post("/transfers/request", self.request_body()), 201, TP)
        assert ack["consumerPid"] == self.cpid and ack["state"] == "REQUESTED"
        self.ppid = ack["providerPid"]
        return ack

    def send(self, verb: str, body: dict[str, Any]) -> Any:
        return self.tck.post(f"/transfers/{self.ppid}/{verb}", body)

    def start(self) -> Any:
        return self.send("start", self._msg("TransferStartMessage"))

    def complete(self) -> Any:
        return self.send("completion", self._msg("TransferCompletionMessage"))

    def suspend(self, reason: list[Any] | None = None) -> Any:
        reason = reason if reason is not None else [{"message": "paused by the consumer"}]
        return self.send("suspension", self._msg("TransferSuspensionMessage", code="tck", reason=reason))

    def terminate(self, reason: list[Any] | None = None) -> Any:
        reason = reason if reason is not None else [{"message": "stopped by the consumer"}]
        return self.send("termination", self._msg("TransferTerminationMessage", code="tck", reason=reason))

    def ok(self, resp: Any, state: str) -> dict[str, Any]:
        ack = self.tck.expect_ok(resp, 200, TP)
        assert ack["state"] == state, ack
        return ack

    def refused(self, resp: Any) -> dict[str, Any]:
        error = self.tck.expect_error(resp, TP_ERROR)
        assert error["providerPid"] == self.ppid and error["consumerPid"] == self.cpid
        return error

    def arrives(self, kind: str, verb: str, count: int = 1) -> dict[str, Any]:
        got = self.tck.party.wait_for(self.cpid, kind, count)
        assert got.path == f"/transfers/{self.cpid}/{verb}"
        assert not got.errors, got.errors
        assert got.body["providerPid"] == self.ppid
        return got.body

    def started(self, count: int = 1) -> dict[str, Any]:
        """The node's TransferStartMessage, with a pull data address carrying a bearer token."""
        body = self.arrives("TransferStartMessage", "start", count)
        address = body["dataAddress"]
        assert address["endpoint"].startswith("http")
        props = {p["name"]: p["value"] for p in address["endpointProperties"]}
        assert props.get("authorization"), props
        return body

    def state(self, want: str) -> dict[str, Any]:
        body = self.tck.state(f"/transfers/{self.ppid}", want)
        assert body["providerPid"] == self.ppid and body["consumerPid"] == self.cpid
        return body

    def done(self) -> None:
        self.tck.assert_all_valid(self.cpid)


def test_TP_01_01(tck: Tck) -> None:
    c = Consumer(tck, "ATP0101")
    c.request()
    c.started()
    c.arrives("TransferTerminationMessage", "termination")
    c.state("TERMINATED")
    c.done()


def test_TP_01_02(tck: Tck) -> None:
    c = Consumer(tck, "ATP0102")
    c.request()
    c.started()
    c.arrives("TransferCompletionMessage", "completion")
    c.state("COMPLETED")
    c.done()


def test_TP_01_03(tck: Tck) -> None:
    c = Consumer(tck, "ATP0103")
    c.request()
    c.started()
    c.arrives("TransferSuspensionMessage", "suspension")
    c.arrives("TransferTerminationMessage", "termination")
    c.state("TERMINATED")
    c.done()


def test_TP_01_04(tck: Tck) -> None:
    c = Consumer(tck, "ATP0104")
    c.request()
    first = c.started()
    c.arrives("TransferSuspensionMessage", "suspension")
    second = c.started(count=2)
    # a restart issues a fresh token: the suspended one was revoked
    assert first["dataAddress"] != second["dataAddress"]
    c.arrives("TransferCompletionMessage", "completion")
    c.state("COMPLETED")
    c.done()


def test_TP_01_05(tck: Tck) -> None:
    c = Consumer(tck, "ATP0105")
    c.request()
    c.arrives("TransferTerminationMessage", "termination")
    c.state("TERMINATED")
    assert not tck.party.messages(c.cpid, "TransferStartMessage")
    c.done()


def test_TP_02_01(tck: Tck) -> None:
    c = Consumer(tck, "ATP0201")
    c.request()
    c.started()
    c.state("STARTED")
    c.ok(c.terminate(), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_TP_02_02(tck: Tck) -> None:
    c = Consumer(tck, "ATP0202")
    c.request()
    c.started()
    c.state("STARTED")
    c.ok(c.complete(), "COMPLETED")
    c.state("COMPLETED")
    c.done()


def test_TP_02_03(tck: Tck) -> None:
    c = Consumer(tck, "ATP0203")
    c.request()
    c.started()
    c.state("STARTED")
    # reason as plain strings (the spec examples) as well as objects (the TCK)
    c.ok(c.suspend(["consumer maintenance window"]), "SUSPENDED")
    c.state("SUSPENDED")
    c.ok(c.terminate(), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_TP_02_05(tck: Tck) -> None:
    c = Consumer(tck, "ATP0205")
    c.request()
    c.state("REQUESTED")
    c.ok(c.terminate(["changed my mind"]), "TERMINATED")
    c.state("TERMINATED")
    c.done()


def test_TP_03_01(tck: Tck) -> None:
    c = Consumer(tck, "ATP0301")
    c.request()
    c.state("REQUESTED")
    c.refused(c.complete())
    c.state("REQUESTED")
    c.done()


def test_TP_03_02(tck: Tck) -> None:
    c = Consumer(tck, "ATP0302")
    c.request()
    c.state("REQUESTED")
    c.refused(c.suspend())
    c.state("REQUESTED")
    c.done()


def test_TP_03_03(tck: Tck) -> None:
    c = Consumer(tck, "ATP0303")
    c.request()
    c.started()
    c.state("STARTED")
    c.ok(c.suspend(), "SUSPENDED")
    c.refused(c.complete())
    c.state("SUSPENDED")
    c.done()


def test_TP_03_04(tck: Tck) -> None:
    c = Consumer(tck, "ATP0304")
    c.request()
    c.started()
    c.state("STARTED")
    c.ok(c.terminate(), "TERMINATED")
    c.refused(c.start())
    c.state("TERMINATED")
    c.done()


def test_TP_03_05(tck: Tck) -> None:
    c = Consumer(tck, "ATP0305")
    c.request()
    c.started()
    c.state("STARTED")
    c.ok(c.terminate(), "TERMINATED")
    c.refused(c.suspend())
    c.state("TERMINATED")
    c.done()


def test_TP_03_06(tck: Tck) -> None:
    c = Consumer(tck, "ATP0306")
    c.request()
    c.started()
    c.state("STARTED")
    c.ok(c.terminate(), "TERMINATED")
    c.refused(c.complete())
    c.state("TERMINATED")
    c.done()


def test_transfer_request_is_idempotent_when_consumer_pid_repeats(tck: Tck) -> None:
    c = Consumer(tck, "ATP0205")
    first = c.request()
    again = tck.expect_ok(tck.post("/transfers/request", c.request_body()), 200, TP)
    assert again["providerPid"] == first["providerPid"]
    assert again["consumerPid"] == c.cpid
    c.state("REQUESTED")


def test_unknown_transfer_answers_404_when_pid_is_not_known(tck: Tck) -> None:
    tck.expect_error(tck.get(f"/transfers/{new_pid()}"), TP_ERROR, status=404)
    body = {
        "@context": CTX,
        "@type": "TransferCompletionMessage",
        "providerPid": new_pid(),
        "consumerPid": new_pid(),
    }
    tck.expect_error(tck.post(f"/transfers/{body['providerPid']}/completion", body), TP_ERROR, status=404)


def test_transfer_answers_404_when_caller_is_another_member(tck: Tck, stranger: TckCounterParty) -> None:
    c = Consumer(tck, "ATP0205")
    c.request()
    tck.expect_error(stranger.call("GET", f"{tck.dsp}/transfers/{c.ppid}"), TP_ERROR, status=404)
    body = c._msg("TransferTerminationMessage", reason=["not yours"])
    resp = stranger.call("POST", f"{tck.dsp}/transfers/{c.ppid}/termination", body)
    tck.expect_error(resp, TP_ERROR, status=404)
    c.state("REQUESTED")
