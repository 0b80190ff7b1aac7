"""A STAND-IN for Razorpay's API, which these machines cannot reach.

This is not Razorpay and not a mock of our code: it is a small local HTTP server, built
from Razorpay's public API documentation, that implements exactly the endpoints the
adapter (server/payments/razorpay.py) calls, with the documented request and response
JSON, HTTP Basic authentication with the key id and key secret, amounts in paise,
collections as ``{"entity": "collection", "count": n, "items": [...]}`` (newest first),
and errors as ``{"error": {"code": "BAD_REQUEST_ERROR", "description": ...}}``:

- ``POST /v1/orders`` and ``GET /v1/orders?receipt=`` (orders are *not* idempotent: two
  POSTs make two orders, as at Razorpay);
- ``GET /v1/orders/{id}/payments``, ``GET /v1/payments/{id}``,
  ``POST /v1/payments/{id}/capture``;
- ``POST /v1/payments/{id}/refund`` and ``GET /v1/payments/{id}/refunds``.

Any other path answers 404 ``The requested URL was not found on the server.``

It signs what Razorpay signs: the checkout callback
(``HMAC-SHA256(key_secret, order_id|payment_id)``) and webhooks (``X-Razorpay-Signature
= HMAC-SHA256(webhook_secret, raw body)``, the body shaped like Razorpay's event:
``entity``, ``account_id``, ``event``, ``contains``, ``payload.payment.entity`` with the
full payment, ``created_at``). It computes them itself (hmac), independently of
server/payments/signing.py, so a mistake there cannot hide in both.

Test controls: :meth:`RazorpayStandIn.pay` plays the user paying an order in Checkout
(a captured or only authorised payment, and the signed checkout callback and webhook
Razorpay would send), :meth:`~RazorpayStandIn.fail_payment` a failed attempt,
:attr:`~RazorpayStandIn.refuse_refunds` makes Razorpay refuse refunds as it does those
the bank no longer accepts (besides the refusals of more than was captured, of a payment
not captured and of one fully refunded, which it always makes),
:meth:`~RazorpayStandIn.fail_next` answers the next requests with an error status, and
:meth:`~RazorpayStandIn.hang_next` never answers them (until :meth:`stop`), before or
after doing the work. :attr:`~RazorpayStandIn.requests` records every request (method,
path, query, status; never a header).

It runs in a thread of the test process (``start``/``stop``, or ``with``), so it serves
sync and async tests alike, and its state (orders, payments, refunds) lives in the test
process: a server subprocess killed mid-way loses nothing of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KEY_ID = "rzp_test_StandIn0000001"
KEY_SECRET = "standin-key-secret-3c1f9a"
WEBHOOK_SECRET = "standin-webhook-secret-7be20d"
ACCOUNT_ID = "acc_StandIn0000001"

_ID_CHARS = string.ascii_letters + string.digits
NOT_FOUND = "The requested URL was not found on the server."
NO_SUCH_ID = "The id provided does not exist"
TOO_OLD_FOR_REFUND = (
    "Refund is not supported by the bank because the payment is more than 6 months old"
)

Json = dict[str, Any]


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_CHARS) for _ in range(14))


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        description: str,
        code: str = "BAD_REQUEST_ERROR",
        *,
        business: bool = True,
    ) -> None:
        super().__init__(description)
        self.status = status
        # A refusal the bank (not the request's shape) is behind names no source, step
        # or reason (Razorpay's docs, "Handle Refund Errors").
        details = status == 400 and business
        self.body = {
            "error": {
                "code": code,
                "description": description,
                "source": "business" if details else None if status == 400 else "NA",
                "step": "payment_initiation" if details else None if status == 400 else "NA",
                "reason": "input_validation_failed" if details else None if status == 400 else "NA",
                "metadata": {},
            }
        }


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in saw it (never its headers)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None  # None: never answered (a hang)
    authenticated: bool


@dataclass
class Fault:
    """What the next matching requests get instead of an answer."""

    remaining: int
    kind: str  # "status" | "status_after" | "hang" | "hang_after"
    status: int = 500
    method: str | None = None
    path_prefix: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )


@dataclass(frozen=True)
class Paid:
    """What Razorpay hands out when the user pays: the payment id, the checkout
    callback's fields (``razorpay_order_id``, ``razorpay_payment_id``,
    ``razorpay_signature``) and the webhook (raw body and ``X-Razorpay-Signature``)."""

    order_id: str
    payment_id: str
    checkout_signature: str
    webhook_body: bytes
    webhook_signature: str


@dataclass
class _State:
    orders: dict[str, Json] = field(default_factory=dict)
    payments: dict[str, Json] = field(default_factory=dict)
    refunds: dict[str, Json] = field(default_factory=dict)


class RazorpayStandIn:
    """The stand-in server. ``url`` is its base URL once started."""

    def __init__(
        self,
        *,
        key_id: str = KEY_ID,
        key_secret: str = KEY_SECRET,
        webhook_secret: str = WEBHOOK_SECRET,
    ) -> None:
        self.key_id = key_id
        self.key_secret = key_secret
        self.webhook_secret = webhook_secret
        self._state = _State()
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._release = threading.Event()
        self._clock = itertools.count(int(time.time()))
        self.requests: list[Recorded] = []
        #: Status of refunds made from now on (Razorpay: processed, pending or failed).
        self.refund_status = "processed"
        #: Refunds asked for from now on are refused, as Razorpay refuses one the bank
        #: no longer accepts (HTTP 400 ``BAD_REQUEST_ERROR``, e.g. a payment more than
        #: six months old), when set.
        self.refuse_refunds = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> RazorpayStandIn:
        self._release.clear()
        handler = type("Handler", (_Handler,), {"standin": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.block_on_close = False  # a client's idle keep-alive must not hold stop()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="razorpay-standin"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # hung requests end (unanswered)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> RazorpayStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- inspection --------------------------------------------------------------------

    @property
    def orders(self) -> list[Json]:
        with self._lock:
            return [dict(o) for o in self._state.orders.values()]

    @property
    def payments(self) -> list[Json]:
        with self._lock:
            return [dict(p) for p in self._state.payments.values()]

    @property
    def refunds(self) -> list[Json]:
        with self._lock:
            return [dict(r) for r in self._state.refunds.values()]

    def order(self, order_id: str) -> Json:
        with self._lock:
            return dict(self._state.orders[order_id])

    def payment(self, payment_id: str) -> Json:
        with self._lock:
            return dict(self._state.payments[payment_id])

    def count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """Requests received (answered or not) matching ``method`` and ``path_prefix``."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method)
                and (path_prefix is None or r.path.startswith(path_prefix))
            )

    # --- faults --------------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        *,
        status: int = 500,
        method: str | None = None,
        path_prefix: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """The next ``count`` matching requests are answered ``status`` (and do nothing);
        with ``after_processing`` their work is done first and only the answer is an
        error (as when a proxy loses the gateway's answer)."""
        kind = "status_after" if after_processing else "status"
        with self._lock:
            self._faults.append(Fault(count, kind, status, method, path_prefix))

    def hang_next(
        self,
        count: int,
        *,
        method: str | None = None,
        path_prefix: str | None = None,
        after_processing: bool = False,
    ) -> None:
        """The next ``count`` matching requests are never answered (until ``stop``);
        with ``after_processing`` their work is done first (the answer is what gets
        lost: an order created, a refund made)."""
        kind = "hang_after" if after_processing else "hang"
        with self._lock:
            self._faults.append(Fault(count, kind, 0, method, path_prefix))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault
        return None

    # --- playing the user at Checkout --------------------------------------------------

    def pay(self, order_id: str, *, capture: bool = True, method: str = "upi") -> Paid:
        """The user pays ``order_id`` in Checkout: a payment ``captured`` (automatic
        capture) or only ``authorized``; the callback and webhook Razorpay sends."""
        with self._lock:
            order = self._state.orders[order_id]
            payment = self._new_payment(order, method)
            payment["status"] = "captured" if capture else "authorized"
            payment["captured"] = capture
            order["attempts"] += 1
            order["status"] = "attempted"
            if capture:
                self._mark_paid(order, payment)
            event = "payment.captured" if capture else "payment.authorized"
            body = self._event(event, payment)
            return Paid(
                order_id=order_id,
                payment_id=payment["id"],
                checkout_signature=self.checkout_signature(order_id, payment["id"]),
                webhook_body=body,
                webhook_signature=sign(self.webhook_secret, body),
            )

    def fail_payment(
        self, order_id: str, reason: str = "Payment was cancelled by the user"
    ) -> tuple[str, bytes, str]:
        """A failed attempt on ``order_id`` (the order stays open): the payment id, the
        ``payment.failed`` webhook body and its signature."""
        with self._lock:
            order = self._state.orders[order_id]
            payment = self._new_payment(order, "upi")
            payment.update(
                status="failed",
                error_code="BAD_REQUEST_ERROR",
                error_description=reason,
                error_source="customer",
                error_step="payment_authentication",
                error_reason="payment_cancelled",
            )
            order["attempts"] += 1
            order["status"] = "attempted"
            body = self._event("payment.failed", payment)
            return payment["id"], body, sign(self.webhook_secret, body)

    def checkout_signature(self, order_id: str, payment_id: str) -> str:
        return sign(self.key_secret, f"{order_id}|{payment_id}".encode())

    def _event(self, event: str, payment: Json) -> bytes:
        return json.dumps(
            {
                "entity": "event",
                "account_id": ACCOUNT_ID,
                "event": event,
                "contains": ["payment"],
                "payload": {"payment": {"entity": payment}},
                "created_at": next(self._clock),
            }
        ).encode()

    def _new_payment(self, order: Json, method: str) -> Json:
        payment: Json = {
            "id": _new_id("pay_"),
            "entity": "payment",
            "amount": order["amount"],
            "currency": order["currency"],
            "status": "created",
            "order_id": order["id"],
            "invoice_id": None,
            "international": False,
            "method": method,
            "amount_refunded": 0,
            "refund_status": None,
            "captured": False,
            "description": None,
            "card_id": None,
            "bank": None,
            "wallet": None,
            "vpa": "user@okbank" if method == "upi" else None,
            "email": "user@example.com",
            "contact": "+919000000001",
            "notes": [],
            "fee": None,
            "tax": None,
            "error_code": None,
            "error_description": None,
            "error_source": None,
            "error_step": None,
            "error_reason": None,
            "acquirer_data": {},
            "created_at": next(self._clock),
        }
        self._state.payments[payment["id"]] = payment
        return payment

    def _mark_paid(self, order: Json, payment: Json) -> None:
        order["status"] = "paid"
        order["amount_paid"] = payment["amount"]
        order["amount_due"] = 0
        payment["fee"] = payment["amount"] * 2 // 100
        payment["tax"] = payment["fee"] * 18 // 118

    # --- the API --------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Json:
        """One API request (authenticated already): the JSON answered, or ApiError."""
        parts = [p for p in path.split("/") if p]
        with self._lock:
            match method, parts:
                case "POST", ["v1", "orders"]:
                    return self._create_order(_json(body))
                case "GET", ["v1", "orders"]:
                    return self._list_orders(query)
                case "GET", ["v1", "orders", order_id, "payments"]:
                    order = self._find(self._state.orders, order_id)
                    return _collection(
                        p for p in self._state.payments.values() if p["order_id"] == order["id"]
                    )
                case "GET", ["v1", "payments", payment_id]:
                    return dict(self._find(self._state.payments, payment_id))
                case "POST", ["v1", "payments", payment_id, "capture"]:
                    return self._capture(self._find(self._state.payments, payment_id), _json(body))
                case "POST", ["v1", "payments", payment_id, "refund"]:
                    return self._refund(self._find(self._state.payments, payment_id), _json(body))
                case "GET", ["v1", "payments", payment_id, "refunds"]:
                    payment = self._find(self._state.payments, payment_id)
                    return _collection(
                        r for r in self._state.refunds.values() if r["payment_id"] == payment["id"]
                    )
        raise ApiError(404, NOT_FOUND)

    @staticmethod
    def _find(table: dict[str, Json], entity_id: str) -> Json:
        found = table.get(entity_id)
        if found is None:
            raise ApiError(400, NO_SUCH_ID)
        return found

    def _create_order(self, body: Json) -> Json:
        amount, currency = body.get("amount"), body.get("currency")
        receipt, notes = body.get("receipt"), body.get("notes", {})
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ApiError(400, "The amount must be an integer.")
        if amount < 100:
            raise ApiError(400, "The amount must be atleast INR 1.00")
        if not isinstance(currency, str) or len(currency) != 3:
            raise ApiError(400, "The currency must be a valid ISO 4217 code.")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            raise ApiError(400, "The receipt may not be greater than 40 characters.")
        if not isinstance(notes, dict) or len(notes) > 15:
            raise ApiError(400, "The notes may not have more than 15 items.")
        if any(not isinstance(v, str) or len(v) > 256 for v in notes.values()):
            raise ApiError(400, "The notes value may not be greater than 256 characters.")
        order: Json = {
            "id": _new_id("order_"),
            "entity": "order",
            "amount": amount,
            "amount_paid": 0,
            "amount_due": amount,
            "currency": currency,
            "receipt": receipt,
            "offer_id": None,
            "status": "created",
            "attempts": 0,
            "notes": notes or [],
            "created_at": next(self._clock),
        }
        self._state.orders[order["id"]] = order
        return dict(order)

    def _list_orders(self, query: dict[str, list[str]]) -> Json:
        count = int(query.get("count", ["10"])[0])
        if not 1 <= count <= 100:
            raise ApiError(400, "The count must be between 1 and 100.")
        receipt = query.get("receipt", [None])[0]
        found = [o for o in self._state.orders.values() if receipt in (None, o["receipt"])]
        return _collection(found, limit=count)

    def _capture(self, payment: Json, body: Json) -> Json:
        if payment["status"] in ("captured", "refunded"):
            raise ApiError(400, "This payment has already been captured")
        if payment["status"] != "authorized":
            raise ApiError(
                400, "Only payments which have been authorized and not yet captured can be captured"
            )
        if body.get("amount") != payment["amount"]:
            raise ApiError(400, "Capture amount must be equal to the amount authorized")
        if body.get("currency") != payment["currency"]:
            raise ApiError(400, "The currency should be same as the payment currency")
        payment["status"] = "captured"
        payment["captured"] = True
        self._mark_paid(self._state.orders[payment["order_id"]], payment)
        return dict(payment)

    def _refund(self, payment: Json, body: Json) -> Json:
        if payment["status"] not in ("captured", "refunded"):
            raise ApiError(400, "The payment has not been captured")
        if payment["amount_refunded"] >= payment["amount"]:
            raise ApiError(400, "The payment has been fully refunded already")
        if self.refuse_refunds:
            raise ApiError(400, TOO_OLD_FOR_REFUND, business=False)
        left = payment["amount"] - payment["amount_refunded"]
        amount = body.get("amount", left)
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 100:
            raise ApiError(400, "The amount must be atleast INR 1.00")
        if amount > left:
            raise ApiError(400, "The refund amount provided is greater than amount captured")
        notes = body.get("notes", {})
        receipt = body.get("receipt")
        if receipt is not None and (not isinstance(receipt, str) or len(receipt) > 40):
            raise ApiError(400, "The receipt may not be greater than 40 characters.")
        refund: Json = {
            "id": _new_id("rfnd_"),
            "entity": "refund",
            "amount": amount,
            "receipt": receipt,
            "currency": payment["currency"],
            "payment_id": payment["id"],
            "notes": notes or [],
            "acquirer_data": {"arn": None},
            "created_at": next(self._clock),
            "batch_id": None,
            "status": self.refund_status,
            "speed_processed": "normal",
            "speed_requested": str(body.get("speed", "normal")),
        }
        self._state.refunds[refund["id"]] = refund
        if self.refund_status != "failed":
            payment["amount_refunded"] += amount
            full = payment["amount_refunded"] == payment["amount"]
            payment["refund_status"] = "full" if full else "partial"
            if full:
                payment["status"] = "refunded"
        return dict(refund)

    def authenticated(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except ValueError:
            return False
        user, _, password = decoded.partition(":")
        return hmac.compare_digest(user, self.key_id) and hmac.compare_digest(
            password, self.key_secret
        )


def _json(body: bytes) -> Json:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return parsed


def _collection(items: Any, limit: int = 100) -> Json:
    newest_first = sorted((dict(i) for i in items), key=lambda i: -i["created_at"])[:limit]
    return {"entity": "collection", "count": len(newest_first), "items": newest_first}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes
    standin: RazorpayStandIn

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        standin = self.standin
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ok = standin.authenticated(self.headers.get("Authorization"))
        fault = standin._take_fault(method, url.path)
        status: int | None
        server_error = {"error": {"code": "SERVER_ERROR", "description": "stand-in fault"}}
        if fault is not None and fault.kind == "status":
            status, answer = fault.status, server_error
        elif not ok:
            status, answer = 401, ApiError(401, "Authentication failed").body
        elif fault is not None and fault.kind == "hang":
            status, answer = None, {}
        else:
            try:
                status, answer = 200, standin.handle(method, url.path, query, body)
            except ApiError as exc:
                status, answer = exc.status, exc.body
            if fault is not None and fault.kind == "status_after":
                status, answer = fault.status, server_error  # done, but the answer is lost
            elif fault is not None:  # hang_after: done, and never answered
                status = None
        with standin._lock:
            standin.requests.append(Recorded(method, url.path, query, status, ok))
        if status is None:
            standin._release.wait()  # no timer: only stop() ends the hang
            self.close_connection = True
            return
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
