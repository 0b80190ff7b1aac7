// Safe retries: which failures may be retried on which calls, and how long to wait.
//
// Driven by the generated methods table only (src/gen/methods.ts):
// - UNAVAILABLE and DEADLINE_EXCEEDED: read-only calls, and money-moving calls (they
//   carry a request_id, the same on every attempt, so the server runs them once);
// - FAILED_PRECONDITION IN_PROGRESS: money-moving calls (the first attempt is still
//   being charged or recorded; a later attempt gets its one outcome);
// - RESOURCE_EXHAUSTED: only when the caller opts in (`retryResourceExhausted`),
//   waiting at least the server's `retry_after_seconds`;
// - never anything else, and never a write without a request_id.
// Full-jitter exponential backoff: a random wait in [0, min(maxBackoff, initial * 2^n)].

import { Code, ConnectError, createContextKey, createContextValues } from "@connectrpc/connect";
import type { CallOptions } from "@connectrpc/connect";
import type { MethodInfo } from "./methods.js";
import { reasonOf } from "./errors.js";

export interface RetryEvent {
  /** The gRPC path of the call. */
  readonly method: string;
  /** The attempt that failed (1 for the first). */
  readonly attempt: number;
  /** Its error. */
  readonly error: ConnectError;
  /** How long the SDK waits before the next attempt. */
  readonly delayMs: number;
  /** The call's request_id, for money-moving calls (the same on every attempt). */
  readonly requestId: string | undefined;
}

export interface RetryPolicy {
  /** Attempts in all, the first included (1: never retry). Default 4. */
  maxAttempts: number;
  /** Cap of the first backoff, in ms. Default 100. */
  initialBackoffMs: number;
  /** Cap of any backoff, in ms. Default 5000. */
  maxBackoffMs: number;
  /** Retry RESOURCE_EXHAUSTED (rate limits), after `retry_after_seconds`. Default false. */
  retryResourceExhausted: boolean;
  /** The longest `retry_after_seconds` wait worth retrying after, in ms. Default 60 000. */
  maxRetryAfterMs: number;
  /** Called (and awaited) before each retry's wait. */
  onRetry?: (event: RetryEvent) => void | Promise<void>;
  /** Random source in [0, 1) for the jitter. Default Math.random. */
  random: () => number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  maxAttempts: 4,
  initialBackoffMs: 100,
  maxBackoffMs: 5_000,
  retryResourceExhausted: false,
  maxRetryAfterMs: 60_000,
  random: Math.random,
});

/** Per-call overrides of the client's retry policy (see `withRetry`). */
export const RETRY_POLICY = createContextKey<Partial<RetryPolicy> | undefined>(undefined, {
  description: "GenCharge retry policy",
});

/** Call options that override the retry policy for one call:
 * `await gc.recharge.recharge(req, withRetry({ maxAttempts: 1 }))`. */
export function withRetry(policy: Partial<RetryPolicy>, options: CallOptions = {}): CallOptions {
  const contextValues = options.contextValues ?? createContextValues();
  contextValues.set(RETRY_POLICY, { ...contextValues.get(RETRY_POLICY), ...policy });
  return { ...options, contextValues };
}

/** Whether a method may be retried after transport failures (UNAVAILABLE, deadline). */
export function isSafeToRetry(info: MethodInfo | undefined): boolean {
  return info !== undefined && (info.readOnly || info.requestIdField !== null);
}

/** The full-jitter backoff before retry number `retry` (1 for the first retry). */
export function backoffMs(policy: RetryPolicy, retry: number): number {
  const cap = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (retry - 1));
  return Math.floor(policy.random() * cap);
}

/** How long to wait before retrying `error` of attempt number `attempt` (1-based), or
 * undefined when the call must not be retried. */
export function retryDelayMs(
  error: ConnectError,
  info: MethodInfo | undefined,
  policy: RetryPolicy,
  attempt: number,
): number | undefined {
  if (attempt >= policy.maxAttempts) {
    return undefined;
  }
  const backoff = backoffMs(policy, attempt);
  switch (error.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return isSafeToRetry(info) ? backoff : undefined;
    case Code.FailedPrecondition:
      return info?.requestIdField != null && reasonOf(error).reason === "IN_PROGRESS"
        ? backoff
        : undefined;
    case Code.ResourceExhausted: {
      if (!policy.retryResourceExhausted) {
        return undefined;
      }
      const after = Number(reasonOf(error).metadata["retry_after_seconds"] ?? "0");
      const afterMs = Number.isFinite(after) ? after * 1000 : 0;
      return afterMs > policy.maxRetryAfterMs ? undefined : Math.max(afterMs, backoff);
    }
    default:
      return undefined;
  }
}

/** Wait `ms`, or reject with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(ConnectError.from(signal.reason, Code.Canceled));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(ConnectError.from(signal?.reason, Code.Canceled));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
