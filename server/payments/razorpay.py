"""Razorpay, the production gateway (docs/payments.md, "Razorpay").

How the interface maps onto Razorpay's REST API (``https://api.razorpay.com/v1``, HTTP
Basic auth with the key id and key secret, amounts in paise):

- :meth:`RazorpayGateway.charge` creates an **order** (``POST /v1/orders``) and answers
  ``pending``: the user pays in Razorpay Checkout, which the app opens at the configured
  checkout page with the order id and the public key id. Orders are not idempotent by
  themselves, so the order carries a receipt derived from our reference
  (:func:`order_receipt`, Razorpay allows 40 characters) and the reference itself in its
  notes; charge first looks for an order under that receipt (``GET
  /v1/orders?receipt=``) and creates one only when there is none. The charge's
  ``payment_id`` is the order id.
- :meth:`~RazorpayGateway.lookup` finds the order by receipt again: ``paid``, or a
  captured payment among the order's payments (``GET /v1/orders/{id}/payments``), is
  ``authorised``; an authorised but uncaptured payment is captured (``POST
  /v1/payments/{id}/capture``); anything else is ``pending`` (a failed attempt does not
  end an order: the user may try again at checkout).
- :meth:`~RazorpayGateway.verify_callback` checks the checkout callback's signature
  (HMAC-SHA256 of ``order_id|payment_id`` under the **key secret**) and then asks
  Razorpay for the payment (``GET /v1/payments/{id}``): it must belong to the signed
  order, and its amount and status are Razorpay's, never the callback's. A webhook is
  checked over its exact raw bytes under the **webhook secret** and read by
  :func:`server.payments.signing.parse_webhook`. Each secret verifies only its own
  scheme.
- :meth:`~RazorpayGateway.refund` refunds the order's captured payment (``POST
  /v1/payments/{id}/refund``), with a receipt derived from the refund's reference; a
  refund already made under it (``GET /v1/payments/{id}/refunds``) is returned instead.
  Razorpay's refusal of a refund (HTTP 400 ``BAD_REQUEST_ERROR``: more than was
  captured, a payment not captured, one too old for the bank) and an order with no
  captured payment raise :class:`~server.payments.gateway.GatewayRefused`: nothing was
  refunded, so the refund fails at once instead of staying reserved.

Every request has a timeout and is retried, with exponential backoff, after a connection
error, a timeout, 429 or 5xx, at most ``max_retries`` times; a request that creates
something (an order, a capture, a refund) is retried only after checking that the first
attempt did not create it. What is still failing after that raises
:class:`~server.payments.gateway.GatewayError` (the outcome is unknown), as does any
other refusal (4xx) of a charge or lookup. Calls are logged at DEBUG with method,
path, status and attempt; the secrets and the Authorization header never are.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from server.core.config import Settings
from server.core.money import from_minor, to_minor
from server.payments import signing
from server.payments.gateway import (
    EXTERNAL_METHODS,
    Callback,
    CallbackOutcome,
    CallbackRejected,
    ChargeResult,
    CheckoutCallback,
    GatewayError,
    GatewayRefused,
    RefundResult,
    VerifiedPayment,
)

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.razorpay.com"
#: Razorpay's longest receipt (orders and refunds).
MAX_RECEIPT = 40
ORDER_RECEIPT_PREFIX = "gc_"
REFUND_RECEIPT_PREFIX = "gcr_"
#: Razorpay's largest page of a list (orders by receipt, an order's payments, refunds).
PAGE_SIZE = 100
#: Razorpay's error code of a request it refuses on its merits (HTTP 400).
REFUSAL_CODE = "BAD_REQUEST_ERROR"
#: Backoff before the n-th retry: ``backoff * 2**(n-1)``, at most this, with jitter.
MAX_BACKOFF_SECONDS = 5.0
#: Ids we put into a URL path: Razorpay's are ``order_``/``pay_``/``rfnd_`` + 14 characters.
_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
_PLACEHOLDER = re.compile(r"\{([a-z_]*)\}")
_STATUS_RANK = {"paid": 0, "attempted": 1, "created": 2}
_REFUND_STATUSES: dict[str, Literal["processed", "pending", "failed"]] = {
    "processed": "processed",
    "pending": "pending",
    "failed": "failed",
}
#: A payment's status, as a checkout callback's outcome (``created``: none yet).
_OUTCOMES: dict[str, CallbackOutcome] = {
    "captured": "success",
    "refunded": "success",  # captured, then (partly) refunded
    "failed": "failed",
}

JsonObject = dict[str, Any]


def order_receipt(reference: str) -> str:
    """The receipt of the order made for ``reference`` (stable, 35 characters)."""
    return ORDER_RECEIPT_PREFIX + hashlib.sha256(reference.encode()).hexdigest()[:32]


def refund_receipt(reference: str) -> str:
    """The receipt of the refund made for ``reference`` (stable, 36 characters)."""
    return REFUND_RECEIPT_PREFIX + hashlib.sha256(reference.encode()).hexdigest()[:32]


class RazorpayApiError(GatewayError):
    """Razorpay refused a request (4xx): its error code and description."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(f"Razorpay answered HTTP {status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description


class _Retryable(Exception):
    """One attempt failed in a way that another attempt may not (connection, timeout,
    429, 5xx)."""


class RazorpayGateway:
    """The Razorpay adapter (module docstring). Build it with :func:`from_settings`."""

    name = "razorpay"

    def __init__(
        self,
        *,
        key_id: str,
        key_secret: str,
        webhook_secret: str,
        checkout_url: str,
        api_url: str = DEFAULT_API_URL,
        timeout: float = 10.0,
        max_retries: int = 2,
        backoff: float = 0.25,
    ) -> None:
        problem = _problem(key_id, key_secret, webhook_secret, checkout_url, api_url)
        if problem:
            raise ValueError(problem)
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ValueError("the gateway timeout must be positive and retries not negative")
        self._key_id = key_id
        self._key_secret = key_secret
        self._webhook_secret = webhook_secret
        self._checkout_url = checkout_url
        self._api_url = api_url.rstrip("/")
        self._timeout = timeout
        self._max_retries = max_retries
        self._backoff = backoff
        self._client = httpx.AsyncClient(
            base_url=self._api_url,
            auth=httpx.BasicAuth(key_id, key_secret),
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": "gencharge"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:  # never the secrets
        return f"RazorpayGateway(key_id={self._key_id!r}, api_url={self._api_url!r})"

    @property
    def key_id(self) -> str:
        """The public key id Checkout is opened with."""
        return self._key_id

    # --- the interface ---------------------------------------------------------------------

    async def charge(
        self,
        *,
        amount: Decimal,
        currency: str,
        method: str,
        details: Mapping[str, str],
        reference: str,
    ) -> ChargeResult:
        if method not in EXTERNAL_METHODS:
            raise ValueError(f"Razorpay cannot charge by {method!r}")
        if not reference:
            raise ValueError("a charge needs a reference")
        amount_minor = to_minor(amount)
        if amount_minor <= 0:
            raise ValueError("a charge needs a positive amount")
        body = {
            "amount": amount_minor,
            "currency": currency,
            "receipt": order_receipt(reference),
            # The method is a hint for reconciliation; the payer picks it in Checkout.
            # The details (VPA, card token, bank) stay with us: Checkout collects them.
            "notes": {"reference": reference, "method": method},
        }
        order = await self._find_or_create(
            lambda: self._order_by_reference(reference), "/v1/orders", body
        )
        if _int(order, "amount") != amount_minor or _str(order, "currency") != currency:
            raise GatewayError(
                "Razorpay already holds an order for this reference with another amount"
            )
        return await self._order_result(order)

    async def lookup(self, *, reference: str) -> ChargeResult | None:
        order = await self._order_by_reference(reference)
        return None if order is None else await self._order_result(order)

    async def verify_callback(self, callback: Callback) -> VerifiedPayment:
        if isinstance(callback, CheckoutCallback):
            return await self._verify_checkout(callback)
        signing.require_signature(self._webhook_secret, callback.body, callback.signature)
        return signing.parse_webhook(callback.body)

    async def refund(
        self, *, payment_id: str, amount: Decimal, currency: str, reference: str
    ) -> RefundResult:
        if not reference:
            raise ValueError("a refund needs a reference")
        amount_minor = to_minor(amount)
        if amount_minor <= 0:
            raise ValueError("a refund needs a positive amount")
        order_id = _path_id(payment_id, ValueError)
        try:
            payments = await self._order_payments(order_id)
        except RazorpayApiError as exc:
            _raise_refusal(exc)  # e.g. no such order: nothing to refund
            raise
        captured = [p for p in payments if p.get("status") in ("captured", "refunded")]
        if not captured:
            raise GatewayRefused(f"Razorpay order {order_id} has no captured payment to refund")
        payment = captured[0]
        if _str(payment, "currency") != currency:
            raise GatewayRefused(f"Razorpay order {order_id} was paid in another currency")
        pay_id = _path_id(_str(payment, "id"), GatewayError)

        async def made_already() -> JsonObject | None:
            return await self._refund_by_reference(pay_id, reference)

        body = {
            "amount": amount_minor,
            "receipt": refund_receipt(reference),
            "notes": {"reference": reference},
        }
        try:
            refund = await self._find_or_create(made_already, f"/v1/payments/{pay_id}/refund", body)
        except RazorpayApiError as exc:
            # A refusal of the POST may answer a retry whose first attempt made the
            # refund after all (e.g. "greater than amount captured"): that one counts.
            found = await made_already()
            if found is None:
                _raise_refusal(exc)
                raise
            refund = found
        return RefundResult(
            refund_id=_str(refund, "id"),
            status=_REFUND_STATUSES.get(str(refund.get("status")), "pending"),
            amount=from_minor(_int(refund, "amount")),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- orders and payments ---------------------------------------------------------------

    async def _order_by_reference(self, reference: str) -> JsonObject | None:
        """The order made for ``reference`` (the one furthest along if, against our
        care, there are several), or None."""
        page = await self._call(
            "GET", "/v1/orders", params={"receipt": order_receipt(reference), "count": PAGE_SIZE}
        )
        mine = [o for o in _items(page) if _notes(o).get("reference") == reference]
        if not mine:
            return None
        mine.sort(
            key=lambda o: (_STATUS_RANK.get(str(o.get("status")), 3), o.get("created_at") or 0)
        )
        return mine[0]

    async def _order_payments(self, order_id: str) -> list[JsonObject]:
        page = await self._call("GET", f"/v1/orders/{order_id}/payments")
        return _items(page)

    async def _order_result(self, order: JsonObject) -> ChargeResult:
        order_id = _path_id(_str(order, "id"), GatewayError)
        status = order.get("status")
        if status == "paid":
            return ChargeResult("authorised", order_id)
        if status != "created":  # attempted: a payment was tried
            payments = await self._order_payments(order_id)
            if any(p.get("status") in ("captured", "refunded") for p in payments):
                return ChargeResult("authorised", order_id)
            authorized = [p for p in payments if p.get("status") == "authorized"]
            if authorized:
                await self._capture(authorized[0])
                return ChargeResult("authorised", order_id)
        return ChargeResult("pending", order_id, redirect_url=self._redirect_url(order_id))

    async def _capture(self, payment: JsonObject) -> JsonObject:
        """Capture an authorised payment (its full amount); the captured payment."""
        pay_id = _path_id(_str(payment, "id"), GatewayError)

        async def captured_already() -> JsonObject | None:
            now = await self._call("GET", f"/v1/payments/{pay_id}")
            return now if now.get("status") in ("captured", "refunded") else None

        body = {"amount": _int(payment, "amount"), "currency": _str(payment, "currency")}
        try:
            return await self._find_or_create(
                captured_already, f"/v1/payments/{pay_id}/capture", body, look_first=False
            )
        except RazorpayApiError:
            # Captured meanwhile (automatic capture, another replica): that is success.
            found = await captured_already()
            if found is None:
                raise
            return found

    async def _refund_by_reference(self, pay_id: str, reference: str) -> JsonObject | None:
        page = await self._call(
            "GET", f"/v1/payments/{pay_id}/refunds", params={"count": PAGE_SIZE}
        )
        receipt = refund_receipt(reference)
        for refund in _items(page):
            if refund.get("receipt") == receipt or _notes(refund).get("reference") == reference:
                return refund
        return None

    async def _verify_checkout(self, callback: CheckoutCallback) -> VerifiedPayment:
        signing.require_signature(
            self._key_secret,
            signing.checkout_message(callback.order_id, callback.payment_id),
            callback.signature,
        )
        order_id = _path_id(callback.order_id, _malformed)
        pay_id = _path_id(callback.payment_id, _malformed)
        try:
            payment = await self._call("GET", f"/v1/payments/{pay_id}")
        except RazorpayApiError as exc:
            if exc.status in (400, 404):
                raise CallbackRejected(
                    "Razorpay has no such payment", reason=signing.MALFORMED
                ) from exc
            raise
        if payment.get("order_id") != order_id:
            raise CallbackRejected(
                "the payment does not belong to the callback's order", reason=signing.MALFORMED
            )
        status = payment.get("status")
        if status == "authorized":
            payment = await self._capture(payment)
            status = payment.get("status")
        outcome = _OUTCOMES.get(str(status))
        reason = ""
        if outcome == "failed":
            reason = str(payment.get("error_description") or payment.get("error_reason") or "")
        return VerifiedPayment(
            payment_id=order_id,
            gateway_payment_id=pay_id,
            outcome=outcome,
            amount=from_minor(_int(payment, "amount")),
            currency=_str(payment, "currency"),
            failure_reason=reason[:500],
        )

    def _redirect_url(self, order_id: str) -> str:
        values = {"order_id": quote(order_id, safe=""), "key_id": quote(self._key_id, safe="")}
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self._checkout_url)

    # --- HTTP --------------------------------------------------------------------------------

    async def _find_or_create(
        self,
        find: Callable[[], Awaitable[JsonObject | None]],
        path: str,
        body: JsonObject,
        *,
        look_first: bool = True,
    ) -> JsonObject:
        """``find()``, else POST ``body`` to ``path``. A POST that failed in a way a retry
        may fix is retried (at most ``max_retries`` times) only after ``find()`` saw that
        it created nothing."""
        attempts = self._max_retries + 1
        failure: _Retryable | None = None
        for attempt in range(1, attempts + 1):
            if look_first or attempt > 1:
                found = await find()
                if found is not None:
                    return found
            try:
                return await self._once("POST", path, params=None, body=body, attempt=attempt)
            except _Retryable as exc:
                failure = exc
                if attempt < attempts:
                    await self._pause(attempt)
        found = await find()  # the last POST may have created it before failing
        if found is not None:
            return found
        log.warning("razorpay call failed", extra={"method": "POST", "path": path})
        raise GatewayError(f"Razorpay POST {path} failed after {attempts} attempts: {failure}")

    async def _call(
        self, method: str, path: str, *, params: Mapping[str, str | int] | None = None
    ) -> JsonObject:
        """A request that changes nothing, retried freely (at most ``max_retries`` times)."""
        attempts = self._max_retries + 1
        failure: _Retryable | None = None
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(method, path, params=params, body=None, attempt=attempt)
            except _Retryable as exc:
                failure = exc
                if attempt < attempts:
                    await self._pause(attempt)
        log.warning("razorpay call failed", extra={"method": method, "path": path})
        raise GatewayError(f"Razorpay {method} {path} failed after {attempts} attempts: {failure}")

    async def _once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        body: JsonObject | None,
        attempt: int,
    ) -> JsonObject:
        """One attempt: the JSON object answered; _Retryable or GatewayError."""
        trace = {"method": method, "path": path, "attempt": attempt}
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.request(method, path, params=params, json=body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            log.debug("razorpay call", extra={**trace, "status": None, "error": "timeout"})
            raise _Retryable(f"no answer within {self._timeout:g} s") from exc
        except httpx.TransportError as exc:
            log.debug("razorpay call", extra={**trace, "status": None, "error": type(exc).__name__})
            raise _Retryable(type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise GatewayError(f"Razorpay request failed: {type(exc).__name__}") from exc
        status = response.status_code
        log.debug("razorpay call", extra={**trace, "status": status})
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not 200 <= status < 300:
            error = payload.get("error") if isinstance(payload, dict) else None
            if not isinstance(error, dict):
                raise GatewayError(f"Razorpay answered HTTP {status}")
            raise RazorpayApiError(
                status, str(error.get("code") or ""), str(error.get("description") or "")[:300]
            )
        if not isinstance(payload, dict):
            raise GatewayError(f"Razorpay answered {method} {path} with something not JSON")
        return payload

    async def _pause(self, attempt: int) -> None:
        if self._backoff > 0:
            delay = min(MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempt - 1))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))


def from_settings(settings: Settings) -> RazorpayGateway:
    """The gateway the ``GENCHARGE_RAZORPAY_*`` settings describe; ValueError naming the
    variable to set when they cannot work."""
    key_id = settings.razorpay_key_id.strip()
    key_secret = settings.razorpay_key_secret.get_secret_value().strip()
    webhook_secret = settings.razorpay_webhook_secret.get_secret_value().strip()
    checkout_url = settings.razorpay_checkout_url.strip()
    api_url = settings.razorpay_api_url.strip()
    problem = _problem(key_id, key_secret, webhook_secret, checkout_url, api_url)
    if problem is None and settings.production:
        problem = _production_problem(checkout_url, api_url)
    if problem:
        raise ValueError(problem)
    return RazorpayGateway(
        key_id=key_id,
        key_secret=key_secret,
        webhook_secret=webhook_secret,
        checkout_url=checkout_url,
        api_url=api_url,
        timeout=settings.payment_gateway_timeout_seconds,
        max_retries=settings.payment_gateway_max_retries,
    )


def _problem(
    key_id: str, key_secret: str, webhook_secret: str, checkout_url: str, api_url: str
) -> str | None:
    """What is wrong with these settings, naming the variable; None when usable."""
    needs = "GENCHARGE_PAYMENT_GATEWAY=razorpay needs"
    if not key_id:
        return f"{needs} GENCHARGE_RAZORPAY_KEY_ID"
    if not key_secret:
        return f"{needs} GENCHARGE_RAZORPAY_KEY_SECRET"
    if not webhook_secret:
        return f"{needs} GENCHARGE_RAZORPAY_WEBHOOK_SECRET"
    if webhook_secret == key_secret:
        return (
            "GENCHARGE_RAZORPAY_WEBHOOK_SECRET must differ from GENCHARGE_RAZORPAY_KEY_SECRET "
            "(each secret verifies only its own signatures)"
        )
    if not checkout_url:
        return f"{needs} GENCHARGE_RAZORPAY_CHECKOUT_URL"
    if not _is_http_url(checkout_url) or "{order_id}" not in checkout_url:
        return (
            "GENCHARGE_RAZORPAY_CHECKOUT_URL must be an http(s) URL with {order_id}, e.g. "
            "https://pay.example.com/checkout?order_id={order_id}"
        )
    unknown = {m.group(1) for m in _PLACEHOLDER.finditer(checkout_url)} - {"order_id", "key_id"}
    if unknown:
        return "GENCHARGE_RAZORPAY_CHECKOUT_URL may name only {order_id} and {key_id}"
    if not _is_http_url(api_url):
        return "GENCHARGE_RAZORPAY_API_URL must be an http(s) URL"
    return None


def _production_problem(checkout_url: str, api_url: str) -> str | None:
    if urlsplit(checkout_url).scheme != "https":
        return "GENCHARGE_RAZORPAY_CHECKOUT_URL must be https:// in production"
    if urlsplit(api_url).scheme != "https" and not _is_loopback(urlsplit(api_url).hostname):
        return (
            "GENCHARGE_RAZORPAY_API_URL must be https:// in production "
            "(plain http only to a loopback address, e.g. a local egress proxy)"
        )
    return None


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.username


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _raise_refusal(exc: RazorpayApiError) -> None:
    """Raise :class:`GatewayRefused` if a 4xx answer to a refund is Razorpay's definite
    refusal (HTTP 400 ``BAD_REQUEST_ERROR``: more than was captured, not captured, too
    old for the bank, no such payment; nothing was refunded). Anything else (our
    credentials refused, another status) returns: the caller re-raises it as an unknown
    outcome (:class:`GatewayError`), left to a later retry."""
    if exc.status == 400 and exc.code == REFUSAL_CODE:
        raise GatewayRefused(str(exc)) from exc


def _malformed(message: str) -> CallbackRejected:
    return CallbackRejected(message, reason=signing.MALFORMED)


def _path_id(value: str, error: Callable[[str], Exception]) -> str:
    """``value`` if it is shaped like a Razorpay id (it goes into a URL path)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise error("not a Razorpay id")
    return value


def _items(page: JsonObject) -> list[JsonObject]:
    items = page.get("items")
    if not isinstance(items, list):
        raise GatewayError("Razorpay answered a list without items")
    return [item for item in items if isinstance(item, dict)]


def _notes(entity: JsonObject) -> Mapping[str, Any]:
    notes = entity.get("notes")
    return notes if isinstance(notes, dict) else {}  # Razorpay sends [] for no notes


def _str(entity: JsonObject, key: str) -> str:
    value = entity.get(key)
    if not isinstance(value, str) or not value:
        raise GatewayError(f"Razorpay's {entity.get('entity') or 'answer'} lacks {key!r}")
    return value


def _int(entity: JsonObject, key: str) -> int:
    value = entity.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GatewayError(f"Razorpay's {entity.get('entity') or 'answer'} lacks {key!r}")
    return value
