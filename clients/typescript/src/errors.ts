// Typed errors: every failed call surfaces as a GenChargeError subclass, decoded from the
// google.rpc.Status the server sends in the `grpc-status-details-bin` trailer.
//
// One class per gRPC code (InvalidArgument, NotFound, ...) and, under them, one class per
// documented ErrorInfo reason a client branches on (InsufficientFunds, PriceChanged, ...).
// Unknown reasons fall back to the code's class; `reason` always carries the raw value.

import { create, fromBinary, type Message } from "@bufbuild/protobuf";
import { AnySchema, anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { StatusSchema, type Status } from "./gen/google/rpc/status_pb.js";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
  type BadRequest,
  type ErrorInfo,
  type RetryInfo,
} from "./gen/google/rpc/error_details_pb.js";

/** The trailer carrying the serialized google.rpc.Status. */
export const STATUS_DETAILS_TRAILER = "grpc-status-details-bin";
/** The ErrorInfo domain of every GenCharge error. */
export const ERROR_DOMAIN = "gencharge.v1";

export interface FieldViolation {
  /** The request field path, e.g. `amount.units_minor` or `recipient_ids[3]`. */
  readonly field: string;
  readonly description: string;
}

export interface GenChargeErrorInit {
  code: Code;
  message: string;
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  fieldViolations?: FieldViolation[];
  retryDelayMs?: number;
  requestId?: string;
  method?: string;
  cause?: unknown;
}

/** The gRPC name of a code: `Code.InvalidArgument` -> "INVALID_ARGUMENT". */
export function codeName(code: Code): string {
  const name = Code[code];
  return name === undefined
    ? `CODE_${code}`
    : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Base class of every error the SDK raises for a failed call. */
export class GenChargeError extends Error {
  /** The gRPC status code (Connect's `Code`, numerically the gRPC code). */
  readonly code: Code;
  /** The server's message, without the code prefix. */
  readonly rawMessage: string;
  /** ErrorInfo.reason (UPPER_SNAKE_CASE), or the code's name when the server sent none. */
  readonly reason: string;
  /** ErrorInfo.domain ("gencharge.v1"), empty when absent. */
  readonly domain: string;
  /** ErrorInfo.metadata, e.g. `{retry_after_seconds: "60"}` or `{scope: "recharges.write"}`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** BadRequest field violations (INVALID_ARGUMENT). */
  readonly fieldViolations: readonly FieldViolation[];
  /** google.rpc.RetryInfo's delay, when the server sent one. */
  readonly retryDelayMs: number | undefined;
  /** The request_id the call carried (money-moving calls): retry with the same one. */
  readonly requestId: string | undefined;
  /** The gRPC path of the failed call, e.g. `/gencharge.v1.RechargeService/Recharge`. */
  readonly method: string | undefined;

  constructor(init: GenChargeErrorInit) {
    const reason = init.reason || codeName(init.code);
    super(
      `[${codeName(init.code)}${reason !== codeName(init.code) ? ` ${reason}` : ""}] ${init.message}`,
      {
        cause: init.cause,
      },
    );
    Object.setPrototypeOf(this, new.target.prototype);
    this.name = new.target.name;
    this.code = init.code;
    this.rawMessage = init.message;
    this.reason = reason;
    this.domain = init.domain ?? "";
    this.metadata = Object.freeze({ ...(init.metadata ?? {}) });
    this.fieldViolations = Object.freeze([...(init.fieldViolations ?? [])]);
    this.retryDelayMs = init.retryDelayMs;
    this.requestId = init.requestId;
    this.method = init.method;
  }

  /** The gRPC name of the code, e.g. "FAILED_PRECONDITION". */
  get codeName(): string {
    return codeName(this.code);
  }
}

// --- one class per gRPC code ---------------------------------------------------------

export class Canceled extends GenChargeError {}
export class Unknown extends GenChargeError {}
export class InvalidArgument extends GenChargeError {}
export class DeadlineExceeded extends GenChargeError {}
export class NotFound extends GenChargeError {}
export class AlreadyExists extends GenChargeError {}
export class PermissionDenied extends GenChargeError {}
export class ResourceExhausted extends GenChargeError {
  /** ErrorInfo metadata `retry_after_seconds` (brute-force blocks, OTP resends). */
  get retryAfterSeconds(): number | undefined {
    const value = this.metadata["retry_after_seconds"];
    const seconds = value === undefined ? NaN : Number(value);
    return Number.isFinite(seconds) ? seconds : undefined;
  }
}
export class FailedPrecondition extends GenChargeError {}
export class Aborted extends GenChargeError {}
export class OutOfRange extends GenChargeError {}
export class Unimplemented extends GenChargeError {}
export class Internal extends GenChargeError {}
export class Unavailable extends GenChargeError {}
export class DataLoss extends GenChargeError {}
export class Unauthenticated extends GenChargeError {}

type ErrorClass = new (init: GenChargeErrorInit) => GenChargeError;

const CODE_CLASSES: ReadonlyMap<Code, ErrorClass> = new Map<Code, ErrorClass>([
  [Code.Canceled, Canceled],
  [Code.Unknown, Unknown],
  [Code.InvalidArgument, InvalidArgument],
  [Code.DeadlineExceeded, DeadlineExceeded],
  [Code.NotFound, NotFound],
  [Code.AlreadyExists, AlreadyExists],
  [Code.PermissionDenied, PermissionDenied],
  [Code.ResourceExhausted, ResourceExhausted],
  [Code.FailedPrecondition, FailedPrecondition],
  [Code.Aborted, Aborted],
  [Code.OutOfRange, OutOfRange],
  [Code.Unimplemented, Unimplemented],
  [Code.Internal, Internal],
  [Code.Unavailable, Unavailable],
  [Code.DataLoss, DataLoss],
  [Code.Unauthenticated, Unauthenticated],
]);

// --- documented reasons (docs/api.md, the protos' comments, server/**/errors) ---------

/** FAILED_PRECONDITION INSUFFICIENT_FUNDS: the wallet cannot pay. */
export class InsufficientFunds extends FailedPrecondition {}
/** FAILED_PRECONDITION PRICE_CHANGED: the price moved since the quote (expected_amount). */
export class PriceChanged extends FailedPrecondition {}
/** FAILED_PRECONDITION PLAN_INACTIVE: the plan cannot be bought now. */
export class PlanInactive extends FailedPrecondition {}
/** FAILED_PRECONDITION PAYMENT_DECLINED: the payment gateway declined the charge. */
export class PaymentDeclined extends FailedPrecondition {}
/** FAILED_PRECONDITION IN_PROGRESS: the same request_id is still being charged or recorded;
 * retry later with the same request_id (the SDK does, on money calls). */
export class InProgress extends FailedPrecondition {}
/** ALREADY_EXISTS IDEMPOTENCY_KEY_REUSED: the request_id was used for a different request. */
export class IdempotencyKeyReused extends AlreadyExists {}
/** UNAUTHENTICATED INVALID_CREDENTIALS: wrong login, password or client secret. */
export class InvalidCredentials extends Unauthenticated {}
/** UNAUTHENTICATED SESSION_ENDED: the session was logged out, revoked or ended. */
export class SessionEnded extends Unauthenticated {}
/** UNAUTHENTICATED INVALID_TOKEN: the access token was refused (metadata `cause` says
 * why: malformed, bad_signature, expired, ...). */
export class InvalidToken extends Unauthenticated {}
/** UNAUTHENTICATED INVALID_TOKEN with metadata cause "expired": the access token expired
 * (the SDK refreshes once and replays the call). */
export class TokenExpired extends InvalidToken {}
/** UNAUTHENTICATED INVALID_REFRESH_TOKEN: the refresh token is unknown, expired or
 * revoked: log in again. */
export class InvalidRefreshToken extends Unauthenticated {}
/** UNAUTHENTICATED REFRESH_TOKEN_REUSED: an already-used refresh token was presented; the
 * server ended the session. */
export class RefreshTokenReused extends Unauthenticated {}
/** PERMISSION_DENIED ACCOUNT_BLOCKED: the account (or the paying account) is blocked. */
export class AccountBlocked extends PermissionDenied {}
/** PERMISSION_DENIED MISSING_SCOPE: a service account lacks `metadata.scope`. */
export class MissingScope extends PermissionDenied {
  get scope(): string | undefined {
    return this.metadata["scope"];
  }
}
/** RESOURCE_EXHAUSTED TOO_MANY_ATTEMPTS (brute-force protection): wait
 * `retryAfterSeconds`. */
export class RateLimited extends ResourceExhausted {}

/** Reason -> class, per code (a reason only counts under the code that documents it). */
const REASON_CLASSES: ReadonlyMap<string, ErrorClass> = new Map<string, ErrorClass>([
  [`${Code.FailedPrecondition}:INSUFFICIENT_FUNDS`, InsufficientFunds],
  [`${Code.FailedPrecondition}:PRICE_CHANGED`, PriceChanged],
  [`${Code.FailedPrecondition}:PLAN_INACTIVE`, PlanInactive],
  [`${Code.FailedPrecondition}:PAYMENT_DECLINED`, PaymentDeclined],
  [`${Code.FailedPrecondition}:IN_PROGRESS`, InProgress],
  [`${Code.AlreadyExists}:IDEMPOTENCY_KEY_REUSED`, IdempotencyKeyReused],
  [`${Code.Unauthenticated}:INVALID_CREDENTIALS`, InvalidCredentials],
  [`${Code.Unauthenticated}:SESSION_ENDED`, SessionEnded],
  [`${Code.Unauthenticated}:INVALID_TOKEN`, InvalidToken],
  [`${Code.Unauthenticated}:INVALID_REFRESH_TOKEN`, InvalidRefreshToken],
  [`${Code.Unauthenticated}:REFRESH_TOKEN_REUSED`, RefreshTokenReused],
  [`${Code.PermissionDenied}:ACCOUNT_BLOCKED`, AccountBlocked],
  [`${Code.PermissionDenied}:MISSING_SCOPE`, MissingScope],
  [`${Code.ResourceExhausted}:TOO_MANY_ATTEMPTS`, RateLimited],
]);

function classFor(code: Code, reason: string, metadata: Record<string, string>): ErrorClass {
  if (
    code === Code.Unauthenticated &&
    reason === "INVALID_TOKEN" &&
    metadata["cause"] === "expired"
  ) {
    return TokenExpired;
  }
  return REASON_CLASSES.get(`${code}:${reason}`) ?? CODE_CLASSES.get(code) ?? GenChargeError;
}

// --- decoding ------------------------------------------------------------------------

interface Decoded {
  reason?: string;
  domain?: string;
  metadata: Record<string, string>;
  fieldViolations: FieldViolation[];
  retryDelayMs?: number;
}

function unpack<T extends Message>(
  detail: Any,
  schema: typeof ErrorInfoSchema | typeof BadRequestSchema | typeof RetryInfoSchema,
): T | undefined {
  try {
    return anyUnpack(detail, schema) as T | undefined;
  } catch {
    return undefined;
  }
}

function decodeDetails(details: readonly Any[]): Decoded {
  const out: Decoded = { metadata: {}, fieldViolations: [] };
  for (const detail of details) {
    const info = unpack<ErrorInfo>(detail, ErrorInfoSchema);
    if (info !== undefined) {
      if (out.reason === undefined) {
        out.reason = info.reason;
        out.domain = info.domain;
        out.metadata = { ...info.metadata };
      }
      continue;
    }
    const bad = unpack<BadRequest>(detail, BadRequestSchema);
    if (bad !== undefined) {
      for (const v of bad.fieldViolations) {
        out.fieldViolations.push({ field: v.field, description: v.description });
      }
      continue;
    }
    const retry = unpack<RetryInfo>(detail, RetryInfoSchema);
    if (retry?.retryDelay !== undefined) {
      out.retryDelayMs =
        Number(retry.retryDelay.seconds) * 1000 + Math.floor(retry.retryDelay.nanos / 1e6);
    }
  }
  return out;
}

function decodeBase64(value: string): Uint8Array {
  return new Uint8Array(Buffer.from(value, "base64"));
}

/** The google.rpc.Status of a failed call, from its `grpc-status-details-bin` trailer. */
export function statusOf(error: ConnectError): Status | undefined {
  const raw = error.metadata.get(STATUS_DETAILS_TRAILER);
  if (raw === null) {
    return undefined;
  }
  try {
    // A header may be repeated (joined with ", "); the first value is the status.
    return fromBinary(StatusSchema, decodeBase64(raw.split(",")[0]!.trim()));
  } catch {
    return undefined;
  }
}

/** Extra context for an error: the request_id the call used and the gRPC path. */
export interface ErrorContext {
  requestId?: string;
  method?: string;
}

/** A google.rpc.Status (a BatchRecharge item's error, or a call's) as a typed error. */
export function fromStatus(
  status: Status,
  context: ErrorContext = {},
  cause?: unknown,
): GenChargeError {
  const code = status.code as Code;
  const decoded = decodeDetails(status.details);
  const cls = classFor(code, decoded.reason ?? "", decoded.metadata);
  return new cls({
    code,
    message: status.message,
    ...decoded,
    ...context,
    cause,
  });
}

/** Any error thrown by a call (Connect's, or already ours) as a GenChargeError. */
export function toGenChargeError(error: unknown, context: ErrorContext = {}): GenChargeError {
  if (error instanceof GenChargeError) {
    return error;
  }
  if (error instanceof ConnectError && error.cause instanceof GenChargeError) {
    return error.cause; // ours, wrapped by Connect on its way out (the credentials' call)
  }
  const connectError = ConnectError.from(error);
  const fromContext = errorContext.get(connectError) ?? {};
  const merged = { ...fromContext, ...context };
  const status = statusOf(connectError);
  if (status !== undefined && status.code !== 0) {
    return fromStatus(status, merged, connectError);
  }
  // No Status trailer: Connect's parsed details (if any), else the bare code.
  const details: Any[] = [];
  for (const d of connectError.details) {
    if (!("desc" in d)) {
      details.push(create(AnySchema, { typeUrl: `type.googleapis.com/${d.type}`, value: d.value }));
    }
  }
  const decoded = decodeDetails(details);
  const cls = classFor(connectError.code, decoded.reason ?? "", decoded.metadata);
  return new cls({
    code: connectError.code,
    message: connectError.rawMessage,
    ...decoded,
    ...merged,
    cause: connectError,
  });
}

/** Context the interceptors attach to a ConnectError on its way out (request_id, path). */
const errorContext = new WeakMap<ConnectError, ErrorContext>();

/** @internal Attach the call's request_id and path to an error the interceptors saw. */
export function annotate(error: unknown, context: ErrorContext): Error {
  if (error instanceof GenChargeError) {
    return error; // typed already (e.g. the credentials' own call failed): kept as it is
  }
  const connectError = ConnectError.from(error);
  errorContext.set(connectError, { ...errorContext.get(connectError), ...context });
  return connectError;
}

/** The ErrorInfo reason of a ConnectError (for the interceptors' decisions). */
export function reasonOf(error: ConnectError): {
  reason: string;
  metadata: Record<string, string>;
} {
  const status = statusOf(error);
  const decoded = decodeDetails(status?.details ?? []);
  return { reason: decoded.reason ?? "", metadata: decoded.metadata };
}
